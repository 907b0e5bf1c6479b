//! The operator's side of a replica's HTTP endpoints (see [`crate::replica`]):
//! `GET /status` and `POST /admin/step-down`, used by `ordo admin`, `ordo up` and the tests.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::replica::ReplicaStatus;

/// How long one request to a replica may take: a frozen replica (SIGSTOP) must not stall
/// a status poll.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer read (a status is a few hundred bytes).
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url:?} is not an http://host:port endpoint")]
    Endpoint { url: String },
    #[error("{method} {url}: {reason}")]
    Unreachable {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: no answer within {TIMEOUT:?}")]
    Timeout { method: Method, url: String },
    #[error("{method} {url} answered HTTP {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("GET {url} answered no replica status: {reason}")]
    NotAStatus { url: String, reason: String },
}

/// An answer: its status code and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

/// `GET <http>/status` of the replica whose HTTP endpoint is `http` (`http://host:port`).
pub async fn status(http: &str) -> Result<ReplicaStatus, ClientError> {
    let url = url(http, "/status")?;
    let answer = request(Method::GET, &url, None).await?;
    if answer.status != StatusCode::OK {
        return Err(ClientError::Status {
            method: Method::GET,
            url,
            status: answer.status,
            body: answer.body.trim().to_owned(),
        });
    }
    serde_json::from_str(&answer.body).map_err(|e| ClientError::NotAStatus {
        url,
        reason: e.to_string(),
    })
}

/// `POST <http>/admin/step-down` with the replica admin token: the answer's status and
/// message (the endpoint answers `{"status": …, "message": …}`).
pub async fn step_down(http: &str, token: &str) -> Result<(StatusCode, String), ClientError> {
    let answer = request(Method::POST, &url(http, "/admin/step-down")?, Some(token)).await?;
    let message = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| answer.body.trim().to_owned());
    Ok((answer.status, message))
}

/// `http://host:port` + `path`.
fn url(base: &str, path: &str) -> Result<String, ClientError> {
    let authority = base
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'));
    match authority {
        Some(a) => Ok(format!("http://{a}{path}")),
        None => Err(ClientError::Endpoint {
            url: base.to_owned(),
        }),
    }
}

/// One request with an empty body, within [`TIMEOUT`].
pub async fn request(
    method: Method,
    url: &str,
    bearer: Option<&str>,
) -> Result<Answer, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        method: method.clone(),
        url: url.to_owned(),
        reason,
    };
    let mut builder = Request::builder().method(method.clone()).uri(url);
    if let Some(token) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = builder
        .body(Empty::<Bytes>::new())
        .map_err(|_| ClientError::Endpoint {
            url: url.to_owned(),
        })?;
    let client = Client::builder(TokioExecutor::new()).build_http();
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
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Timeout {
            method: method.clone(),
            url: url.to_owned(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_endpoints() {
        assert_eq!(
            url("http://127.0.0.1:80/", "/status").unwrap(),
            "http://127.0.0.1:80/status"
        );
        assert!(url("https://x:1", "/status").is_err());
        assert!(url("http://", "/status").is_err());
        assert!(url("http://h:1/x", "/status").is_err());
    }

    #[tokio::test]
    async fn a_silent_replica_times_out() {
        // A frozen replica's kernel still accepts the connection; nothing answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move { listener.accept().await });
        let e = status(&format!("http://{addr}")).await.unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        held.abort();
    }

    #[tokio::test]
    async fn an_unreachable_replica_is_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = status(&format!("http://{addr}")).await.unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
    }
}
