//! Calls to the topology manager's admin service (`ordo.admin.v1.TopologyAdminService`)
//! for party allocation and package vetting, and waiting until a change is in effect here.

use std::future::Future;
use std::time::Duration;

use ordo_core::Timestamp;
use ordo_node::tls::ClientTls;
use ordo_proto::admin::v1 as admin;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use tonic::transport::Channel;

use crate::error::ParticipantError;
use crate::node::Shared;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn connect(
    endpoint: &str,
    tls: Option<&ClientTls>,
) -> Result<TopologyAdminServiceClient<Channel>, String> {
    let channel = ordo_node::tls::channel(endpoint, tls, |e| {
        e.connect_timeout(Duration::from_secs(5)).timeout(TIMEOUT)
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(TopologyAdminServiceClient::new(channel))
}

/// Makes an admin call on the first topology manager replica that takes it: endpoints
/// that are unreachable or answer UNAVAILABLE (a passive replica does) are skipped. Any
/// other answer is final.
async fn call<T, F, Fut>(shared: &Shared, call: F) -> Result<T, ParticipantError>
where
    F: Fn(TopologyAdminServiceClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let endpoints = &shared.config.topology_admin;
    if endpoints.is_empty() {
        return Err(ParticipantError::FailedPrecondition(
            "this participant has no topology_admin endpoint configured; parties and packages cannot be added through it".into(),
        ));
    }
    let mut skipped = Vec::new();
    for endpoint in endpoints {
        let client = match connect(endpoint, shared.tls.as_ref()).await {
            Ok(c) => c,
            Err(reason) => {
                skipped.push(format!("{endpoint}: {reason}"));
                continue;
            }
        };
        match call(client).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                skipped.push(format!("{endpoint}: {}", status.message()));
            }
            Err(status) => return Err(relay(status)),
        }
    }
    Err(ParticipantError::Unavailable(format!(
        "no topology manager replica took the call: {}",
        skipped.join("; ")
    )))
}

type Bearer = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// The `authorization` value of the admin calls, if the participant has the admin token.
/// Without one it calls as itself: its client certificate names it, and the topology
/// manager lets a participant allocate parties on its own shard and vet packages
/// (`participant_self_service`).
fn bearer(shared: &Shared) -> Result<Option<Bearer>, ParticipantError> {
    let token = &shared.config.topology_admin_token;
    if token.is_empty() {
        return Ok(None);
    }
    format!("Bearer {token}").parse().map(Some).map_err(|_| {
        ParticipantError::FailedPrecondition("topology_admin_token is not valid ASCII".into())
    })
}

fn authorized<T>(bearer: &Option<Bearer>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
    }
    request
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
                "{m} (check this participant's topology_admin_token, or its certificate)"
            ))
        }
        _ => ParticipantError::Unavailable(m),
    }
}

/// Allocates `party` on this shard; returns the sequencing timestamp it takes effect at.
pub async fn allocate_party(shared: &Shared, party: &str) -> Result<Timestamp, ParticipantError> {
    let bearer = bearer(shared)?;
    let response = call(shared, |mut c| {
        let request = authorized(
            &bearer,
            admin::AllocatePartyRequest {
                party: party.to_owned(),
                shard: shared.config.shard.clone(),
            },
        );
        async move { c.allocate_party(request).await }
    })
    .await?;
    Ok(Timestamp(response.effect.map_or(0, |e| e.timestamp)))
}

/// Vets a package; returns the sequencing timestamp it takes effect at.
pub async fn vet_package(
    shared: &Shared,
    package_id: &str,
    source: &str,
) -> Result<Timestamp, ParticipantError> {
    let bearer = bearer(shared)?;
    let response = call(shared, |mut c| {
        let request = authorized(
            &bearer,
            admin::VetPackageRequest {
                package_id: package_id.to_owned(),
                source: source.to_owned(),
            },
        );
        async move { c.vet_package(request).await }
    })
    .await?;
    Ok(Timestamp(response.effect.map_or(0, |e| e.timestamp)))
}

/// A user management call to make on the topology manager.
#[derive(Clone, Debug)]
pub enum UserChange {
    Create(admin::CreateUserRequest),
    Delete(admin::DeleteUserRequest),
    Grant(admin::GrantUserRightsRequest),
    Revoke(admin::RevokeUserRightsRequest),
}

/// A change to users (Daml's user management) on the topology manager; returns the
/// serial of the topology transaction that made it (0: nothing changed).
pub async fn user_change(shared: &Shared, change: UserChange) -> Result<u64, ParticipantError> {
    let bearer = bearer(shared)?;
    let effect = call(shared, |mut c| {
        let change = change.clone();
        let bearer = bearer.clone();
        async move {
            use UserChange as U;
            Ok(tonic::Response::new(match change {
                U::Create(r) => {
                    c.create_user(authorized(&bearer, r))
                        .await?
                        .into_inner()
                        .effect
                }
                U::Delete(r) => {
                    c.delete_user(authorized(&bearer, r))
                        .await?
                        .into_inner()
                        .effect
                }
                U::Grant(r) => {
                    c.grant_user_rights(authorized(&bearer, r))
                        .await?
                        .into_inner()
                        .effect
                }
                U::Revoke(r) => {
                    c.revoke_user_rights(authorized(&bearer, r))
                        .await?
                        .into_inner()
                        .effect
                }
            }))
        }
    })
    .await?;
    Ok(effect.map_or(0, |e| e.serial))
}

/// Waits until the processor's topology satisfies `applied`.
pub async fn wait_applied(
    shared: &Shared,
    what: &str,
    applied: impl Fn(&ordo_protocol::TopologyState) -> bool,
) -> Result<(), ParticipantError> {
    let term = shared.require_serving().await?;
    let mut processed = shared.processed.subscribe();
    let wait = async {
        loop {
            if applied(&shared.snapshot().topology) {
                return;
            }
            tokio::select! {
                changed = processed.changed() => if changed.is_err() { return },
                () = term.cancelled() => return,
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
        Err(shared.term_ended(&format!(
            "{what} was accepted by the topology manager; the active replica applies it"
        )))
    }
}
