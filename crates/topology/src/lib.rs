//! The ordo topology manager (domain manager, DESIGN §1 and §6): the one author of the
//! domain's topology — members and their keys, sequencer endpoints, the mediator, the
//! participant shards, the party-to-shard mapping, vetted packages and domain parameters.
//!
//! Every change is a [`ordo_protocol::TopologyTransaction`] that the manager signs and
//! broadcasts through the sequencer; every member (the manager included) folds it at its
//! sequencing timestamp. The manager also keeps the sequencer's member registry: it
//! registers each member there before broadcasting its AddMember.
//!
//! It runs active-passive: replicas share the database and key, the holder of the
//! `topology` lease (`ordo-lease`) serves, and every write is fenced with its token.
//!
//! - `plan`: what an admin request means for the topology (pure, unit-tested);
//! - `manager`: the change pipeline (one at a time: decide, propose, send, await);
//! - `processor`: the manager's own subscription, where changes take effect;
//! - `store`: the SQL; `admin`: the gRPC adapter (`convert`: its protobuf ⇄ domain
//!   conversions of users and rights); `node`: `init`, `run` and the terms.

mod admin;
pub mod config;
mod convert;
mod error;
mod manager;
mod metrics;
mod node;
pub mod plan;
mod processor;
pub mod store;

pub use config::{ConfigError, ParametersConfig, TopologyConfig};
pub use error::TopologyError;
pub use node::{HEALTH_SERVICE, InitOutcome, LEASE_SERVICE, Listeners, init, run};
