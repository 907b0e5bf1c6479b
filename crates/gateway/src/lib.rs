//! The JSON API gateway (`ordo gateway`): HTTP/JSON in front of the sharded Ledger API.
//! Web applications call one HTTP endpoint; the gateway verifies their bearer token, sends
//! each command to the shard hosting its actAs party (riding failovers through
//! [`ordo_ledger_client::ShardClient`]), and answers queries from every shard hosting the
//! token's parties. See docs/gateway.md.
//!
//! - `config`: [`GatewayConfig`].
//! - `server`: [`run`], the layers, readiness and request metrics.
//! - `api`: the `/v1` endpoints; `auth`: the caller's token; `body`: request bodies;
//!   `error`: answers and the gRPC → HTTP status mapping; `state`: what handlers share.

mod api;
mod auth;
mod body;
pub mod config;
pub mod error;
mod server;
mod state;

pub use config::GatewayConfig;
pub use error::{ApiError, GatewayError, http_status};
pub use server::run;
