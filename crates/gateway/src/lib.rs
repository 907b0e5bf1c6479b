//! The JSON API gateway (`ordo gateway`): HTTP/JSON in front of the sharded Ledger API.
//! Web applications call one HTTP endpoint; the gateway verifies their bearer token, sends
//! each command to the shard hosting its actAs party (riding failovers through
//! [`ordo_ledger_client::ShardClient`]), and answers queries from its local cache of the
//! shards' active contracts. See docs/gateway.md.
//!
//! - `config`: [`GatewayConfig`].
//! - `server`: [`run`], the layers, readiness and request metrics.
//! - `api`: the `/v1` endpoints; `auth`: the caller's token; `body`: request bodies;
//!   `error`: answers and the gRPC → HTTP status mapping; `state`: what handlers share.
//! - `network_file`: network.json, followed as it changes; `topology`: the shards the
//!   topology manager knows, for placement.
//! - `cache`: the local SQLite cache of every shard's active contracts and its feeds;
//!   `filter`: queries compiled against the templates' field types (`templates`).

mod api;
mod auth;
mod body;
pub mod cache;
pub mod config;
pub mod error;
mod filter;
mod metrics;
mod network_file;
mod openapi;
mod server;
mod state;
mod templates;
mod topology;

pub use config::GatewayConfig;
pub use error::{ApiError, GatewayError, http_status};
pub use server::run;
