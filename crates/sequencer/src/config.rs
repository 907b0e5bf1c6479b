//! The sequencer node's typed configuration. The `ordo` binary layers it
//! (defaults → TOML file → `ORDO_…` environment → flags) and calls [`SequencerConfig::validate`]
//! before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use ordo_node::ListenAddrs;
pub use ordo_node::config::ConfigError;
use ordo_node::config::{self, Invalid};
pub use ordo_node::limits::Rate;
use ordo_node::tls::TlsConfig;
use serde::{Deserialize, Serialize};

/// Configuration of one sequencer node. Every node of a domain points at the same database.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SequencerConfig {
    /// This node's name, unique among the domain's sequencer nodes: `[a-z0-9._-]{1,64}`.
    /// Appears in logs, metrics labels and `Status`.
    pub node_name: String,
    /// The shared sequencer database, e.g. `postgres://ordo@127.0.0.1:5432/sequencer`
    /// (sqlx URL options such as `sslmode` apply). It must exist; `init` creates the schema.
    /// Give a URL with a password as `ORDO_SEQUENCER_DATABASE_URL`; logs mask it.
    pub database_url: String,
    /// gRPC listen address (SequencerService, SequencerAuthService, SequencerAdminService,
    /// grpc.health.v1, reflection).
    pub grpc_listen: SocketAddr,
    /// HTTP listen address for `/metrics`, `/livez` and `/readyz`; not `grpc_listen`.
    pub http_listen: SocketAddr,
    /// Bearer token required by SequencerAdminService (member registration, pruning,
    /// status); the same on every node. Empty disables the admin service (its calls answer
    /// FAILED_PRECONDITION).
    pub admin_token: String,
    /// Largest accepted submission (encoded), in bytes, 1 KiB to 64 MiB; a larger one gets
    /// RESOURCE_EXHAUSTED. Keep it above 64 KiB (members' responses and verdicts) and the
    /// domain's `max_request_bytes`.
    pub max_request_bytes: usize,
    /// Largest accepted gRPC message of the SequencerService (a `Send`, or a `SendBatch`
    /// of several submissions), in bytes: a larger one is refused from its length prefix,
    /// before it is read (OUT_OF_RANGE). At least `max_request_bytes`, at most 256 MiB;
    /// members' clients must batch below it (their `max_batch_bytes`).
    pub max_batch_bytes: usize,
    /// Lifetime of a member's authentication token; at least 10 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub token_ttl: Duration,
    /// Lifetime of an authentication challenge; at least 1 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub challenge_ttl: Duration,
    /// Most submissions written in one group-commit transaction, 1 to 50000.
    pub max_batch: usize,
    /// Connections in the node's database pool; at least 4 (writer, tail reader, listener,
    /// catch-up). Size Postgres `max_connections` above the sum over all nodes.
    pub pool_size: u32,
    /// Events the tail reader keeps in memory for subscriptions that are nearly caught up;
    /// at least 1000.
    pub tail_buffer_events: usize,
    /// Bytes those events may hold at most (at least 16 MiB); older ones are read from the
    /// table.
    pub tail_buffer_bytes: usize,
    /// Rate limits per member and per client address.
    pub limits: SequencerLimits,
    /// The members (by name, the part of the id before `::`) that may address a
    /// broadcast, which every member receives: the topology manager. `"*"`: every member.
    pub broadcasters: Vec<String>,
    /// Postgres `idle_in_transaction_session_timeout` and `lock_timeout` of the writer's
    /// connections: a paused writer's transaction is aborted after this, so it can never
    /// hold the order's head for longer. At least 1 s.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub writer_stall_timeout: Duration,
    /// TLS for both listeners (DESIGN §8). With `client_auth = "required"` (the default) a
    /// member's calls are accepted only from a connection whose certificate names it
    /// (`urn:ordo:member:<name>`). Absent: plain text.
    pub tls: Option<TlsConfig>,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            node_name: "sequencer-1".into(),
            database_url: "postgres://ordo@127.0.0.1:5432/ordo_sequencer".into(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 4001)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 4081)),
            admin_token: String::new(),
            max_request_bytes: 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            token_ttl: Duration::from_secs(600),
            challenge_ttl: Duration::from_secs(60),
            max_batch: 2000,
            pool_size: 16,
            tail_buffer_events: 100_000,
            tail_buffer_bytes: 256 * 1024 * 1024,
            limits: SequencerLimits::default(),
            broadcasters: vec!["topology".into()],
            writer_stall_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// `[limits]`: how fast one member may send and unauthenticated callers may call
/// (docs/security.md, "Abuse resistance"). A caller over a limit is answered
/// RESOURCE_EXHAUSTED with the time after which a retry can pass; `per_second = 0` turns a
/// limit off.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SequencerLimits {
    /// Submissions per member and second (a `SendBatch` counts each submission).
    pub member_sends: Rate,
    /// Submission bytes per member and second; the burst must hold a whole batch
    /// (`max_batch_bytes`).
    pub member_send_bytes: Rate,
    /// `Challenge` and `Authenticate` calls per client address and second.
    pub unauthenticated: Rate,
}

impl Default for SequencerLimits {
    fn default() -> Self {
        Self {
            member_sends: Rate::new(20_000, 40_000),
            member_send_bytes: Rate::new(64 * 1024 * 1024, 128 * 1024 * 1024),
            unauthenticated: Rate::new(50, 100),
        }
    }
}

/// Whose configuration [`ConfigError`] names.
const NODE: &str = "sequencer";

impl ListenAddrs for SequencerConfig {
    fn listen_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.grpc_listen, self.http_listen)
    }

    fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }
}

impl SequencerConfig {
    /// Whether `member` (`name::fingerprint`) may address a broadcast.
    pub fn may_broadcast(&self, member: &str) -> bool {
        let name = member.split_once("::").map_or(member, |(name, _)| name);
        self.broadcasters.iter().any(|b| b == "*" || b == name)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.of(NODE))
    }

    fn check(&self) -> Result<(), Invalid> {
        let err = |field, reason: &str| Err(Invalid::new(field, reason));
        config::node_name(&self.node_name)?;
        config::database_url(&self.database_url)?;
        if self.max_request_bytes < 1024 || self.max_request_bytes > 64 * 1024 * 1024 {
            return err("max_request_bytes", "must be between 1 KiB and 64 MiB");
        }
        if self.token_ttl < Duration::from_secs(10) {
            return err("token_ttl", "must be at least 10 s");
        }
        if self.challenge_ttl < Duration::from_secs(1) {
            return err("challenge_ttl", "must be at least 1 s");
        }
        if self.max_batch == 0 || self.max_batch > 50_000 {
            return err("max_batch", "must be between 1 and 50000");
        }
        if self.pool_size < 4 {
            return err(
                "pool_size",
                "must be at least 4 (writer, tail reader, listener, catch-up)",
            );
        }
        if self.max_batch_bytes < self.max_request_bytes || self.max_batch_bytes > 256 * 1024 * 1024
        {
            return err(
                "max_batch_bytes",
                "must be at least max_request_bytes and at most 256 MiB",
            );
        }
        if self.tail_buffer_events < 1000 {
            return err("tail_buffer_events", "must be at least 1000");
        }
        if self.tail_buffer_bytes < 16 * 1024 * 1024 {
            return err("tail_buffer_bytes", "must be at least 16 MiB");
        }
        let l = &self.limits;
        l.member_sends.check("limits.member_sends")?;
        l.member_send_bytes.check("limits.member_send_bytes")?;
        l.unauthenticated.check("limits.unauthenticated")?;
        if l.member_send_bytes.per_second > 0
            && (l.member_send_bytes.burst as usize) < self.max_batch_bytes
        {
            return err(
                "limits.member_send_bytes",
                "its burst must hold a whole batch (at least max_batch_bytes)",
            );
        }
        if self.writer_stall_timeout < Duration::from_secs(1) {
            return err("writer_stall_timeout", "must be at least 1 s");
        }
        config::listen_addrs(self.grpc_listen, self.http_listen)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = SequencerConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.may_broadcast("topology::00112233445566778899aabbccddeeff"));
        assert!(!c.may_broadcast("participant-1::00112233445566778899aabbccddeeff"));
        let open = SequencerConfig {
            broadcasters: vec!["*".into()],
            ..Default::default()
        };
        assert!(open.may_broadcast("participant-1::00112233445566778899aabbccddeeff"));
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let mut c = SequencerConfig {
            node_name: "Bad Name".into(),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "node_name");
        c.node_name = "seq-1".into();
        c.database_url = "mysql://x".into();
        assert_eq!(c.validate().unwrap_err().field, "database_url");
        c.database_url = SequencerConfig::default().database_url;
        c.max_batch = 0;
        assert_eq!(c.validate().unwrap_err().field, "max_batch");
    }
}
