//! gRPC channels to `https://` endpoints: the CA bundle verifies the server, the node's own
//! certificate (if it has one) answers a server that asks for it.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::reload::Reloading;
use super::{TlsConfig, TlsError, files, provider};

/// A client's TLS configuration, rebuilt when its files change.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Verifies servers with the CA bundle `ca` and, with `identity` (certificate chain,
    /// key), presents that certificate to servers that ask.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let ca = ca.to_path_buf();
        let identity = identity.map(|(c, k)| (c.to_path_buf(), k.to_path_buf()));
        let mut files = vec![ca.clone()];
        if let Some((c, k)) = &identity {
            files.extend([c.clone(), k.clone()]);
        }
        Ok(Self {
            config: Reloading::start("client", files, move || build(&ca, identity.as_ref()))?,
        })
    }

    /// Like [`ClientTls::load`] from PEM text (never reloaded): a member whose
    /// certificate was just minted, in tools and tests.
    pub fn from_pem(ca: &str, identity: Option<(&str, &str)>) -> Result<Self, TlsError> {
        use rustls_pki_types::pem::PemObject;
        let text = Path::new("(PEM text)");
        let roots = files::roots_of(files::certs_in(ca.as_bytes(), text)?, text)?;
        let identity = match identity {
            None => None,
            Some((cert, key)) => Some((
                files::certs_in(cert.as_bytes(), text)?,
                PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| TlsError::Config(format!("not a PEM private key: {e}")))?,
                "(PEM text)".to_owned(),
            )),
        };
        Ok(Self {
            config: Reloading::fixed("client", config(roots, identity)?),
        })
    }

    /// A node's client side: its `[tls]` CA and its own certificate.
    pub fn of_node(config: &TlsConfig) -> Result<Self, TlsError> {
        Self::load(&config.ca, Some((&config.cert, &config.key)))
    }

    /// The current rustls configuration (ALPN `h2`, for gRPC).
    pub fn rustls(&self) -> Arc<ClientConfig> {
        self.config.current()
    }

    /// The current configuration without ALPN, for HTTP/1.1 clients (reqwest's
    /// `use_preconfigured_tls`, hyper-rustls).
    pub fn rustls_http1(&self) -> ClientConfig {
        let mut config = (*self.config.current()).clone();
        config.alpn_protocols.clear();
        config
    }
}

fn build(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> Result<ClientConfig, TlsError> {
    let identity = match identity {
        None => None,
        Some((cert, key)) => Some((
            files::certs(cert)?,
            files::key(key)?,
            key.display().to_string(),
        )),
    };
    config(files::roots(ca)?, identity)
}

/// TLS 1.3 verifying servers with `roots`, presenting `identity` (its chain, its key and
/// where the key came from, for messages) when given; ALPN `h2`.
fn config(
    roots: rustls::RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key, from)) => {
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::File {
                    path: from,
                    reason: format!("the key does not go with its certificate: {e}"),
                })?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A channel to `url` that connects on first use: over TLS with `tls` for `https://`,
/// plain text for `http://`. `configure` sets the endpoint's timeouts and keepalives.
pub fn lazy_channel(
    url: &str,
    tls: Option<&ClientTls>,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, TlsError> {
    Ok(match target(url, tls)? {
        Target::Plain(e) => configure(e).connect_lazy(),
        Target::Tls(e, c) => configure(e).connect_with_connector_lazy(c),
    })
}

/// Like [`lazy_channel`], connected now.
pub async fn channel(
    url: &str,
    tls: Option<&ClientTls>,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, TlsError> {
    let connected = match target(url, tls)? {
        Target::Plain(e) => configure(e).connect().await,
        Target::Tls(e, c) => configure(e).connect_with_connector(c).await,
    };
    connected.map_err(|source| TlsError::Connect {
        url: url.to_owned(),
        source,
    })
}

enum Target {
    Plain(Endpoint),
    Tls(Endpoint, Connector),
}

fn target(url: &str, tls: Option<&ClientTls>) -> Result<Target, TlsError> {
    let bad = |reason: &dyn fmt::Display| TlsError::Endpoint {
        url: url.to_owned(),
        reason: reason.to_string(),
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return Endpoint::from_shared(url.to_owned())
            .map(Target::Plain)
            .map_err(|e| bad(&e));
    };
    let tls = tls.ok_or_else(|| TlsError::NoCa {
        url: url.to_owned(),
    })?;
    let origin: Uri = url.parse().map_err(|e| bad(&e))?;
    let host = origin
        .host()
        .ok_or_else(|| bad(&"no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name = ServerName::try_from(host).map_err(|e| bad(&e))?;
    // The connector does the TLS: tonic sees a plain `http://` endpoint (its own TLS
    // cannot reload certificates), while requests still say `https`.
    let endpoint = Endpoint::from_shared(format!("http://{rest}"))
        .map_err(|e| bad(&e))?
        .origin(origin);
    Ok(Target::Tls(
        endpoint,
        Connector {
            tls: tls.clone(),
            server_name,
        },
    ))
}

/// Connects TCP (TCP_NODELAY) and completes the TLS handshake with the client's current
/// configuration, verifying the server as `server_name`.
#[derive(Clone)]
struct Connector {
    tls: ClientTls,
    server_name: ServerName<'static>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.tls.rustls());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host:port"))?;
            let port = authority.port_u16().unwrap_or(443);
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(connector.connect(server_name, tcp).await?))
        })
    }
}
