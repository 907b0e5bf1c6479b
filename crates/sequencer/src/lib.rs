//! The ordo sequencer node: active-active ordered multicast over one shared Postgres.
//!
//! Every node group-commits its sends under one head-row lock (so commit order equals
//! timestamp order), follows the order with one tail reader, and fans events out to its
//! subscriptions. See `order` for the decision, `store` for the SQL.

mod admin;
pub mod auth;
pub mod config;
mod error;
mod limits;
mod metrics;
mod node;
pub mod order;
mod registry;
mod service;
mod store;
mod subscription;
mod tail;
mod writer;

pub use config::{ConfigError, SequencerConfig};
pub use error::SequencerError;
pub use node::{HEALTH_SERVICE, InitOutcome, Listeners, init, run};
pub use ordo_node::db::redact_url;
