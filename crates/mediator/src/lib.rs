//! The ordo mediator node (DESIGN §4 step 5): it collects the confirming participants'
//! responses to each confirmation request and decides Approve, Reject or Timeout, in
//! sequencer time, with its pending requests and verdicts in its own Postgres database so
//! that a restart or a failover resumes them. It runs active-passive: replicas share the
//! database and key, one holds the `mediator` lease and processes, every write is fenced
//! with the lease's token (`ordo-lease`).
//!
//! - `verdict`: the deciding core, pure code over plain data.
//! - `process`: one sequenced event → the changes it makes (topology fold, signature
//!   checks, the core).
//! - `store`: the SQL; every event's changes, verdicts, outbox rows and the cursor commit
//!   in one transaction.
//! - `outbox`: sends signed verdicts with deterministic message ids until sequenced.
//! - `node`: `init`, `Listeners`, `run` (the replica and its terms).

pub mod config;
mod error;
mod metrics;
mod node;
mod outbox;
mod process;
mod retention;
mod store;
pub mod verdict;

pub use config::{ConfigError, MediatorConfig};
pub use error::MediatorError;
pub use node::{HEALTH_SERVICE, InitOutcome, LEASE_SERVICE, Listeners, init, run};
pub use ordo_node::db::redact_url;
