//! TLS 1.3 on every ordo listener and client (DESIGN §8), the same way for every role: a
//! certificate chain, its private key and the CA bundle that verifies peers, all PEM files,
//! reloaded when they change on disk or on SIGHUP without touching established
//! connections.
//!
//! - [`ServerTls`] and [`accept`]: a node's listeners. Handshakes run off the accept loop
//!   (bounded in number and time); every connection carries a [`ConnInfo`] with the peer's
//!   verified certificate names, which a service reads with [`conn_info`].
//! - [`ClientTls`] and [`channel`] / [`lazy_channel`]: gRPC channels to `https://`
//!   endpoints, presenting the node's certificate when it has one. `http://` endpoints stay
//!   plain text (`ordo up --insecure`).
//! - [`LocalCa`]: the local CA and the node certificates `ordo up` mints.
//!
//! A member is named in its certificate by a URI subject alternative name
//! `urn:ordo:member:<name>` ([`member_uri`]); the sequencer lets a connection act only for
//! the members its certificate names.

mod client;
mod files;
mod http;
mod mint;
mod reload;
mod server;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use serde::{Deserialize, Serialize};

pub use client::{ClientTls, channel, lazy_channel};
pub use files::check_private;
pub use http::{HEADER_READ_TIMEOUT, serve_http};
pub use mint::{Issued, LocalCa, Subject};
pub use server::{Accepted, Conn, ConnInfo, Peer, ServerTls, accept, conn_info};

/// The prefix of the URI subject alternative name that names a member in its certificate.
pub const MEMBER_URI_PREFIX: &str = "urn:ordo:member:";

/// `urn:ordo:member:<name>`: how a certificate names the member `name`.
pub fn member_uri(name: &str) -> String {
    format!("{MEMBER_URI_PREFIX}{name}")
}

/// The ring provider, installed as the process's rustls default on first use so that every
/// TLS user in the process (tonic, reqwest, sqlx) agrees on it.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let ring = rustls::crypto::ring::default_provider();
            // Another library may have installed one first; ours is used explicitly anyway.
            let _ = ring.clone().install_default();
            Arc::new(ring)
        })
        .clone()
}

/// The TLS of a tool's calls (`ordo_node::http_client`, `ordo_node::serving`), set once per
/// process by [`trust`].
static TRUSTED: std::sync::RwLock<Option<ClientTls>> = std::sync::RwLock::new(None);

/// From now on, the tool calls of this process verify `https://` endpoints with `tls` and
/// present its certificate. A tool works against one network (`ordo` reads its CA and
/// certificate from network.json).
pub fn trust(tls: ClientTls) {
    *TRUSTED
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tls);
}

/// What [`trust`] set.
pub fn trusted() -> Option<ClientTls> {
    TRUSTED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// A node's `[tls]` section: the same three files for its listeners and its clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the node's certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, SEC1 or PKCS#1); mode 0600.
    pub key: PathBuf,
    /// PEM: the CA certificates that verify peers (the servers this node calls, and the
    /// clients that call it).
    pub ca: PathBuf,
    /// Whether the node's listeners ask callers for a certificate: `required` (mutual
    /// TLS), `optional` or `none`. On a node with a gRPC port, its HTTP port (probes,
    /// metrics) never requires one: where this is `required`, it asks for one and verifies
    /// it when presented. The gateway's one listener follows this setting as it is.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Whether a listener asks its callers for a certificate signed by the CA.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Mutual TLS: a caller without a valid certificate is refused in the handshake
    /// (node-to-node services).
    #[default]
    Required,
    /// A certificate is verified when presented; applications may connect without one
    /// (the Ledger API and the JSON API).
    Optional,
    /// Server-only TLS.
    None,
}

/// Why TLS could not be set up, or an endpoint not reached.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{url:?} is an https:// endpoint but no CA is configured to verify it (tls.ca)")]
    NoCa { url: String },
    #[error("{url:?} is not an endpoint: {reason}")]
    Endpoint { url: String, reason: String },
    #[error("{url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

#[cfg(test)]
mod tests;
