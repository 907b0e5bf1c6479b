//! What every ordo node does the same way (DESIGN §9): `grpc.health.v1` with NOT_SERVING
//! before draining, gRPC reflection over all of ordo's services, an HTTP port with
//! Prometheus `/metrics`, `/livez` and `/readyz` (and [`http_client`], the client side of
//! such endpoints), starting and draining those servers, the database plumbing of `init`
//! and `run`, the member's key file and the configuration checks the nodes share.

pub mod alarm;
pub mod config;
pub mod db;
pub mod grpc;
pub mod http;
pub mod http_client;
pub mod key;
pub mod limits;
pub mod metrics;
pub mod serve;

pub use grpc::{Health, grpc_server, health, serving, serving_with, with_reflection};
pub use http::{metrics_handle, router};
/// TLS on every listener and client (DESIGN §8).
pub use ordo_tls as tls;
pub use serve::{ListenAddrs, Listeners, Servers};
