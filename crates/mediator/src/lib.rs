//! The ordo mediator node (DESIGN §4 step 5): it collects the confirming participants'
//! responses to each confirmation request and decides Approve, Reject or Timeout, in
//! sequencer time, with its pending requests and verdicts in its own Postgres database so
//! that a restart (or, later, a failover) resumes them.
//!
//! - `verdict`: the deciding core, pure code over plain data.
//! - `process`: one sequenced event → the changes it makes (topology fold, signature
//!   checks, the core).
//! - `store`: the SQL; every event's changes, verdicts, outbox rows and the cursor commit
//!   in one transaction.
//! - `outbox`: sends signed verdicts with deterministic message ids until sequenced.
//! - `node`: `init`, `Listeners`, `run`.

pub mod config;
mod error;
mod metrics;
mod node;
mod outbox;
mod process;
mod store;
pub mod verdict;

pub use config::{ConfigError, MediatorConfig};
pub use error::MediatorError;
pub use node::{HEALTH_SERVICE, InitOutcome, Listeners, init, run};
pub use ordo_node::db::redact_url;
