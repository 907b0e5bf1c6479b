//! Serving an axum router on accepted connections, with the limits a server facing the
//! network needs and `axum::serve` does not set: a caller must send a request's headers
//! within [`HEADER_READ_TIMEOUT`] (a slowloris client that trickles them is disconnected),
//! and an HTTP/2 connection is pinged when idle.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use super::server::Accepted;

/// How long a caller may take to send a request's headers (also the whole first request
/// line); then its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle HTTP/2 connection is pinged, and how long the answer may take.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long a graceful stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on the connections of `incoming` until `shutdown`, then stops accepting
/// and lets requests in flight finish (at most [`DRAIN`]). Handlers see the connection as
/// an `Extension<ConnInfo>`. WebSocket upgrades work.
pub async fn serve_http(
    incoming: Accepted,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    serve_http_with(incoming, router, shutdown, HEADER_READ_TIMEOUT).await;
}

/// [`serve_http`] with another header timeout (the tests' short one).
pub(crate) async fn serve_http_with(
    mut incoming: Accepted,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
    header_read_timeout: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        // HTTP/2 WebSockets.
        .enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (conn, _) = tokio::select! {
            c = axum::serve::Listener::accept(&mut incoming) => c,
            () = &mut shutdown => break,
        };
        let service = router
            .clone()
            .layer(axum::Extension(conn.info()))
            .map_request(|req: Request<Incoming>| req.map(Body::new));
        let service = TowerToHyperService::new(service);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(incoming);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still in flight after {DRAIN:?}: dropped");
    }
}
