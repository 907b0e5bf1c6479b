//! A typed client of ordo's Ledger API (`ordo.ledger.v1`), discovery of a local network
//! from the `network.json` that `ordo up` writes, and the `ordo party|package|submit|acs|
//! updates|demo` commands built on them.
//!
//! - `client`: [`LedgerClient`], one participant's Ledger API with a bearer token.
//! - `network`: [`Network`], the nodes of a running network, token minting, party → shard
//!   routing.
//! - `failover`: [`ShardClient`], a shard across its replicas: submission that rides
//!   through a failover with the same command id.
//! - `pruning`: pruning a shard's logs and reading how far they were pruned.
//! - `request_id`: the request id every call of a piece of work sends (`x-request-id`).
//! - `types`: what the client returns (ledger values as `serde_json::Value`).
//! - `cli`: the clap commands the `ordo` binary mounts.

pub mod cli;
pub mod client;
pub mod error;
pub mod failover;
pub mod network;
pub mod pruning;
pub mod request_id;
pub mod types;
pub mod users;

pub use client::{CompletionStream, LedgerClient, UpdateStream, new_command_id, source_chain};
pub use error::LedgerError;
pub use failover::{RetryPolicy, ShardClient, is_failover_error};
pub use network::Network;
pub use pruning::{PruneOutcome, PruneTarget, PrunedOffsets};
pub use types::{
    ActiveContracts, Archived, Command, Completion, Contract, DisclosedContract, Event, Exercised,
    Filter, LedgerEnds, PackageDetails, ParticipantInfo, PartyDetails, Submission, Transaction,
    TransactionResult, UploadedPackage,
};
pub use users::{UserInfo, UserRight};
