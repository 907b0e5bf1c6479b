//! The gateway's configuration: one typed struct with defaults, checked by
//! [`GatewayConfig::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordo_ledger_client::Network;
use ordo_node::config::{ConfigError, Invalid};
use ordo_participant::AuthConfig;
use serde::{Deserialize, Serialize};

pub(crate) const NODE: &str = "gateway";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The HTTP/JSON API (and /livez, /readyz, /metrics).
    pub http_listen: SocketAddr,
    /// The network.json (`ordo up` writes it) whose shards, replicas and topology manager
    /// the gateway routes to.
    pub network_file: PathBuf,
    /// Longest a request may take, in milliseconds, before it is answered 408.
    #[serde(with = "ordo_node::config::millis")]
    pub request_timeout: Duration,
    /// How long, in milliseconds, a call keeps looking for a serving replica of its shard
    /// (riding through a failover) before it is answered 503. Less than
    /// `request_timeout`, so that an unavailable shard is a 503 naming it, not a 408.
    #[serde(with = "ordo_node::config::millis")]
    pub retry_deadline: Duration,
    /// Largest accepted request body (a package upload is one body).
    pub max_body_bytes: usize,
    /// Origins browsers may call the API from (`https://app.example`, or `*` for any);
    /// empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Bearer token verification, as the participants do it. With `HS256` and no
    /// `secret`, the secret of network.json's `auth` section is used.
    pub auth: AuthConfig,
    /// The local cache queries are answered from.
    pub cache: CacheConfig,
    /// TLS of the HTTP listener (DESIGN §8); `client_auth = "none"` for browsers and
    /// applications. Absent: plain HTTP. The calls to the participants use network.json's
    /// `tls` entry.
    pub tls: Option<ordo_node::tls::TlsConfig>,
}

/// `[cache]`: the gateway's own SQLite file of active contracts (docs/gateway.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// The SQLite file, created (with its folder) when missing. One gateway per file: a
    /// running gateway holds `<file>.lock`.
    pub file: PathBuf,
    /// A file holding a Ledger API token with the `readAsAnyParty` claim, which the cache
    /// reads every party's contracts with. Needed with EdDSA or RS256 tokens; with HS256
    /// the gateway mints one from its secret when this is not set.
    pub token_file: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("ordo-data/gateway-cache.sqlite"),
            token_file: None,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7575)),
            network_file: PathBuf::from("ordo-data/network.json"),
            request_timeout: Duration::from_secs(30),
            retry_deadline: Duration::from_secs(10),
            max_body_bytes: 4 * 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            auth: AuthConfig::default(),
            cache: CacheConfig::default(),
            tls: None,
        }
    }
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.of(NODE))
    }

    fn check(&self) -> Result<(), Invalid> {
        let err = |field, reason: &str| Err(Invalid::new(field, reason));
        if self.network_file.as_os_str().is_empty() {
            return err(
                "network_file",
                "give the path of the network.json to route by (`ordo up` writes one)",
            );
        }
        if self.request_timeout < Duration::from_millis(100) {
            return err("request_timeout", "must be at least 100 (milliseconds)");
        }
        if self.retry_deadline < Duration::from_millis(100)
            || self.retry_deadline >= self.request_timeout
        {
            return err(
                "retry_deadline",
                "must be at least 100 (milliseconds) and less than request_timeout",
            );
        }
        if self.max_body_bytes < 1024 {
            return err("max_body_bytes", "must be at least 1024");
        }
        for origin in &self.cors_allowed_origins {
            let well_formed = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && axum::http::HeaderValue::from_str(origin).is_ok());
            if !well_formed {
                return Err(Invalid::new(
                    "cors_allowed_origins",
                    format!(
                        "{origin:?} is not an origin: use `*` or scheme://host[:port] without \
                         a path or trailing slash"
                    ),
                ));
            }
        }
        check_auth(&self.auth, true)?;
        self.check_cache()
    }

    fn check_cache(&self) -> Result<(), Invalid> {
        if self.cache.file.as_os_str().is_empty() {
            return Err(Invalid::new(
                "cache.file",
                "give the path of the gateway's cache file (SQLite), e.g. \
                 ordo-data/gateway-cache.sqlite",
            ));
        }
        if self.cache.file.is_dir() {
            return Err(Invalid::new(
                "cache.file",
                format!(
                    "{} is a directory: name a file in it",
                    self.cache.file.display()
                ),
            ));
        }
        match &self.cache.token_file {
            Some(f) if f.as_os_str().is_empty() => Err(Invalid::new(
                "cache.token_file",
                "give the path of a file holding a token with readAsAnyParty, or leave it out",
            )),
            None if self.auth.algorithm != "HS256" => Err(Invalid::new(
                "cache.token_file",
                format!(
                    "with {} tokens the gateway cannot mint its cache's token: give a file \
                     holding a Ledger API token with the readAsAnyParty claim",
                    self.auth.algorithm
                ),
            )),
            _ => Ok(()),
        }
    }

    /// How long a query waits for the cache to catch up with a shard: most of the request
    /// timeout, so that it is answered 503 naming the shard rather than 408.
    pub fn cache_wait_limit(&self) -> Duration {
        self.request_timeout - self.request_timeout / 10
    }

    /// The auth settings to verify tokens with: the configured ones, or with an HS256
    /// section that names no secret, the network's secret.
    pub fn effective_auth(&self, network: &Network) -> Result<AuthConfig, ConfigError> {
        let mut auth = self.auth.clone();
        if auth.algorithm == "HS256" && auth.secret.is_empty() {
            let from = &network.auth;
            if !(from.algorithm.is_empty() || from.algorithm == "HS256") {
                return Err(Invalid::new(
                    "auth",
                    format!(
                        "{} uses {} tokens: configure [auth] with the public key",
                        network.path.display(),
                        from.algorithm
                    ),
                )
                .of(NODE));
            }
            auth.secret = from.secret.clone();
        }
        check_auth(&auth, false).map_err(|e| e.of(NODE))?;
        Ok(auth)
    }
}

/// `allow_empty_secret`: an HS256 secret may be left to network.json.
fn check_auth(auth: &AuthConfig, allow_empty_secret: bool) -> Result<(), Invalid> {
    let err = |field, reason: &str| Err(Invalid::new(field, reason));
    match auth.algorithm.as_str() {
        "HS256" if auth.secret.is_empty() && allow_empty_secret => Ok(()),
        "HS256" if auth.secret.len() < 16 => err(
            "auth.secret",
            "HS256 needs a secret of at least 16 bytes (or none: network.json's auth.secret)",
        ),
        "EdDSA" | "RS256" if auth.public_key_pem.trim().is_empty() => {
            err("auth.public_key_pem", "EdDSA/RS256 need a PEM public key")
        }
        "HS256" | "EdDSA" | "RS256" => Ok(()),
        _ => err("auth.algorithm", "use HS256, EdDSA or RS256"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(c: &GatewayConfig) -> &'static str {
        c.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(GatewayConfig::default().validate(), Ok(()));
        let mut c = GatewayConfig {
            request_timeout: Duration::from_millis(5),
            ..Default::default()
        };
        assert_eq!(field(&c), "request_timeout");
        c = GatewayConfig {
            retry_deadline: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(field(&c), "retry_deadline");
        c.retry_deadline = Duration::from_millis(50);
        assert_eq!(field(&c), "retry_deadline");
        c = GatewayConfig {
            max_body_bytes: 10,
            ..Default::default()
        };
        assert_eq!(field(&c), "max_body_bytes");
        c = GatewayConfig {
            cors_allowed_origins: vec!["example.com".into()],
            ..Default::default()
        };
        assert_eq!(field(&c), "cors_allowed_origins");
        c.cors_allowed_origins = vec!["*".into(), "https://app.example:8443".into()];
        assert_eq!(c.validate(), Ok(()));
        c.network_file = PathBuf::new();
        assert_eq!(field(&c), "network_file");
        c = GatewayConfig::default();
        c.auth.secret = "short".into();
        assert_eq!(field(&c), "auth.secret");
        c.auth.algorithm = "none".into();
        assert_eq!(field(&c), "auth.algorithm");
        c.auth.algorithm = "EdDSA".into();
        assert_eq!(field(&c), "auth.public_key_pem");
        c.auth.public_key_pem = "-----BEGIN PUBLIC KEY-----".into();
        assert_eq!(field(&c), "cache.token_file");
        c.cache.token_file = Some("cache.token".into());
        assert_eq!(c.validate(), Ok(()));
        c.cache.token_file = Some(PathBuf::new());
        assert_eq!(field(&c), "cache.token_file");
        c = GatewayConfig::default();
        c.cache.file = PathBuf::new();
        assert_eq!(field(&c), "cache.file");
        c.cache.file = std::env::temp_dir();
        assert_eq!(field(&c), "cache.file");
    }

    #[test]
    fn an_empty_hs256_secret_comes_from_the_network() {
        let c = GatewayConfig::default();
        let mut network = Network::default();
        assert_eq!(c.effective_auth(&network).unwrap_err().field, "auth.secret");
        network.auth.secret = "0123456789abcdef0123".into();
        assert_eq!(
            c.effective_auth(&network).map(|a| a.secret),
            Ok("0123456789abcdef0123".to_owned())
        );
        network.auth.algorithm = "RS256".into();
        assert_eq!(c.effective_auth(&network).unwrap_err().field, "auth");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<GatewayConfig>(r#"{"http_listen_x": 1}"#).unwrap_err();
        assert!(e.to_string().contains("http_listen_x"), "{e}");
    }
}
