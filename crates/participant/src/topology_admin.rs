//! Calls to the topology manager's admin service (`ordo.admin.v1.TopologyAdminService`)
//! for party allocation and package vetting, and waiting until a change is in effect here.

use std::time::Duration;

use ordo_core::Timestamp;
use ordo_proto::admin::v1 as admin;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::ParticipantError;
use crate::node::Shared;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn client(shared: &Shared) -> Result<TopologyAdminServiceClient<Channel>, ParticipantError> {
    let endpoint = &shared.config.topology_admin;
    if endpoint.is_empty() {
        return Err(ParticipantError::FailedPrecondition(
            "this participant has no topology_admin endpoint configured; parties and packages cannot be added through it".into(),
        ));
    }
    let channel = Endpoint::from_shared(endpoint.clone())
        .map_err(|e| {
            ParticipantError::FailedPrecondition(format!(
                "invalid topology_admin endpoint {endpoint}: {e}"
            ))
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(TIMEOUT)
        .connect()
        .await
        .map_err(|e| {
            ParticipantError::Unavailable(format!(
                "topology manager at {endpoint} unreachable: {e}"
            ))
        })?;
    Ok(TopologyAdminServiceClient::new(channel))
}

fn authorized<T>(shared: &Shared, message: T) -> Result<tonic::Request<T>, ParticipantError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {}", shared.config.topology_admin_token)
        .parse()
        .map_err(|_| {
            ParticipantError::FailedPrecondition("topology_admin_token is not valid ASCII".into())
        })?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// The topology manager's answer, passed on with its code (ALREADY_EXISTS, NOT_FOUND, …).
fn relay(status: tonic::Status) -> ParticipantError {
    let m = format!("topology manager: {}", status.message());
    match status.code() {
        tonic::Code::AlreadyExists => ParticipantError::AlreadyExists(m),
        tonic::Code::InvalidArgument => ParticipantError::InvalidArgument(m),
        tonic::Code::NotFound => ParticipantError::NotFound(m),
        tonic::Code::FailedPrecondition => ParticipantError::FailedPrecondition(m),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            ParticipantError::FailedPrecondition(format!(
                "{m} (check this participant's topology_admin_token)"
            ))
        }
        _ => ParticipantError::Unavailable(m),
    }
}

/// Allocates `party` on this shard; returns the sequencing timestamp it takes effect at.
pub async fn allocate_party(shared: &Shared, party: &str) -> Result<Timestamp, ParticipantError> {
    let mut c = client(shared).await?;
    let response = c
        .allocate_party(authorized(
            shared,
            admin::AllocatePartyRequest {
                party: party.to_owned(),
                shard: shared.config.shard.clone(),
            },
        )?)
        .await
        .map_err(relay)?
        .into_inner();
    Ok(Timestamp(response.effect.map_or(0, |e| e.timestamp)))
}

/// Vets a package; returns the sequencing timestamp it takes effect at.
pub async fn vet_package(
    shared: &Shared,
    package_id: &str,
    source: &str,
) -> Result<Timestamp, ParticipantError> {
    let mut c = client(shared).await?;
    let response = c
        .vet_package(authorized(
            shared,
            admin::VetPackageRequest {
                package_id: package_id.to_owned(),
                source: source.to_owned(),
            },
        )?)
        .await
        .map_err(relay)?
        .into_inner();
    Ok(Timestamp(response.effect.map_or(0, |e| e.timestamp)))
}

/// Waits until the processor's topology satisfies `applied`.
pub async fn wait_applied(
    shared: &Shared,
    what: &str,
    applied: impl Fn(&ordo_protocol::TopologyState) -> bool,
) -> Result<(), ParticipantError> {
    let mut processed = shared.processed.subscribe();
    let wait = async {
        loop {
            if applied(&shared.snapshot().topology) {
                return;
            }
            if processed.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, wait).await.map_err(|_| {
        ParticipantError::Unavailable(format!(
            "{what} was accepted by the topology manager but is not in effect on this participant after {TIMEOUT:?}; is it connected to the sequencer?"
        ))
    })?;
    if applied(&shared.snapshot().topology) {
        Ok(())
    } else {
        Err(ParticipantError::Unavailable(format!(
            "{what}: the participant is shutting down"
        )))
    }
}
