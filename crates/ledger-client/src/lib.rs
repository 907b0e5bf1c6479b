//! A typed client of ordo's Ledger API (`ordo.ledger.v1`), discovery of a local network
//! from the `network.json` that `ordo up` writes, and the `ordo party|package|submit|acs|
//! updates|demo` commands built on them.
//!
//! - `client`: [`LedgerClient`], one participant's Ledger API with a bearer token.
//! - `network`: [`Network`], the nodes of a running network, token minting, party → shard
//!   routing.
//! - `types`: what the client returns (ledger values as `serde_json::Value`).
//! - `cli`: the clap commands the `ordo` binary mounts.

pub mod cli;
pub mod client;
pub mod error;
pub mod network;
pub mod types;

pub use client::{LedgerClient, UpdateStream};
pub use error::LedgerError;
pub use network::Network;
pub use types::{
    ActiveContracts, Archived, Command, Contract, DisclosedContract, Event, Exercised, Filter,
    PackageDetails, ParticipantInfo, PartyDetails, Submission, Transaction, TransactionResult,
    UploadedPackage,
};
