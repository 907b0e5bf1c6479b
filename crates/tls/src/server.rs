//! A node's listeners: accepted connections with their TLS handshakes done off the accept
//! loop, as one stream for tonic or one `axum::serve::Listener`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use super::reload::Reloading;
use super::{ClientAuth, MEMBER_URI_PREFIX, TlsConfig, TlsError, files, provider};

/// How long a caller may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in flight on one listener: slow callers cannot pile up without bound.
const MAX_HANDSHAKES: usize = 256;

/// A listener's TLS configuration, rebuilt when its files change.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// TLS 1.3 with `config`'s certificate, asking callers for theirs as
    /// `config.client_auth` says; both HTTP/2 (gRPC) and HTTP/1.1 are offered.
    pub fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        Self::load_checking(config, super::reload::CHECK_EVERY)
    }

    /// [`ServerTls::load`], checking the files for changes every `every`.
    pub(crate) fn load_checking(config: &TlsConfig, every: Duration) -> Result<Self, TlsError> {
        let c = config.clone();
        let files = vec![c.cert.clone(), c.key.clone(), c.ca.clone()];
        Ok(Self {
            config: Reloading::start_checking("server", files, move || build(&c), every)?,
        })
    }

    /// Rebuilds from the files now, as a change of them or SIGHUP does.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.config.reload()
    }
}

fn build(config: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match config.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let roots = Arc::new(files::roots(&config.ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Config(format!("{}: {e}", config.ca.display())))?,
            )
        }
    };
    let certs = files::certs(&config.cert)?;
    if let Some(not_after) = files::not_after(&certs) {
        metrics::describe_gauge!(
            "ordo_tls_certificate_not_after_seconds",
            metrics::Unit::Seconds,
            "When the certificate this node serves expires, in seconds since the Unix epoch \
             (updated when the files are reloaded)."
        );
        metrics::gauge!("ordo_tls_certificate_not_after_seconds").set(not_after as f64);
    }
    let mut server = builder
        .with_single_cert(certs, files::key(&config.key)?)
        .map_err(|e| TlsError::File {
            path: config.key.display().to_string(),
            reason: format!(
                "does not go with the certificate in {}: {e}",
                config.cert.display()
            ),
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// The names a caller's verified certificate carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// URI subject alternative names (`urn:ordo:member:<name>` for a member).
    pub uris: Vec<String>,
    /// DNS subject alternative names.
    pub dns: Vec<String>,
}

impl Peer {
    fn of(cert: &CertificateDer<'_>) -> Self {
        match webpki::EndEntityCert::try_from(cert) {
            Ok(c) => Self {
                uris: c.valid_uri_names().map(str::to_owned).collect(),
                dns: c.valid_dns_names().map(str::to_owned).collect(),
            },
            Err(_) => Self {
                uris: Vec::new(),
                dns: Vec::new(),
            },
        }
    }

    /// The members the certificate names.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.uris
            .iter()
            .filter_map(|u| u.strip_prefix(MEMBER_URI_PREFIX))
    }

    /// Whether the certificate names the member called `name`.
    pub fn is_member(&self, name: &str) -> bool {
        self.members().any(|m| m == name)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .uris
            .iter()
            .chain(&self.dns)
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            f.write_str("a certificate without names")
        } else {
            write!(f, "a certificate for {}", names.join(", "))
        }
    }
}

/// What a service knows of the connection a call came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The caller's verified certificate, if it presented one over TLS.
    pub peer: Option<Arc<Peer>>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The connection a gRPC call came on (served from [`accept`]).
pub fn conn_info<T>(req: &tonic::Request<T>) -> Option<&ConnInfo> {
    req.extensions().get::<ConnInfo>()
}

/// An accepted connection: plain text or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    pub(crate) fn info(&self) -> ConnInfo {
        match self {
            Self::Plain(s) => ConnInfo {
                remote: s.peer_addr().ok(),
                peer: None,
                tls: false,
            },
            Self::Tls(s) => {
                let (tcp, session) = s.get_ref();
                ConnInfo {
                    remote: tcp.peer_addr().ok(),
                    peer: session
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(Peer::of(c))),
                    tls: true,
                }
            }
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections a listener accepted, ready to serve (handshake done).
pub struct Accepted {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: io::Result<SocketAddr>,
}

/// Accepts on `listener` (TCP_NODELAY: without it, Nagle's algorithm and delayed ACKs hold
/// small responses back for tens of milliseconds) and, with `tls`, completes each caller's
/// handshake in its own task. A failed handshake (no certificate, one from another CA, a
/// timeout) is logged with the caller's address and drops only that connection. Accepting
/// stops when the [`Accepted`] is dropped.
pub fn accept(listener: TcpListener, tls: Option<ServerTls>, service: &'static str) -> Accepted {
    let local = listener.local_addr();
    let (tx, ready) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, service, tx));
    Accepted { ready, local }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<ServerTls>,
    service: &'static str,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = tx.closed() => return,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(service, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &tls else {
            if tx.send((Conn::Plain(tcp), addr)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(service, peer = %addr, "too many TLS handshakes in flight: connection dropped");
            continue;
        };
        let acceptor = TlsAcceptor::from(tls.config.current());
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((Conn::Tls(Box::new(stream)), addr)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(service, peer = %addr, error = %e, "TLS handshake refused");
                }
                Err(_) => tracing::warn!(
                    service,
                    peer = %addr,
                    "TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}: connection dropped"
                ),
            }
        });
    }
}

impl Accepted {
    /// The connections as the stream tonic's `serve_with_incoming*` takes.
    pub fn into_stream(
        self,
    ) -> impl tokio_stream::Stream<Item = Result<Conn, io::Error>> + Send + 'static {
        use tokio_stream::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.ready).map(|(conn, _)| Ok(conn))
    }
}

impl axum::serve::Listener for Accepted {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends when this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}
