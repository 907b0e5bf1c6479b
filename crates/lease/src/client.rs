//! The operator's side of a replica's HTTP endpoints (see [`crate::replica`]):
//! `GET /status` and `POST /admin/step-down`, used by `ordo admin`, `ordo up` and the tests.
//! A thin layer over [`ordo_node::http_client`], with a short [`TIMEOUT`].

use std::time::Duration;

use ordo_node::http_client::{self, HttpError, Method, StatusCode};

use crate::replica::ReplicaStatus;

/// How long one request to a replica may take: a frozen replica (SIGSTOP) must not stall
/// a status poll.
pub const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not an `http://host:port` endpoint, unreachable, no answer within [`TIMEOUT`], or
    /// (for [`status`]) an answer other than 200 OK.
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("GET {url} answered no replica status: {reason}")]
    NotAStatus { url: String, reason: String },
}

/// `GET <http>/status` of the replica whose HTTP endpoint is `http` (`http://host:port`).
pub async fn status(http: &str) -> Result<ReplicaStatus, ClientError> {
    let url = http_client::url(http, "/status")?;
    let body = http_client::request(Method::GET, &url, None, TIMEOUT)
        .await?
        .ok(Method::GET, &url)?;
    serde_json::from_str(&body).map_err(|e| ClientError::NotAStatus {
        url,
        reason: e.to_string(),
    })
}

/// `POST <http>/admin/step-down` with the replica admin token: the answer's status and
/// message (the endpoint answers `{"status": …, "message": …}`).
pub async fn step_down(http: &str, token: &str) -> Result<(StatusCode, String), ClientError> {
    let url = http_client::url(http, "/admin/step-down")?;
    let answer = http_client::request(Method::POST, &url, Some(token), TIMEOUT).await?;
    let message = serde_json::from_str::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| answer.body.trim().to_owned());
    Ok((answer.status, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_replica_times_out() {
        // A frozen replica's kernel still accepts the connection; nothing answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move { listener.accept().await });
        let e = status(&format!("http://{addr}")).await.unwrap_err();
        assert!(
            matches!(e, ClientError::Http(HttpError::Timeout { timeout, .. }) if timeout == TIMEOUT),
            "{e}"
        );
        held.abort();
    }

    #[tokio::test]
    async fn an_unreachable_replica_is_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = status(&format!("http://{addr}")).await.unwrap_err();
        assert!(
            matches!(e, ClientError::Http(HttpError::Unreachable { .. })),
            "{e}"
        );
    }

    #[tokio::test]
    async fn only_http_endpoints_or_https_ones_with_a_ca() {
        let e = status("ftp://x:1").await.unwrap_err();
        assert!(
            matches!(e, ClientError::Http(HttpError::Endpoint { .. })),
            "{e}"
        );
        // No CA trusted in this process: an https:// endpoint cannot be verified.
        let e = status("https://x:1").await.unwrap_err();
        assert!(e.to_string().contains("no CA is configured"), "{e}");
        let e = step_down("http://h:1/x", "t").await.unwrap_err();
        assert!(
            matches!(e, ClientError::Http(HttpError::Endpoint { .. })),
            "{e}"
        );
    }
}
