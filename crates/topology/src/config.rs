//! The topology manager's typed configuration. The `ordo` binary layers it
//! (defaults → TOML file → `ORDO_…` environment → flags) and calls
//! [`TopologyConfig::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordo_lease::ReplicaConfig;
use ordo_node::ListenAddrs;
pub use ordo_node::config::ConfigError;
use ordo_node::config::{self, Invalid};
use ordo_node::tls::TlsConfig;
use ordo_protocol::DomainParameters;
use serde::{Deserialize, Serialize};

/// Configuration of the topology manager node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// The manager's member name (`[a-z0-9._-]{1,64}`); its member id is
    /// `node_name::fingerprint-of-its-key`.
    pub node_name: String,
    /// The manager's own database, e.g. `postgres://ordo@127.0.0.1:5432/ordo_topology`.
    pub database_url: String,
    /// gRPC listen address (TopologyAdminService, grpc.health.v1, reflection).
    pub grpc_listen: SocketAddr,
    /// HTTP listen address for `/metrics`, `/livez` and `/readyz`.
    pub http_listen: SocketAddr,
    /// The manager's ed25519 key (seed as hex). `init` generates it when missing and never
    /// overwrites it.
    pub key_file: PathBuf,
    /// Every sequencer node, `http://host:port`. Also broadcast to the members at bootstrap
    /// (SetSequencers).
    pub sequencers: Vec<String>,
    /// The sequencers' admin token (required): the manager registers every member (itself
    /// included) in the sequencer's member registry before broadcasting its AddMember.
    pub sequencer_admin_token: String,
    /// Bearer token of this node's admin API (`authorization: Bearer <token>`): every call.
    /// Required.
    pub admin_token: String,
    /// Whether a participant may, without the admin token, allocate parties on its own
    /// shard and vet packages, authenticated by its TLS client certificate alone (which
    /// names it: `urn:ordo:member:<name>`). Registering members and changing the domain's
    /// parameters always need the admin token.
    pub participant_self_service: bool,
    /// The domain parameters broadcast once at bootstrap (later: SetParameters).
    pub parameters: ParametersConfig,
    /// How long an admin change may take to be sequenced and applied, and the deadline of
    /// the sequencer calls; at least 1 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub request_timeout: Duration,
    /// The largest package source VetPackage accepts, in bytes (it travels in one
    /// topology transaction, so it must fit the sequencer's `max_request_bytes`); at most
    /// 16 MiB.
    pub max_package_bytes: usize,
    /// Connections in the node's database pool; at least 2 (processor and admin calls).
    pub pool_size: u32,
    /// How often the manager acknowledges processed events to the sequencer; at least
    /// 100 ms.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub acknowledge_interval: Duration,
    /// The `[replica]` section: this replica's name and the lease timing. Every replica of
    /// the manager uses the same database and key; one is active (lease service
    /// `topology`) and serves the admin API, the others answer UNAVAILABLE naming it.
    pub replica: ReplicaConfig,
    /// TLS for both listeners and the calls to the sequencers (DESIGN §8): the certificate
    /// names this member (`urn:ordo:member:<node_name>`). Absent: plain text.
    pub tls: Option<TlsConfig>,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            node_name: "topology".into(),
            database_url: "postgres://ordo@127.0.0.1:5432/ordo_topology".into(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 4101)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 4181)),
            key_file: PathBuf::from("topology.key"),
            sequencers: vec!["http://127.0.0.1:4001".into()],
            sequencer_admin_token: String::new(),
            admin_token: String::new(),
            participant_self_service: true,
            parameters: ParametersConfig::default(),
            request_timeout: Duration::from_secs(10),
            max_package_bytes: 512 * 1024,
            pool_size: 4,
            acknowledge_interval: Duration::from_secs(5),
            replica: ReplicaConfig::default(),
            tls: None,
        }
    }
}

/// `[parameters]`: the domain parameters as a config file writes them, durations with
/// their unit. The protocol's [`DomainParameters`] keeps them as microseconds of
/// sequencer time; [`ParametersConfig::domain_parameters`] converts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ParametersConfig {
    /// How long after a confirmation request's sequencing time the mediator waits for
    /// responses before it decides Timeout.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub participant_response_timeout: Duration,
    /// How long a command id is remembered for deduplication.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub deduplication_period: Duration,
    /// The largest command (serialised) a participant accepts, in bytes.
    pub max_command_bytes: usize,
    /// The largest confirmation request a participant sends, and the largest view it
    /// reads, in bytes: a larger one is refused before it is decoded.
    pub max_request_bytes: usize,
    /// The most actions (create, exercise, fetch nodes) one transaction may have.
    pub max_transaction_nodes: usize,
    /// The script operations one interpretation may take (a submitting participant's, and
    /// each confirming participant's re-interpretation of a view).
    pub max_interpretation_steps: u64,
    /// The largest contract (canonical bytes of its instance).
    pub max_contract_bytes: usize,
    /// The deepest nesting of exercises inside choice bodies.
    pub max_exercise_depth: usize,
}

impl Default for ParametersConfig {
    fn default() -> Self {
        let p = DomainParameters::default();
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Self {
            participant_response_timeout: micros(p.participant_response_timeout_us),
            deduplication_period: micros(p.deduplication_period_us),
            max_command_bytes: p.max_command_bytes,
            max_request_bytes: p.max_request_bytes,
            max_transaction_nodes: p.max_transaction_nodes,
            max_interpretation_steps: p.max_interpretation_steps,
            max_contract_bytes: p.max_contract_bytes,
            max_exercise_depth: p.max_exercise_depth,
        }
    }
}

impl ParametersConfig {
    /// The protocol's parameters; durations beyond the protocol's range (about 292,000
    /// years) are refused by [`ParametersConfig::check`].
    pub fn domain_parameters(&self) -> DomainParameters {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        DomainParameters {
            participant_response_timeout_us: micros(self.participant_response_timeout),
            deduplication_period_us: micros(self.deduplication_period),
            max_command_bytes: self.max_command_bytes,
            max_request_bytes: self.max_request_bytes,
            max_transaction_nodes: self.max_transaction_nodes,
            max_interpretation_steps: self.max_interpretation_steps,
            max_contract_bytes: self.max_contract_bytes,
            max_exercise_depth: self.max_exercise_depth,
        }
    }

    /// Every value positive, as [`validate_parameters`] requires, reported as
    /// `parameters.<field>`.
    fn check(&self) -> Result<(), Invalid> {
        for (field, d) in [
            (
                "parameters.participant_response_timeout",
                self.participant_response_timeout,
            ),
            ("parameters.deduplication_period", self.deduplication_period),
        ] {
            if d.is_zero() || i64::try_from(d.as_micros()).is_err() {
                return Err(Invalid::new(
                    field,
                    "must be positive and at most 100000 years, e.g. \"10s\"",
                ));
            }
        }
        validate_parameters(&self.domain_parameters())
            .map_err(|reason| Invalid::new("parameters", reason))
    }
}

/// Whose configuration [`ConfigError`] names.
const NODE: &str = "topology manager";

impl ListenAddrs for TopologyConfig {
    fn listen_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.grpc_listen, self.http_listen)
    }

    fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }
}

impl TopologyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.of(NODE))
    }

    fn check(&self) -> Result<(), Invalid> {
        let err = |field, reason: String| Err(Invalid::new(field, reason));
        config::node_name(&self.node_name)?;
        config::database_url(&self.database_url)?;
        if self.key_file.as_os_str().is_empty() {
            return err("key_file", "set the path of the manager's key file".into());
        }
        config::sequencer_endpoints(
            &self.sequencers,
            "list every sequencer node (http://host:port)",
        )?;
        if self.sequencer_admin_token.is_empty() {
            return err(
                "sequencer_admin_token",
                "set the sequencers' admin token: the manager registers the members there".into(),
            );
        }
        if self.admin_token.is_empty() {
            return err(
                "admin_token",
                "set a bearer token for the manager's admin API".into(),
            );
        }
        self.parameters.check()?;
        if self.request_timeout < Duration::from_secs(1) {
            return err("request_timeout", "must be at least 1 s".into());
        }
        if self.max_package_bytes == 0 || self.max_package_bytes > 16 * 1024 * 1024 {
            return err(
                "max_package_bytes",
                "must be between 1 byte and 16 MiB".into(),
            );
        }
        if self.pool_size < 2 {
            return err(
                "pool_size",
                "must be at least 2 (processor and admin calls)".into(),
            );
        }
        if self.acknowledge_interval < Duration::from_millis(100) {
            return err("acknowledge_interval", "must be at least 0.1 s".into());
        }
        config::listen_addrs(self.grpc_listen, self.http_listen)?;
        self.replica.validate()?;
        Ok(())
    }
}

/// Domain parameters that members can work with: every value positive.
pub fn validate_parameters(p: &DomainParameters) -> Result<(), String> {
    if p.participant_response_timeout_us <= 0 {
        return Err(format!(
            "participant_response_timeout_us must be > 0, got {}",
            p.participant_response_timeout_us
        ));
    }
    if p.deduplication_period_us <= 0 {
        return Err(format!(
            "deduplication_period_us must be > 0, got {}",
            p.deduplication_period_us
        ));
    }
    if p.max_command_bytes == 0 {
        return Err("max_command_bytes must be > 0".into());
    }
    if p.max_request_bytes == 0 {
        return Err("max_request_bytes must be > 0".into());
    }
    for (name, value) in [
        ("max_transaction_nodes", p.max_transaction_nodes as u64),
        ("max_interpretation_steps", p.max_interpretation_steps),
        ("max_contract_bytes", p.max_contract_bytes as u64),
        ("max_exercise_depth", p.max_exercise_depth as u64),
    ] {
        if value == 0 {
            return Err(format!("{name} must be > 0"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> TopologyConfig {
        TopologyConfig {
            sequencer_admin_token: "s".into(),
            admin_token: "a".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_plus_tokens_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
        // The tokens have no safe default: the operator must set them.
        assert_eq!(
            TopologyConfig::default().validate().unwrap_err().field,
            "sequencer_admin_token"
        );
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
        c.admin_token.clear();
        assert_eq!(c.validate().unwrap_err().field, "admin_token");
        let mut c = valid();
        c.parameters.participant_response_timeout = Duration::ZERO;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "parameters.participant_response_timeout");
        let mut c = valid();
        c.parameters.max_exercise_depth = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "parameters");
        assert!(e.reason.contains("max_exercise_depth"), "{e}");
        let mut c = valid();
        c.replica.safety_margin = c.replica.ttl;
        let e = c.validate().unwrap_err();
        assert_eq!(
            (e.node, e.field),
            ("topology manager", "replica.safety_margin")
        );
    }

    #[test]
    fn reads_durations_with_their_unit() {
        let c: TopologyConfig = serde_json::from_str(
            r#"{"replica":{"name":"topology-b","ttl":"1500ms","renew_period":"300ms","safety_margin":"300ms"}}"#,
        )
        .unwrap();
        assert_eq!(c.replica.name, "topology-b");
        assert_eq!(c.replica.ttl, Duration::from_millis(1500));
        assert_eq!(c.replica.safety_margin, Duration::from_millis(300));
        assert!(serde_json::from_str::<TopologyConfig>(r#"{"replica":{"ttl_ms":1}}"#).is_err());
        assert!(serde_json::from_str::<TopologyConfig>(r#"{"replica":{"ttl":1500}}"#).is_err());
        let c: TopologyConfig = serde_json::from_str(
            r#"{"parameters":{"participant_response_timeout":"3s","deduplication_period":"1h"}}"#,
        )
        .unwrap();
        let p = c.parameters.domain_parameters();
        assert_eq!(
            (p.participant_response_timeout_us, p.deduplication_period_us),
            (3_000_000, 3_600_000_000)
        );
        assert_eq!(
            ParametersConfig::default().domain_parameters(),
            DomainParameters::default()
        );
        // The protocol's names are not the file's.
        assert!(
            serde_json::from_str::<TopologyConfig>(
                r#"{"parameters":{"deduplication_period_us":1}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn round_trips_through_toml_shaped_json() {
        let c = valid();
        let text = serde_json::to_string(&c).unwrap();
        let back: TopologyConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: TopologyConfig =
            serde_json::from_str(r#"{"node_name":"tm","request_timeout":"2s 500ms"}"#).unwrap();
        assert_eq!(partial.request_timeout, Duration::from_millis(2500));
        assert_eq!(partial.pool_size, 4);
    }
}
