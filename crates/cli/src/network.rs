//! `DIR/network.json`: what `ordo up` runs, for people, scripts and the other tools
//! (`ordo token` signs with the key its `auth` names; `ordo admin` its nodes, tokens and control API;
//! the gateways their shards).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct NetworkFile {
    pub postgres: PostgresEntry,
    pub sequencers: Vec<NodeEntry>,
    pub topology: Vec<NodeEntry>,
    pub mediators: Vec<NodeEntry>,
    pub participants: Vec<NodeEntry>,
    pub gateways: Vec<NodeEntry>,
    #[serde(default)]
    pub control: ControlEntry,
    pub auth: Auth,
    /// The CA and the operator's certificate; absent with `ordo up --insecure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ordo_ledger_client::network::TlsEntry>,
}

/// `ordo up`'s control API (`POST /shards`), on loopback; its bearer token is the file
/// `control-token` next to network.json.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ControlEntry {
    pub http: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PostgresEntry {
    pub url: String,
    /// Whether `ordo up` runs this Postgres (false when given `--database-url`).
    pub managed: bool,
}

/// One node: a sequencer, one replica of an active-passive service, or a gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeEntry {
    /// The process's name (a replica's `[replica] name`, e.g. `participant-1-b`).
    pub name: String,
    /// The logical service: `sequencer`, `topology`, `mediator`, a participant's shard
    /// (`shard-1`), or `gateway`. The replicas of one service share its database and member
    /// identity.
    #[serde(default)]
    pub service: String,
    /// `active` or `passive`, kept current by `ordo up` while it runs (a replica that is
    /// down is `passive`); sequencers and gateways are active-active, always `active`.
    #[serde(default)]
    pub role: String,
    /// A participant's shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub pid: Option<u32>,
    /// The gRPC endpoint; a gateway has none (HTTP only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grpc: String,
    pub http: String,
    pub metrics: String,
    pub log: PathBuf,
}

/// How tokens are signed and verified, and the admin tokens (shared with the ledger
/// client's reading of the file).
pub use ordo_ledger_client::network::AuthEntry as Auth;
