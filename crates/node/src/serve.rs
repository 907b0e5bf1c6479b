//! A node's two sockets and the servers on them: bound before `run` (so callers can bind
//! port 0 and learn the addresses), started together and drained together.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::tls::{ServerTls, TlsConfig, accept, serve_http};

/// How long draining waits for each server's in-flight calls.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a node listens: its configuration's `grpc_listen` and `http_listen`, and the
/// `[tls]` both listeners serve with.
pub trait ListenAddrs {
    /// `(grpc_listen, http_listen)`.
    fn listen_addrs(&self) -> (SocketAddr, SocketAddr);

    /// The node's certificate; `None` serves plain text.
    fn tls(&self) -> Option<&TlsConfig> {
        None
    }
}

/// The node's sockets, bound before `run` so that callers (tests, `ordo up`) can bind
/// port 0 and learn the addresses, and their TLS configuration (loaded, so that bad
/// certificate files fail here).
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    pub tls: Option<ServerTls>,
}

impl Listeners {
    pub async fn bind(config: &impl ListenAddrs) -> std::io::Result<Self> {
        let tls =
            config.tls().map(ServerTls::load).transpose().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
            })?;
        let (grpc, http) = config.listen_addrs();
        Ok(Self {
            grpc: TcpListener::bind(grpc).await?,
            http: TcpListener::bind(http).await?,
            tls,
        })
    }
}

/// The gRPC server and the HTTP server (`/metrics`, `/livez`, `/readyz`) of a running node.
pub struct Servers {
    stop: CancellationToken,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
}

impl Servers {
    /// Serves `grpc` on `listeners.grpc` and the HTTP router, ready as `ready` says, on
    /// `listeners.http`, both over TLS when `listeners.tls` is set.
    pub fn spawn(
        grpc: tonic::transport::server::Router,
        listeners: Listeners,
        ready: watch::Receiver<bool>,
    ) -> Self {
        Self::spawn_with_routes(grpc, axum::Router::new(), listeners, ready)
    }

    /// Like [`Servers::spawn`], with `extra` routes (e.g. a replica's `/status`) merged into
    /// the HTTP router.
    pub fn spawn_with_routes(
        grpc: tonic::transport::server::Router,
        extra: axum::Router,
        listeners: Listeners,
        ready: watch::Receiver<bool>,
    ) -> Self {
        let stop = CancellationToken::new();
        let grpc = {
            let stop = stop.clone();
            tokio::spawn(grpc.serve_with_incoming_shutdown(
                accept(listeners.grpc, listeners.tls.clone(), "grpc").into_stream(),
                async move { stop.cancelled().await },
            ))
        };
        let http = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let incoming = accept(listeners.http, listeners.tls, "http");
                let router = crate::router(ready).merge(extra);
                serve_http(incoming, router, async move { stop.cancelled().await }).await;
                Ok(())
            })
        };
        Self { stop, grpc, http }
    }

    /// Stops accepting and lets in-flight calls finish (each server at most
    /// [`DRAIN_TIMEOUT`]). Returns the gRPC server's error if it failed.
    pub async fn drain(self) -> Result<(), tonic::transport::Error> {
        self.stop.cancel();
        let grpc = tokio::time::timeout(DRAIN_TIMEOUT, self.grpc).await;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.http).await;
        match grpc {
            Ok(Ok(Err(e))) => Err(e),
            _ => Ok(()),
        }
    }
}
