//! What every ordo node serves the same way (DESIGN §9): `grpc.health.v1` with NOT_SERVING
//! before draining, gRPC reflection over all of ordo's services, and an HTTP port with
//! Prometheus `/metrics`, `/livez` and `/readyz`.

pub mod grpc;
pub mod http;

pub use grpc::{Health, incoming, reflection};
pub use http::{metrics_handle, router};
