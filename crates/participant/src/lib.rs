//! The ordo participant: one shard's participant service (DESIGN §4–§6).
//!
//! - `submission`: Ledger API commands → interpretation → a confirmation request (views
//!   per informee participant, the informee tree for the mediator) in the outbox.
//! - `processor`: sequencer events in order, exactly once: topology, views (activeness
//!   with locks → a signed response), verdicts (commit or release), each event's effects
//!   in one database transaction with the cursor; no event can stop it.
//! - `validation` (decoding, signatures, a view's structure, its binding to the request's
//!   root, the confirmation policy, re-interpretation), `conflict` (activeness, locks,
//!   freshness) and `views` (splitting and committing transactions) are the pure deciding
//!   cores; `alarm` reports what an honest member never sends; `store` holds all SQL;
//!   `outbox` sends.
//! - `api`: the Ledger API services (`ordo.ledger.v1`); `auth`: JWT bearer tokens.
//! - `node` and `session`: the shard runs active-passive (DESIGN §3). Replicas compete
//!   for the shard's lease; the active one resumes from the database and runs the
//!   processor and the outbox for its term, and fences every write with the lease
//!   (`Shared::commit`). A passive replica answers the Ledger API UNAVAILABLE, naming the
//!   active one.

pub mod alarm;
pub mod api;
mod apply;
pub mod auth;
pub mod config;
pub mod conflict;
mod error;
pub mod events;
mod metrics;
mod node;
mod outbox;
pub mod processor;
pub mod pruning;
mod session;
pub mod store;
pub mod submission;
#[cfg(test)]
mod testkit;
mod topology_admin;
pub mod validation;
pub mod views;
mod writer;

pub use config::{AuthConfig, ConfigError, Limits, ParticipantConfig};
pub use error::ParticipantError;
pub use node::{HEALTH_SERVICE, InitOutcome, Listeners, Shared, Snapshot, init, run};
