//! gRPC plumbing shared by the nodes.

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// gRPC reflection over every ordo service (`grpcurl` works without proto files), or
/// `None` with a warning if the descriptor set cannot be loaded.
pub fn reflection() -> Option<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    match tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ordo_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
    {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "gRPC reflection unavailable");
            None
        }
    }
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
    use std::time::Duration;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let tls = crate::tls::trusted();
    let Ok(channel) = crate::tls::channel(endpoint, tls.as_ref(), |e| {
        e.connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
    })
    .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
}
