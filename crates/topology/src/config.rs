//! The topology manager's typed configuration. The `ordo` binary layers it
//! (defaults → TOML file → `ORDO_…` environment → flags) and calls
//! [`TopologyConfig::validate`] before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ordo_protocol::DomainParameters;
use serde::{Deserialize, Serialize};

/// Configuration of the topology manager node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
    /// The sequencers' admin token: the manager registers every member (itself included)
    /// in the sequencer's member registry before broadcasting its AddMember.
    pub sequencer_admin_token: String,
    /// Bearer token of this node's admin API (`authorization: Bearer <token>`).
    pub admin_token: String,
    /// The domain parameters broadcast once at bootstrap (later: SetParameters).
    pub parameters: DomainParameters,
    /// How long an admin change may take to be sequenced and applied, and the deadline of
    /// the sequencer calls.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// The largest package source VetPackage accepts, in bytes (it travels in one
    /// topology transaction, so it must fit the sequencer's `max_request_bytes`).
    pub max_package_bytes: usize,
    /// Connections in the node's database pool.
    pub pool_size: u32,
    /// How often the manager acknowledges processed events to the sequencer.
    #[serde(with = "secs")]
    pub acknowledge_interval: Duration,
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
            parameters: DomainParameters::default(),
            request_timeout: Duration::from_secs(10),
            max_package_bytes: 512 * 1024,
            pool_size: 4,
            acknowledge_interval: Duration::from_secs(5),
        }
    }
}

/// A configuration value that cannot work, named with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid topology manager configuration: {field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl TopologyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        if ordo_core::ids::validate_name(&self.node_name).is_err() {
            return err("node_name", "use 1 to 64 of [a-z0-9._-]".into());
        }
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return err("database_url", "expected a postgres:// URL".into());
        }
        if self.key_file.as_os_str().is_empty() {
            return err("key_file", "set the path of the manager's key file".into());
        }
        if self.sequencers.is_empty() {
            return err(
                "sequencers",
                "list every sequencer node (http://host:port)".into(),
            );
        }
        if let Some(bad) = self
            .sequencers
            .iter()
            .find(|s| !(s.starts_with("http://") || s.starts_with("https://")))
        {
            return err(
                "sequencers",
                format!("{bad:?} is not an http:// or https:// endpoint"),
            );
        }
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
        if let Err(reason) = validate_parameters(&self.parameters) {
            return err("parameters", reason);
        }
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
        if self.grpc_listen == self.http_listen && self.grpc_listen.port() != 0 {
            return err("http_listen", "must differ from grpc_listen".into());
        }
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
    Ok(())
}

/// Durations in configuration files are whole or fractional seconds (`request_timeout = 10`).
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
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
        c.parameters.participant_response_timeout_us = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "parameters");
        assert!(e.reason.contains("participant_response_timeout_us"), "{e}");
    }

    #[test]
    fn round_trips_through_toml_shaped_json() {
        let c = valid();
        let text = serde_json::to_string(&c).unwrap();
        let back: TopologyConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: TopologyConfig =
            serde_json::from_str(r#"{"node_name":"tm","request_timeout":2.5}"#).unwrap();
        assert_eq!(partial.request_timeout, Duration::from_millis(2500));
        assert_eq!(partial.pool_size, 4);
    }
}
