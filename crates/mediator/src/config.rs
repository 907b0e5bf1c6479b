//! The mediator node's typed configuration. The `ordo` binary layers it (defaults → TOML
//! file → `ORDO_…` environment → flags) and calls [`MediatorConfig::validate`] before
//! anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordo_core::MemberId;
use ordo_lease::ReplicaConfig;
use ordo_node::ListenAddrs;
pub use ordo_node::config::ConfigError;
use ordo_node::config::{self, Invalid};
use ordo_node::tls::TlsConfig;
use serde::{Deserialize, Serialize};

/// Configuration of the mediator node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MediatorConfig {
    /// The member name (`[a-z0-9._-]{1,64}`); the member id is `name::fingerprint-of-key`.
    pub node_name: String,
    /// The mediator's own database, e.g. `postgres://ordo@127.0.0.1:5432/ordo_mediator`.
    pub database_url: String,
    /// gRPC listen address (grpc.health.v1, reflection).
    pub grpc_listen: SocketAddr,
    /// HTTP listen address for `/metrics`, `/livez` and `/readyz`.
    pub http_listen: SocketAddr,
    /// The member's ed25519 seed (hex). `init` creates it when missing, never overwrites it.
    pub key_file: PathBuf,
    /// Every sequencer node, e.g. `http://127.0.0.1:4001`.
    pub sequencers: Vec<String>,
    /// The topology manager's member id (`name::fingerprint`), required to run (not to
    /// `init`): only topology transactions it signed are folded.
    #[schemars(with = "Option<String>")]
    pub topology_manager: Option<MemberId>,
    /// How often, at most, the mediator asks the sequencer for the time (a time proof) when
    /// a decision time has passed by the wall clock and no event proved it yet. At least 10 ms.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub time_proof_interval: Duration,
    /// Connections in the database pool; at least 2.
    pub pool_size: u32,
    /// How often processed events are acknowledged to the sequencer (for pruning).
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub ack_interval: Duration,
    /// How long decided requests (the `verdicts` table) are kept; the active replica
    /// deletes older ones every `prune_interval`. `"0s"`: kept forever.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub verdict_retention: Duration,
    /// How often the active replica prunes decided requests.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub prune_interval: Duration,
    /// The `[replica]` section: this replica's name and the lease timing. Every replica of
    /// the mediator uses the same database and key; one is active (lease service
    /// `mediator`), the others wait warm and take over from the database.
    pub replica: ReplicaConfig,
    /// TLS for both listeners and the calls to the sequencers (DESIGN §8): the certificate
    /// names this member (`urn:ordo:member:<node_name>`). Absent: plain text.
    pub tls: Option<TlsConfig>,
}

impl Default for MediatorConfig {
    fn default() -> Self {
        Self {
            node_name: "mediator".into(),
            database_url: "postgres://ordo@127.0.0.1:5432/ordo_mediator".into(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 4201)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 4281)),
            key_file: PathBuf::from("mediator.key"),
            sequencers: vec!["http://127.0.0.1:4001".into()],
            topology_manager: None,
            time_proof_interval: Duration::from_millis(200),
            pool_size: 4,
            ack_interval: Duration::from_secs(5),
            verdict_retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
            replica: ReplicaConfig::default(),
            tls: None,
        }
    }
}

/// Whose configuration [`ConfigError`] names.
const NODE: &str = "mediator";

impl ListenAddrs for MediatorConfig {
    fn listen_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.grpc_listen, self.http_listen)
    }

    fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }
}

impl MediatorConfig {
    /// Everything `run` needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_for_init()
            .and_then(|()| self.check_for_run())
            .map_err(|e| e.of(NODE))
    }

    /// What `init` needs: a name, a database and a key file.
    pub fn validate_for_init(&self) -> Result<(), ConfigError> {
        self.check_for_init().map_err(|e| e.of(NODE))
    }

    fn check_for_run(&self) -> Result<(), Invalid> {
        let err = |field, reason: &str| Err(Invalid::new(field, reason));
        if self.topology_manager.is_none() {
            return err(
                "topology_manager",
                "set the topology manager's member id (`name::fingerprint`)",
            );
        }
        config::sequencer_endpoints(&self.sequencers, "list every sequencer node's endpoint")?;
        if self.time_proof_interval < Duration::from_millis(10) {
            return err("time_proof_interval", "must be at least 10 ms");
        }
        if self.pool_size < 2 {
            return err(
                "pool_size",
                "must be at least 2 (processing and the outbox)",
            );
        }
        if self.ack_interval.is_zero() {
            return err("ack_interval", "must be positive");
        }
        if !self.verdict_retention.is_zero() && self.prune_interval < Duration::from_secs(1) {
            return err("prune_interval", "must be at least 1 s");
        }
        config::listen_addrs(self.grpc_listen, self.http_listen)?;
        self.replica.validate()?;
        Ok(())
    }

    fn check_for_init(&self) -> Result<(), Invalid> {
        config::node_name(&self.node_name)?;
        config::database_url(&self.database_url)?;
        if self.key_file.as_os_str().is_empty() {
            return Err(Invalid::new(
                "key_file",
                "set the path of the mediator's key file",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ordo_core::KeyPair;

    use super::*;

    fn valid() -> MediatorConfig {
        MediatorConfig {
            topology_manager: Some(
                MemberId::new("topology", &KeyPair::generate().public()).unwrap(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_need_only_the_topology_manager() {
        let d = MediatorConfig::default();
        assert_eq!(d.node_name, "mediator");
        assert_eq!(d.time_proof_interval, Duration::from_millis(200));
        assert_eq!(d.validate_for_init(), Ok(()));
        assert_eq!(d.validate().unwrap_err().field, "topology_manager");
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let mut c = valid();
        c.node_name = "Bad Name".into();
        assert_eq!(c.validate().unwrap_err().field, "node_name");
        let mut c = valid();
        c.sequencers = vec!["127.0.0.1:4001".into()];
        assert_eq!(c.validate().unwrap_err().field, "sequencers");
        let mut c = valid();
        c.time_proof_interval = Duration::from_millis(1);
        assert_eq!(c.validate().unwrap_err().field, "time_proof_interval");
        let mut c = valid();
        c.replica.renew_period = Duration::from_secs(5);
        let e = c.validate().unwrap_err();
        assert_eq!((e.node, e.field), ("mediator", "replica.renew_period"));
        let mut c = valid();
        c.replica.name = "mediator b".into();
        assert_eq!(c.validate().unwrap_err().field, "replica.name");
    }

    #[test]
    fn reads_the_replica_section_with_units() {
        let c: MediatorConfig = toml::from_str(
            "[replica]\nname = \"mediator-b\"\nttl = \"1500ms\"\nrenew_period = \"300ms\"\nsafety_margin = \"300ms\"",
        )
        .unwrap();
        assert_eq!(c.replica.name, "mediator-b");
        assert_eq!(c.replica.ttl, Duration::from_millis(1500));
        assert_eq!(c.replica.renew_period, Duration::from_millis(300));
        assert_eq!(MediatorConfig::default().replica, ReplicaConfig::default());
        assert!(toml::from_str::<MediatorConfig>("[replica]\nttl_ms = 1").is_err());
        let e = toml::from_str::<MediatorConfig>("[replica]\nttl = 1500").unwrap_err();
        assert!(
            e.to_string().contains("a bare number is not accepted"),
            "{e}"
        );
    }

    #[test]
    fn round_trips_through_toml_with_units() {
        let c = valid();
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("time_proof_interval = \"200ms\""), "{text}");
        assert!(text.contains("verdict_retention = \"7days\""), "{text}");
        let back: MediatorConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: MediatorConfig = toml::from_str("time_proof_interval = \"50ms\"").unwrap();
        assert_eq!(partial.time_proof_interval, Duration::from_millis(50));
        assert!(toml::from_str::<MediatorConfig>("nonsense = 1").is_err());
    }
}
