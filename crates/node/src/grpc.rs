//! gRPC plumbing shared by the nodes.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Concurrent calls (streams) one connection may have open; more wait for a slot.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Largest header block a call may send.
pub const MAX_HEADER_BYTES: u32 = 16 * 1024;

/// The gRPC server of every node: HTTP/2 keepalive pings every 30 s (a peer that does not
/// answer within 10 s is dropped), at most [`MAX_STREAMS_PER_CONNECTION`] concurrent calls
/// per connection, header blocks of at most [`MAX_HEADER_BYTES`]. Message size limits are
/// set per service (`max_decoding_message_size`).
pub fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .http2_max_header_list_size(Some(MAX_HEADER_BYTES))
}

/// The health service every node serves.
pub const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";

/// Adds gRPC reflection to `router`, in both its versions: `grpc.reflection.v1` (grpcurl)
/// and `grpc.reflection.v1alpha` (Python's grpcio-reflection, Postman and other older
/// clients), so that tools work without the proto files. It advertises `services` (the
/// node's own, by full name), `grpc.health.v1.Health` and itself, and describes every
/// ordo type. A descriptor set that cannot be loaded leaves reflection out, with a warning.
pub fn with_reflection(
    mut router: tonic::transport::server::Router,
    services: &[&str],
) -> tonic::transport::server::Router {
    let configure = |reflection: &str| {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ordo_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE_NAME)
            .with_service_name(reflection);
        services
            .iter()
            .fold(builder, |b, name| b.with_service_name(*name))
    };
    match configure("grpc.reflection.v1.ServerReflection").build_v1() {
        Ok(v1) => router = router.add_service(v1),
        Err(e) => tracing::warn!(error = %e, "gRPC reflection (v1) unavailable"),
    }
    match configure("grpc.reflection.v1alpha.ServerReflection").build_v1alpha() {
        Ok(v1alpha) => router = router.add_service(v1alpha),
        Err(e) => tracing::warn!(error = %e, "gRPC reflection (v1alpha) unavailable"),
    }
    router
}

/// A node's `grpc.health.v1` status: the whole server ("") and its named services move
/// together.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<&'static str>,
}

impl Health {
    /// The reporter and the service to add to the server; everything starts NOT_SERVING.
    pub async fn new(
        services: Vec<&'static str>,
    ) -> (
        Self,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let health = Self { reporter, services };
        health.set(false).await;
        (health, service)
    }

    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for s in &self.services {
            self.reporter.set_service_status(*s, status).await;
        }
    }
}

/// Whether the node at `endpoint` (`http://host:port`, or `https://` verified as
/// [`crate::tls::trust`] says) reports `service` SERVING on `grpc.health.v1` (""
/// asks about the whole server). An unreachable node is not serving.
pub async fn serving(endpoint: &str, service: &str) -> bool {
    serving_with(endpoint, crate::tls::trusted().as_ref(), service).await
}

/// [`serving`], an `https://` endpoint verified with `tls` (which also names the caller).
pub async fn serving_with(
    endpoint: &str,
    tls: Option<&crate::tls::ClientTls>,
    service: &str,
) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    health(endpoint, tls, service)
        .await
        .is_some_and(|status| status == ServingStatus::Serving as i32)
}

/// What the node at `endpoint` answers to a `grpc.health.v1` check of `service`, whatever
/// it is (a passive replica answers NOT_SERVING); `None` when it does not answer at all
/// (unreachable, or the TLS handshake refused).
pub async fn health(
    endpoint: &str,
    tls: Option<&crate::tls::ClientTls>,
    service: &str,
) -> Option<i32> {
    use std::time::Duration;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = crate::tls::channel(endpoint, tls, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
    })
    .await
    .ok()?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.get_ref().status)
}
