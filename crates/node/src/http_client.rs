//! A small HTTP/1.1 client for the nodes' HTTP endpoints (`/metrics`, `/livez`, `/readyz`,
//! a replica's `/status` and `/admin/step-down`, `ordo up`'s control API): one request
//! with an empty or a JSON body, an optional bearer token, the whole exchange bounded by a
//! timeout.
//!
//! `https://` URLs are verified with the CA the process set once with
//! [`crate::tls::trust`] (a tool works against one network: `ordo` reads it from
//! network.json), presenting its certificate to nodes that ask for one.
//!
//! Used by `ordo_lease::client` (the operator's side of a replica), `ordo admin`, `ordo up`
//! and the test harnesses.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use axum::http::{Method, StatusCode};

/// The timeout of [`get`] and [`get_ok`]: generous, for tools and tests on a loaded
/// machine. A caller polling a peer that may be frozen passes a shorter one to [`request`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a `/metrics` page is a few dozen kilobytes).
const MAX_RESPONSE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not an http:// or https://host:port endpoint")]
    Endpoint { url: String },
    #[error("{method} {url}: {reason}")]
    Unreachable {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: Method,
        url: String,
        timeout: Duration,
    },
    #[error("{method} {url} answered HTTP {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
}

/// An answer: its status code and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    /// The body of a `200 OK` answer to `method url`; any other status is
    /// [`HttpError::Status`] (with the body, trimmed).
    pub fn ok(self, method: Method, url: &str) -> Result<String, HttpError> {
        if self.status == StatusCode::OK {
            return Ok(self.body);
        }
        Err(HttpError::Status {
            method,
            url: url.to_owned(),
            status: self.status,
            body: self.body.trim().to_owned(),
        })
    }
}

/// `http://host:port` or `https://host:port` + `path`; anything else as `base` (another
/// scheme, a path) is [`HttpError::Endpoint`].
pub fn url(base: &str, path: &str) -> Result<String, HttpError> {
    let (scheme, rest) = match base.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        _ => {
            return Err(HttpError::Endpoint {
                url: base.to_owned(),
            });
        }
    };
    let authority = Some(rest.trim_end_matches('/')).filter(|a| !a.is_empty() && !a.contains('/'));
    match authority {
        Some(a) => Ok(format!("{scheme}://{a}{path}")),
        None => Err(HttpError::Endpoint {
            url: base.to_owned(),
        }),
    }
}

/// `GET url` within [`DEFAULT_TIMEOUT`], whatever the answer's status.
pub async fn get(url: &str) -> Result<Answer, HttpError> {
    request(Method::GET, url, None, DEFAULT_TIMEOUT).await
}

/// `GET url` within [`DEFAULT_TIMEOUT`]: the body of a `200 OK` answer, any other status
/// an error.
pub async fn get_ok(url: &str) -> Result<String, HttpError> {
    get(url).await?.ok(Method::GET, url)
}

/// One request with an empty body (and `Authorization: Bearer <bearer>` if given); the
/// connection, the request and reading the whole answer within `timeout`.
pub async fn request(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<Answer, HttpError> {
    send(method, url, bearer, None, timeout).await
}

/// [`request`] with `body` as its JSON body.
pub async fn request_json(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: &impl serde::Serialize,
    timeout: Duration,
) -> Result<Answer, HttpError> {
    let json = serde_json::to_vec(body).map_err(|e| HttpError::Unreachable {
        method: method.clone(),
        url: url.to_owned(),
        reason: format!("encoding the body: {e}"),
    })?;
    send(method, url, bearer, Some(json), timeout).await
}

async fn send(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    json: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Answer, HttpError> {
    let unreachable = |reason: String| HttpError::Unreachable {
        method: method.clone(),
        url: url.to_owned(),
        reason,
    };
    let mut builder = Request::builder().method(method.clone()).uri(url);
    if let Some(token) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if json.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(json.unwrap_or_default())))
        .map_err(|_| HttpError::Endpoint {
            url: url.to_owned(),
        })?;
    let connector = match crate::tls::trusted() {
        Some(tls) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.rustls_http1())
            .https_or_http()
            .enable_http1()
            .build(),
        None if url.starts_with("https://") => {
            return Err(unreachable(
                "an https:// URL, but no CA is configured to verify it".into(),
            ));
        }
        None => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| unreachable(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .build(),
    };
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let exchange = async {
        let answer = client.request(req).await.map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = format!("{reason}: {s}");
                source = s.source();
            }
            unreachable(reason)
        })?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout {
            method: method.clone(),
            url: url.to_owned(),
            timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::routing::{get as route_get, post};

    /// Serves `router` on a loopback port: `http://127.0.0.1:port`.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    #[test]
    fn only_http_and_https_endpoints() {
        assert_eq!(
            url("http://127.0.0.1:80/", "/status").unwrap(),
            "http://127.0.0.1:80/status"
        );
        assert_eq!(url("https://x:1", "/status").unwrap(), "https://x:1/status");
        assert!(url("ftp://x:1", "/status").is_err());
        assert!(url("http://", "/status").is_err());
        assert!(url("http://h:1/x", "/status").is_err());
    }

    #[tokio::test]
    async fn answers_of_any_status_and_bearer_tokens() {
        let base = serve(
            Router::new()
                .route("/hello", route_get(|| async { "hello" }))
                .route(
                    "/json",
                    post(|axum::Json(v): axum::Json<serde_json::Value>| async move {
                        v["name"].as_str().unwrap_or_default().to_owned()
                    }),
                )
                .route(
                    "/echo",
                    post(|headers: axum::http::HeaderMap| async move {
                        match headers.get(header::AUTHORIZATION) {
                            Some(v) => (StatusCode::OK, v.to_str().unwrap().to_owned()),
                            None => (StatusCode::UNAUTHORIZED, " no token \n".to_owned()),
                        }
                    }),
                ),
        )
        .await;
        let hello = format!("{base}/hello");
        let answer = get(&hello).await.unwrap();
        assert_eq!(
            answer,
            Answer {
                status: StatusCode::OK,
                body: "hello".into()
            }
        );
        assert_eq!(get_ok(&hello).await.unwrap(), "hello");

        let missing = format!("{base}/missing");
        assert_eq!(get(&missing).await.unwrap().status, StatusCode::NOT_FOUND);
        let e = get_ok(&missing).await.unwrap_err();
        assert!(
            matches!(&e, HttpError::Status { status, .. } if *status == StatusCode::NOT_FOUND),
            "{e}"
        );

        let json = format!("{base}/json");
        let answer = request_json(
            Method::POST,
            &json,
            None,
            &serde_json::json!({"name": "shard-3"}),
            DEFAULT_TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "shard-3")
        );

        let echo = format!("{base}/echo");
        let answer = request(Method::POST, &echo, Some("t0k"), DEFAULT_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "Bearer t0k");
        let answer = request(Method::POST, &echo, None, DEFAULT_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(answer.status, 401);
        let e = answer.ok(Method::POST, &echo).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("POST {echo} answered HTTP 401 Unauthorized: no token")
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // A frozen process's kernel still accepts the connection; nothing answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move { listener.accept().await });
        let timeout = Duration::from_millis(200);
        let e = request(Method::GET, &format!("http://{addr}/x"), None, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, HttpError::Timeout { timeout: t, .. } if *t == timeout),
            "{e}"
        );
        assert!(e.to_string().ends_with("no answer within 200ms"), "{e}");
        held.abort();
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = get(&format!("http://{addr}/x")).await.unwrap_err();
        assert!(matches!(e, HttpError::Unreachable { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_malformed_url_is_an_endpoint_error() {
        let e = get("http://bad host/x").await.unwrap_err();
        assert!(matches!(e, HttpError::Endpoint { .. }), "{e}");
    }
}
