//! The participant node's typed configuration. The `ordo` binary layers it
//! (defaults → TOML file → `ORDO_…` environment → flags) and calls
//! [`ParticipantConfig::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordo_lease::ReplicaConfig;
use ordo_node::ListenAddrs;
pub use ordo_node::config::ConfigError;
use ordo_node::config::{self, Invalid};
use ordo_node::limits::Rate;
use ordo_node::tls::TlsConfig;
use serde::{Deserialize, Deserializer, Serialize};

/// Configuration of one participant shard (one participant service).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ParticipantConfig {
    /// The member name: `[a-z0-9._-]{1,64}`; the member id is `name::fingerprint`.
    pub node_name: String,
    /// The shard this participant serves, e.g. `shard-1` (`[a-z0-9-]{1,64}`).
    pub shard: String,
    /// This shard's own database, e.g. `postgres://ordo@127.0.0.1:5432/participant1`.
    pub database_url: String,
    /// gRPC listen address: the Ledger API, grpc.health.v1 and reflection.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address: `/metrics`, `/livez`, `/readyz`.
    pub http_listen: SocketAddr,
    /// The member's ed25519 key (seed as hex); `init` creates it when missing.
    pub key_file: PathBuf,
    /// Every sequencer node of the domain, e.g. `http://127.0.0.1:4001`.
    pub sequencers: Vec<String>,
    /// The topology manager's member id (`name::fingerprint`), required to run (not to
    /// `init`): topology transactions are accepted only when signed by it.
    pub topology_manager: String,
    /// The topology manager's admin gRPC endpoints (`ordo.admin.v1.TopologyAdminService`),
    /// one per topology replica, used to allocate parties and vet packages: a call tries
    /// them in order and skips those that are passive (UNAVAILABLE) or unreachable. A file
    /// may give one endpoint as a string. Empty: those calls fail with FAILED_PRECONDITION.
    #[serde(deserialize_with = "one_or_many")]
    pub topology_admin: Vec<String>,
    /// Bearer token for the topology manager's admin service. Empty: the participant
    /// calls as itself, by its TLS client certificate, which the topology manager accepts
    /// for allocating parties on this shard and vetting packages
    /// (its `participant_self_service`).
    pub topology_admin_token: String,
    /// How Ledger API bearer tokens (JWT) are verified.
    pub auth: AuthConfig,
    /// Interpretation and submission limits.
    pub limits: Limits,
    /// How long after submission a confirmation request may still be sequenced; after
    /// that it is definitely not, and the command completes as rejected (timeout). At
    /// least 1 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub submission_timeout: Duration,
    /// How long after a confirmation request's sequencing time (beyond the domain's
    /// participant response timeout) this participant waits for the mediator's verdict
    /// before it gives the request up as timed out and releases its locks. Sequencer time;
    /// at least 1 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub mediator_reaction_timeout: Duration,
    /// How long SubmitAndWait waits for the outcome before DEADLINE_EXCEEDED (the
    /// command goes on; its completion arrives on the completion stream).
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub submit_and_wait_timeout: Duration,
    /// How often processed events are acknowledged to the sequencer.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub acknowledge_interval: Duration,
    /// Automatic pruning of the update and completion logs (docs/operations.md
    /// "Pruning").
    pub pruning: PruningConfig,
    /// Connections in the database pool; at least 4.
    pub pool_size: u32,
    /// This replica of the shard (active-passive with a fenced lease whose service name
    /// is the `shard`).
    pub replica: ReplicaConfig,
    /// TLS for both listeners and the calls to the sequencers and the topology manager
    /// (DESIGN §8): the certificate names this member (`urn:ordo:member:<node_name>`).
    /// `client_auth = "optional"` lets applications use the Ledger API with server-only
    /// TLS. Absent: plain text.
    pub tls: Option<TlsConfig>,
}

/// Ledger API token verification.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `EdDSA` (the default) or `RS256`, verified with public keys; `HS256` (a shared
    /// `secret`, which lets every verifier mint tokens) only when set explicitly.
    pub algorithm: String,
    /// The HMAC secret for HS256.
    pub secret: String,
    /// A PEM public key for EdDSA / RS256, inline.
    pub public_key_pem: String,
    /// A file of PEM public keys or a JWKS document (`{"keys": [...]}`, keys chosen by
    /// the token's `kid`) for EdDSA / RS256, re-read when it changes: keys rotate by
    /// adding the new key, then removing the old one once its tokens have expired.
    pub key_file: Option<PathBuf>,
    /// When set, tokens must carry this `aud`.
    pub audience: String,
    /// When set, tokens must carry this `iss`.
    pub issuer: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: "EdDSA".into(),
            secret: String::new(),
            public_key_pem: String::new(),
            key_file: None,
            audience: String::new(),
            issuer: String::new(),
        }
    }
}

impl AuthConfig {
    /// Checks the settings; `keys_may_follow`: the HS256 secret or the public keys may be
    /// left out, to be supplied later (the gateway takes them from network.json).
    pub fn check(&self, keys_may_follow: bool) -> Result<(), Invalid> {
        let err = |field, reason: &str| Err(Invalid::new(field, reason));
        match self.algorithm.as_str() {
            "HS256" if self.secret.is_empty() && keys_may_follow => Ok(()),
            "HS256" if self.secret.len() < 16 => {
                err("auth.secret", "HS256 needs a secret of at least 16 bytes")
            }
            "HS256" => Ok(()),
            "EdDSA" | "RS256" => match (&self.key_file, self.public_key_pem.trim().is_empty()) {
                (Some(f), _) if f.as_os_str().is_empty() => {
                    err("auth.key_file", "give the path of a PEM or JWKS file")
                }
                (Some(_), false) => err(
                    "auth.public_key_pem",
                    "give the public keys either inline or in key_file, not both",
                ),
                (None, true) if !keys_may_follow => err(
                    "auth.key_file",
                    "EdDSA/RS256 need public keys: key_file (PEM or JWKS) or public_key_pem",
                ),
                _ => Ok(()),
            },
            _ => err("auth.algorithm", "use EdDSA, RS256 or HS256"),
        }
    }
}

/// Bounds on commands and interpretation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted command (encoded `Commands` message), in bytes, at least 1 KiB;
    /// larger ones get RESOURCE_EXHAUSTED. The domain's
    /// `max_command_bytes`, when smaller, applies too.
    pub max_command_bytes: usize,
    /// Most interpretation steps a command (or a re-interpreted view) may take.
    pub max_interpretation_steps: u64,
    /// Ledger API calls per bearer token and second; a token over it is answered
    /// RESOURCE_EXHAUSTED with the time after which a retry can pass.
    pub token_requests: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_bytes: 256 * 1024,
            max_interpretation_steps: 100_000,
            token_requests: Rate::new(10_000, 20_000),
        }
    }
}

/// Automatic pruning by the active replica (`ParticipantPruningService.Prune` by age).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PruningConfig {
    /// Updates whose ledger effective time is older than this are pruned, with their
    /// completions; `"0s"` (the default): never automatically.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub retention: Duration,
    /// How often the active replica prunes when `retention` is set; at least 1 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub interval: Duration,
}

impl Default for PruningConfig {
    fn default() -> Self {
        Self {
            retention: Duration::ZERO,
            interval: Duration::from_secs(600),
        }
    }
}

impl Default for ParticipantConfig {
    fn default() -> Self {
        Self {
            node_name: "participant-1".into(),
            shard: "shard-1".into(),
            database_url: "postgres://ordo@127.0.0.1:5432/ordo_participant1".into(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 5081)),
            key_file: PathBuf::from("participant-1.key"),
            sequencers: vec!["http://127.0.0.1:4001".into()],
            topology_manager: String::new(),
            topology_admin: Vec::new(),
            topology_admin_token: String::new(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            submission_timeout: Duration::from_secs(30),
            mediator_reaction_timeout: Duration::from_secs(30),
            submit_and_wait_timeout: Duration::from_secs(60),
            acknowledge_interval: Duration::from_secs(5),
            pruning: PruningConfig::default(),
            pool_size: 10,
            replica: ReplicaConfig::default(),
            tls: None,
        }
    }
}

/// A list of strings, also given as one string (an empty string is an empty list).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) if s.is_empty() => Ok(Vec::new()),
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected an endpoint or a list of endpoints, e.g. \"http://127.0.0.1:4101\"",
        )),
    }
}

/// Whose configuration [`ConfigError`] names.
pub(crate) const NODE: &str = "participant";

impl ListenAddrs for ParticipantConfig {
    fn listen_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.grpc_listen, self.http_listen)
    }

    fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }
}

impl ParticipantConfig {
    /// Checks everything `init` needs (no sequencer or auth settings).
    pub fn validate_for_init(&self) -> Result<(), ConfigError> {
        self.check_for_init().map_err(|e| e.of(NODE))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_for_init()
            .and_then(|()| self.check_for_run())
            .map_err(|e| e.of(NODE))
    }

    fn check_for_init(&self) -> Result<(), Invalid> {
        let err = |field, reason: &str| Err(Invalid::new(field, reason));
        config::node_name(&self.node_name)?;
        if let Err(reason) = ordo_protocol::topology::validate_shard_name(&self.shard) {
            return err("shard", &reason);
        }
        config::database_url(&self.database_url)?;
        if self.key_file.as_os_str().is_empty() {
            return err("key_file", "give the path of the member's key file");
        }
        Ok(())
    }

    fn check_for_run(&self) -> Result<(), Invalid> {
        let err = |field, reason: &str| Err(Invalid::new(field, reason));
        if self.sequencers.is_empty() {
            return err("sequencers", "list every sequencer node's endpoint");
        }
        if self
            .topology_manager
            .parse::<ordo_core::MemberId>()
            .is_err()
        {
            return err(
                "topology_manager",
                "expected the topology manager's member id `name::fingerprint`",
            );
        }
        self.auth.check(false)?;
        if self.limits.max_command_bytes < 1024 {
            return err("limits.max_command_bytes", "must be at least 1 KiB");
        }
        if self.limits.max_interpretation_steps == 0 {
            return err("limits.max_interpretation_steps", "must be at least 1");
        }
        self.limits.token_requests.check("limits.token_requests")?;
        if self.submission_timeout < Duration::from_secs(1) {
            return err("submission_timeout", "must be at least 1 s");
        }
        if self.mediator_reaction_timeout < Duration::from_secs(1) {
            return err("mediator_reaction_timeout", "must be at least 1 s");
        }
        if !self.pruning.retention.is_zero() && self.pruning.interval < Duration::from_secs(1) {
            return err("pruning.interval", "must be at least 1 s");
        }
        if self.pool_size < 4 {
            return err("pool_size", "must be at least 4");
        }
        if let Some(bad) = self
            .topology_admin
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(Invalid::new(
                "topology_admin",
                format!("{bad:?} is not an http:// or https:// endpoint"),
            ));
        }
        config::listen_addrs(self.grpc_listen, self.http_listen)?;
        self.replica.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ParticipantConfig {
        ParticipantConfig {
            topology_manager: "topology::00112233445566778899aabbccddeeff".into(),
            auth: AuthConfig {
                algorithm: "HS256".into(),
                secret: "0123456789abcdef0123".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn defaults_plus_identities_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(ParticipantConfig::default().validate_for_init(), Ok(()));
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let mut c = valid();
        c.shard = "Shard 1".into();
        assert_eq!(c.validate().unwrap_err().field, "shard");
        let mut c = valid();
        c.auth.secret = "short".into();
        assert_eq!(c.validate().unwrap_err().field, "auth.secret");
        let mut c = valid();
        c.auth.algorithm = "none".into();
        assert_eq!(c.validate().unwrap_err().field, "auth.algorithm");
        // EdDSA (the default) needs public keys, inline or in a file, not both.
        let mut c = valid();
        c.auth = AuthConfig::default();
        assert_eq!(c.validate().unwrap_err().field, "auth.key_file");
        c.auth.key_file = Some("keys.jwks".into());
        assert_eq!(c.validate(), Ok(()));
        c.auth.public_key_pem = "-----BEGIN PUBLIC KEY-----".into();
        assert_eq!(c.validate().unwrap_err().field, "auth.public_key_pem");
        let mut c = valid();
        c.topology_manager = "nope".into();
        assert_eq!(c.validate().unwrap_err().field, "topology_manager");
        let mut c = valid();
        c.topology_admin = vec!["127.0.0.1:4101".into()];
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "topology_admin");
        assert!(e.reason.contains("127.0.0.1:4101"), "{e}");
        let mut c = valid();
        c.replica.renew_period = c.replica.ttl;
        assert_eq!(c.validate().unwrap_err().field, "replica.renew_period");
        let mut c = valid();
        c.replica.name = "no spaces".into();
        assert_eq!(c.validate().unwrap_err().field, "replica.name");
    }

    #[derive(Debug, Deserialize)]
    struct Admin {
        #[serde(deserialize_with = "one_or_many")]
        topology_admin: Vec<String>,
    }

    fn admin(json: &str) -> Result<Vec<String>, String> {
        serde_json::from_str::<Admin>(json)
            .map(|a| a.topology_admin)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn topology_admin_is_one_endpoint_or_a_list() {
        assert_eq!(
            admin(r#"{"topology_admin": "http://a:1"}"#),
            Ok(vec!["http://a:1".to_owned()])
        );
        assert_eq!(
            admin(r#"{"topology_admin": ["http://a:1", "http://b:2"]}"#),
            Ok(vec!["http://a:1".to_owned(), "http://b:2".to_owned()])
        );
        assert_eq!(admin(r#"{"topology_admin": ""}"#), Ok(vec![]));
        let e = admin(r#"{"topology_admin": 7}"#).unwrap_err();
        assert!(e.contains("list of endpoints"), "{e}");
    }

    #[test]
    fn the_replica_section_reads_durations_with_units() {
        let c: ParticipantConfig = serde_json::from_value(serde_json::json!({
            "replica": {"name": "p1b", "ttl": "1500ms", "renew_period": "300ms", "safety_margin": "300ms"}
        }))
        .unwrap();
        assert_eq!(c.replica.name, "p1b");
        assert_eq!(c.replica.ttl, Duration::from_millis(1500));
        assert_eq!(c.replica.renew_period, Duration::from_millis(300));
    }
}
