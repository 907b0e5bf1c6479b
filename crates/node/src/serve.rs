//! A node's two sockets and the servers on them: bound before `run` (so callers can bind
//! port 0 and learn the addresses), started together and drained together.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::tls::{ClientAuth, ServerTls, TlsConfig, accept, serve_http};

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
    /// The gRPC port's TLS: `[tls]` as configured.
    pub tls: Option<ServerTls>,
    /// The HTTP port's TLS: the same certificate, but a client certificate is never
    /// required ([`http_tls_config`]).
    pub http_tls: Option<ServerTls>,
}

impl Listeners {
    pub async fn bind(config: &impl ListenAddrs) -> std::io::Result<Self> {
        // Loading the certificate records its expiry: the recorder must be there first.
        crate::metrics_handle();
        let load = |c: &TlsConfig| {
            ServerTls::load(c)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
        };
        let tls = config.tls().map(load).transpose()?;
        let http_tls = config
            .tls()
            .map(|c| load(&http_tls_config(c)))
            .transpose()?;
        let (grpc, http) = config.listen_addrs();
        Ok(Self {
            grpc: TcpListener::bind(grpc).await?,
            http: TcpListener::bind(http).await?,
            tls,
            http_tls,
        })
    }
}

/// The HTTP port serves `/livez`, `/readyz`, `/metrics` and a replica's `/status` to
/// callers that hold no certificate of the domain (the kubelet's probes, Prometheus), and
/// `/admin/step-down` only with its bearer token: where `[tls]` requires a client
/// certificate, the HTTP port asks for one and verifies it when presented, but does not
/// require it. The gRPC port keeps `client_auth` as configured.
pub fn http_tls_config(config: &TlsConfig) -> TlsConfig {
    let mut c = config.clone();
    if c.client_auth == ClientAuth::Required {
        c.client_auth = ClientAuth::Optional;
    }
    c
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
                let incoming = accept(listeners.http, listeners.http_tls, "http");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_port_never_requires_a_client_certificate() {
        let with = |client_auth| TlsConfig {
            cert: "node.pem".into(),
            key: "node.key".into(),
            ca: "ca.pem".into(),
            client_auth,
        };
        for (grpc, http) in [
            (ClientAuth::Required, ClientAuth::Optional),
            (ClientAuth::Optional, ClientAuth::Optional),
            (ClientAuth::None, ClientAuth::None),
        ] {
            let c = http_tls_config(&with(grpc));
            assert_eq!(c.client_auth, http, "{grpc:?}");
            assert_eq!(
                (c.cert, c.key, c.ca),
                (with(grpc).cert, with(grpc).key, with(grpc).ca)
            );
        }
    }
}
