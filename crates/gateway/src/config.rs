//! The gateway's configuration: one typed struct with defaults, checked by
//! [`GatewayConfig::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordo_ledger_client::Network;
use ordo_node::config::{ConfigError, Invalid};
use ordo_node::limits::Rate;
use ordo_participant::AuthConfig;
use serde::{Deserialize, Serialize};

pub(crate) const NODE: &str = "gateway";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The HTTP/JSON API (and /livez, /readyz, /metrics).
    pub http_listen: SocketAddr,
    /// The network.json (`ordo up` writes it) whose shards, replicas and topology manager
    /// the gateway routes to.
    pub network_file: PathBuf,
    /// Longest a request may take before it is answered 408; at least 100 ms.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub request_timeout: Duration,
    /// How long a call keeps looking for a serving replica of its shard
    /// (riding through a failover) before it is answered 503. Less than
    /// `request_timeout`, so that an unavailable shard is a 503 naming it, not a 408; at
    /// least 100 ms. A failover takes about 3 s with the default lease.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub retry_deadline: Duration,
    /// Largest accepted request body, in bytes (a package upload is one body); at least 1024.
    pub max_body_bytes: usize,
    /// How often a WebSocket stream sends a heartbeat
    /// (`{"events": [], "offset": …}`) so that clients and proxies see it alive; at least
    /// 100 ms.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub websocket_heartbeat: Duration,
    /// Origins browsers may call the API from (`https://app.example`, or `*` for any);
    /// empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Bearer token verification, as the participants do it. Without keys (EdDSA/RS256
    /// with neither `key_file` nor `public_key_pem`, or HS256 without `secret`), those of
    /// network.json's `auth` section are used (its `public_key_file`, or its `secret`).
    pub auth: AuthConfig,
    /// The local cache queries are answered from.
    pub cache: CacheConfig,
    /// Rate limits.
    pub limits: GatewayLimits,
    /// TLS of the HTTP listener (DESIGN §8); `client_auth = "none"` for browsers and
    /// applications. Absent: plain HTTP. The calls to the participants use network.json's
    /// `tls` entry.
    pub tls: Option<ordo_node::tls::TlsConfig>,
}

/// `[limits]`: how fast one caller may call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayLimits {
    /// Requests per bearer token and second; a token over it is answered 429 with
    /// `Retry-After` (`per_second = 0`: no limit).
    pub token_requests: Rate,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            token_requests: Rate::new(1_000, 2_000),
        }
    }
}

/// `[cache]`: the gateway's own SQLite file of active contracts (docs/gateway.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// The SQLite file, created (with its folder) when missing. One gateway per file: a
    /// running gateway holds `<file>.lock`.
    pub file: PathBuf,
    /// A file holding a Ledger API token with the `readAsAnyParty` claim, which the cache
    /// reads every party's contracts with; re-read when it changes, so that whoever
    /// issues it can replace it before it expires. Needed with EdDSA or RS256 tokens;
    /// with HS256 the gateway mints one from its secret when this is not set.
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
            websocket_heartbeat: crate::state::DEFAULT_HEARTBEAT,
            cache: CacheConfig::default(),
            limits: GatewayLimits::default(),
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
            return err("request_timeout", "must be at least 100ms");
        }
        if self.retry_deadline < Duration::from_millis(100)
            || self.retry_deadline >= self.request_timeout
        {
            return err(
                "retry_deadline",
                "must be at least 100ms and less than request_timeout",
            );
        }
        if self.max_body_bytes < 1024 {
            return err("max_body_bytes", "must be at least 1024");
        }
        if self.websocket_heartbeat < Duration::from_millis(100) {
            return err("websocket_heartbeat", "must be at least 100ms");
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
        self.auth.check(true)?;
        self.limits.token_requests.check("limits.token_requests")?;
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

    /// The auth settings to verify tokens with: the configured ones, or where they name
    /// no keys, network.json's (its `public_key_file`, or an HS256 network's `secret`).
    pub fn effective_auth(&self, network: &Network) -> Result<AuthConfig, ConfigError> {
        let mut auth = self.auth.clone();
        let from = &network.auth;
        let network_algorithm = if from.algorithm.is_empty() {
            "HS256"
        } else {
            from.algorithm.as_str()
        };
        let keyless = match auth.algorithm.as_str() {
            "HS256" => auth.secret.is_empty(),
            _ => auth.key_file.is_none() && auth.public_key_pem.trim().is_empty(),
        };
        if keyless {
            let mismatch = || {
                Invalid::new(
                    "auth",
                    format!(
                        "{} uses {network_algorithm} tokens and this gateway {}: configure \
                         [auth] with the keys",
                        network.path.display(),
                        auth.algorithm
                    ),
                )
                .of(NODE)
            };
            if network_algorithm != auth.algorithm {
                return Err(mismatch());
            }
            if auth.algorithm == "HS256" {
                auth.secret = from.secret.clone();
            } else {
                let file = from.public_key_file.clone().ok_or_else(mismatch)?;
                auth.key_file = Some(match network.path.parent() {
                    Some(dir) if file.is_relative() => dir.join(file),
                    _ => file,
                });
            }
        }
        auth.check(false).map_err(|e| e.of(NODE))?;
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(c: &GatewayConfig) -> &'static str {
        c.validate().unwrap_err().field
    }

    fn valid() -> GatewayConfig {
        GatewayConfig {
            cache: CacheConfig {
                token_file: Some("cache.token".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        // The defaults need only the cache's token (EdDSA tokens cannot be minted here).
        assert_eq!(
            field(&GatewayConfig::default()),
            "cache.token_file",
            "the default config names no token file"
        );
        assert_eq!(valid().validate(), Ok(()));
        let mut c = GatewayConfig {
            request_timeout: Duration::from_millis(5),
            ..valid()
        };
        assert_eq!(field(&c), "request_timeout");
        c = GatewayConfig {
            retry_deadline: Duration::from_secs(30),
            ..valid()
        };
        assert_eq!(field(&c), "retry_deadline");
        c.retry_deadline = Duration::from_millis(50);
        assert_eq!(field(&c), "retry_deadline");
        c = GatewayConfig {
            max_body_bytes: 10,
            ..valid()
        };
        assert_eq!(field(&c), "max_body_bytes");
        c = GatewayConfig {
            cors_allowed_origins: vec!["example.com".into()],
            ..valid()
        };
        assert_eq!(field(&c), "cors_allowed_origins");
        c.cors_allowed_origins = vec!["*".into(), "https://app.example:8443".into()];
        assert_eq!(c.validate(), Ok(()));
        c.network_file = PathBuf::new();
        assert_eq!(field(&c), "network_file");
        c = valid();
        c.auth.algorithm = "HS256".into();
        c.auth.secret = "short".into();
        assert_eq!(field(&c), "auth.secret");
        c.auth.algorithm = "none".into();
        assert_eq!(field(&c), "auth.algorithm");
        // EdDSA (the default): the keys may come from network.json, the cache's token
        // cannot be minted.
        c.auth = AuthConfig::default();
        c.cache.token_file = None;
        assert_eq!(field(&c), "cache.token_file");
        c.cache.token_file = Some("cache.token".into());
        assert_eq!(c.validate(), Ok(()));
        c.auth.public_key_pem = "-----BEGIN PUBLIC KEY-----".into();
        c.auth.key_file = Some("keys.jwks".into());
        assert_eq!(field(&c), "auth.public_key_pem");
        c.auth = AuthConfig::default();
        c.cache.token_file = Some(PathBuf::new());
        assert_eq!(field(&c), "cache.token_file");
        c = valid();
        c.cache.file = PathBuf::new();
        assert_eq!(field(&c), "cache.file");
        c.cache.file = std::env::temp_dir();
        assert_eq!(field(&c), "cache.file");
    }

    #[test]
    fn keys_not_configured_come_from_the_network() {
        let mut c = GatewayConfig::default();
        c.auth.algorithm = "HS256".into();
        let mut network = Network::default();
        assert_eq!(c.effective_auth(&network).unwrap_err().field, "auth.secret");
        network.auth.secret = "0123456789abcdef0123".into();
        assert_eq!(
            c.effective_auth(&network).map(|a| a.secret),
            Ok("0123456789abcdef0123".to_owned())
        );
        network.auth.algorithm = "RS256".into();
        assert_eq!(c.effective_auth(&network).unwrap_err().field, "auth");

        let c = GatewayConfig::default();
        network.auth.algorithm = "EdDSA".into();
        assert_eq!(c.effective_auth(&network).unwrap_err().field, "auth");
        network.path = PathBuf::from("/data/network.json");
        network.auth.public_key_file = Some("token-public-key.pem".into());
        assert_eq!(
            c.effective_auth(&network).unwrap().key_file,
            Some(PathBuf::from("/data/token-public-key.pem"))
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<GatewayConfig>(r#"{"http_listen_x": 1}"#).unwrap_err();
        assert!(e.to_string().contains("http_listen_x"), "{e}");
    }
}
