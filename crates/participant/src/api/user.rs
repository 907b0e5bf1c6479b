//! UserManagementService (Daml's): users are topology, so a user created through any shard
//! exists on every shard and its rights hold wherever its token is used. Changes go through
//! the topology manager and answer once in effect here; reads come from this
//! participant's topology. Admin tokens (or ParticipantAdmin users) may do everything; a
//! user may read its own user and rights.

use std::collections::BTreeSet;
use std::sync::Arc;

use ordo_core::PartyId;
use ordo_proto::admin::v1 as admin;
use ordo_proto::errors;
use ordo_proto::ledger::v1 as pb;
use ordo_protocol::topology::validate_user_id;
use ordo_protocol::{TopologyState, User, UserRight};

use super::ApiResult;
use crate::auth::Rights;
use crate::error::ParticipantError;
use crate::node::Shared;
use crate::topology_admin::{self, UserChange};

pub struct UserApi(pub Arc<Shared>);

fn invalid(m: String) -> ParticipantError {
    ParticipantError::InvalidArgument(m)
}

fn party(field: &str, name: &str) -> Result<PartyId, ParticipantError> {
    PartyId::new(name).map_err(|_| {
        invalid(format!(
            "invalid {field}: {name:?} is not a party id (use 1 to 64 of [A-Za-z0-9_-])"
        ))
    })
}

/// The rights of a request, each checked: exactly one kind set, parties well formed.
fn rights(field: &str, rights: &[pb::Right]) -> Result<BTreeSet<UserRight>, ParticipantError> {
    use pb::right::Kind;
    rights
        .iter()
        .enumerate()
        .map(|(i, r)| match &r.kind {
            Some(Kind::CanActAs(p)) => Ok(UserRight::CanActAs(party(
                &format!("{field}[{i}].can_act_as"),
                p,
            )?)),
            Some(Kind::CanReadAs(p)) => Ok(UserRight::CanReadAs(party(
                &format!("{field}[{i}].can_read_as"),
                p,
            )?)),
            Some(Kind::CanReadAsAnyParty(true)) => Ok(UserRight::CanReadAsAnyParty),
            Some(Kind::ParticipantAdmin(true)) => Ok(UserRight::ParticipantAdmin),
            _ => Err(invalid(format!(
                "invalid {field}[{i}]: set one of can_act_as, can_read_as, \
                 can_read_as_any_party, participant_admin"
            ))),
        })
        .collect()
}

fn right_pb(r: &UserRight) -> pb::Right {
    use pb::right::Kind;
    pb::Right {
        kind: Some(match r {
            UserRight::CanActAs(p) => Kind::CanActAs(p.to_string()),
            UserRight::CanReadAs(p) => Kind::CanReadAs(p.to_string()),
            UserRight::CanReadAsAnyParty => Kind::CanReadAsAnyParty(true),
            UserRight::ParticipantAdmin => Kind::ParticipantAdmin(true),
        }),
    }
}

fn right_admin(r: &UserRight) -> admin::UserRight {
    use admin::user_right::Kind;
    admin::UserRight {
        kind: Some(match r {
            UserRight::CanActAs(p) => Kind::CanActAs(p.to_string()),
            UserRight::CanReadAs(p) => Kind::CanReadAs(p.to_string()),
            UserRight::CanReadAsAnyParty => Kind::CanReadAsAnyParty(true),
            UserRight::ParticipantAdmin => Kind::ParticipantAdmin(true),
        }),
    }
}

fn user_pb(u: &User) -> pb::User {
    pb::User {
        id: u.id.clone(),
        primary_party: u
            .primary_party
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

fn user_id(id: &str) -> Result<String, ParticipantError> {
    validate_user_id(id).map_err(invalid)?;
    Ok(id.to_owned())
}

fn not_found(id: &str) -> ParticipantError {
    ParticipantError::Coded(errors::USER_NOT_FOUND, format!("user {id} does not exist"))
}

/// Every party the rights name must be allocated.
fn known_parties(
    topology: &TopologyState,
    rights: &BTreeSet<UserRight>,
) -> Result<(), ParticipantError> {
    for r in rights {
        if let UserRight::CanActAs(p) | UserRight::CanReadAs(p) = r
            && topology.shard_of(p).is_none()
        {
            return Err(ParticipantError::Coded(
                errors::PARTY_NOT_KNOWN_ON_LEDGER,
                format!("party {p} is not known"),
            ));
        }
    }
    Ok(())
}

impl UserApi {
    async fn rights(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Rights, tonic::Status> {
        self.0.authorize(metadata).await
    }

    /// The user a read names: the caller's own for an empty id (a user token), which any
    /// user may read; another needs admin.
    fn readable_user(&self, rights: &Rights, id: &str) -> Result<User, ParticipantError> {
        let id = match (id.is_empty(), &rights.user) {
            (true, Some(own)) => own.clone(),
            (true, None) => {
                return Err(invalid(
                    "invalid user_id: empty names the caller's user, but the token is no user token".into(),
                ));
            }
            (false, _) => user_id(id)?,
        };
        if rights.user.as_deref() != Some(id.as_str()) {
            rights.require_admin()?;
        }
        self.0
            .snapshot()
            .topology
            .users
            .get(&id)
            .cloned()
            .ok_or_else(|| not_found(&id))
    }

    /// Makes `change` and waits until its transaction is in effect here.
    async fn change(&self, what: &str, change: UserChange) -> Result<(), ParticipantError> {
        let serial = topology_admin::user_change(&self.0, change).await?;
        if serial > 0 {
            topology_admin::wait_applied(&self.0, what, |t| t.serial >= serial).await?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::user_management_service_server::UserManagementService for UserApi {
    async fn create_user(
        &self,
        request: tonic::Request<pb::CreateUserRequest>,
    ) -> ApiResult<pb::CreateUserResponse> {
        self.rights(request.metadata()).await?.require_admin()?;
        let req = request.into_inner();
        let user = req.user.ok_or_else(|| invalid("missing user".into()))?;
        let id = user_id(&user.id)?;
        let primary_party = match user.primary_party.as_str() {
            "" => None,
            p => Some(party("user.primary_party", p)?),
        };
        let rights = rights("rights", &req.rights)?;
        let topology = self.0.snapshot().topology.clone();
        if topology.users.contains_key(&id) {
            return Err(ParticipantError::Coded(
                errors::USER_ALREADY_EXISTS,
                format!("user {id} already exists"),
            )
            .into());
        }
        known_parties(&topology, &rights)?;
        if let Some(p) = primary_party
            .as_ref()
            .filter(|p| topology.shard_of(p).is_none())
        {
            return Err(ParticipantError::Coded(
                errors::PARTY_NOT_KNOWN_ON_LEDGER,
                format!("party {p} is not known"),
            )
            .into());
        }
        let created = User {
            id: id.clone(),
            primary_party,
            rights,
        };
        let change = UserChange::Create(admin::CreateUserRequest {
            user: Some(admin::User {
                id: id.clone(),
                primary_party: user.primary_party.clone(),
                rights: created.rights.iter().map(right_admin).collect(),
            }),
        });
        self.change(&format!("user {id}"), change).await?;
        Ok(tonic::Response::new(pb::CreateUserResponse {
            user: Some(user_pb(&created)),
        }))
    }

    async fn get_user(
        &self,
        request: tonic::Request<pb::GetUserRequest>,
    ) -> ApiResult<pb::GetUserResponse> {
        let rights = self.rights(request.metadata()).await?;
        let user = self.readable_user(&rights, &request.get_ref().user_id)?;
        Ok(tonic::Response::new(pb::GetUserResponse {
            user: Some(user_pb(&user)),
        }))
    }

    async fn delete_user(
        &self,
        request: tonic::Request<pb::DeleteUserRequest>,
    ) -> ApiResult<pb::DeleteUserResponse> {
        self.rights(request.metadata()).await?.require_admin()?;
        let id = user_id(&request.get_ref().user_id)?;
        if !self.0.snapshot().topology.users.contains_key(&id) {
            return Err(not_found(&id).into());
        }
        let change = UserChange::Delete(admin::DeleteUserRequest {
            user_id: id.clone(),
        });
        self.change(&format!("the deletion of user {id}"), change)
            .await?;
        Ok(tonic::Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: tonic::Request<pb::ListUsersRequest>,
    ) -> ApiResult<pb::ListUsersResponse> {
        self.rights(request.metadata()).await?.require_admin()?;
        let users = self
            .0
            .snapshot()
            .topology
            .users
            .values()
            .map(user_pb)
            .collect();
        Ok(tonic::Response::new(pb::ListUsersResponse { users }))
    }

    async fn grant_user_rights(
        &self,
        request: tonic::Request<pb::GrantUserRightsRequest>,
    ) -> ApiResult<pb::GrantUserRightsResponse> {
        self.rights(request.metadata()).await?.require_admin()?;
        let req = request.into_inner();
        let id = user_id(&req.user_id)?;
        let wanted = rights("rights", &req.rights)?;
        let topology = self.0.snapshot().topology.clone();
        let user = topology.users.get(&id).ok_or_else(|| not_found(&id))?;
        known_parties(&topology, &wanted)?;
        let new: Vec<UserRight> = wanted.difference(&user.rights).cloned().collect();
        if !new.is_empty() {
            let change = UserChange::Grant(admin::GrantUserRightsRequest {
                user_id: id.clone(),
                rights: new.iter().map(right_admin).collect(),
            });
            self.change(&format!("rights of user {id}"), change).await?;
        }
        Ok(tonic::Response::new(pb::GrantUserRightsResponse {
            newly_granted_rights: new.iter().map(right_pb).collect(),
        }))
    }

    async fn revoke_user_rights(
        &self,
        request: tonic::Request<pb::RevokeUserRightsRequest>,
    ) -> ApiResult<pb::RevokeUserRightsResponse> {
        self.rights(request.metadata()).await?.require_admin()?;
        let req = request.into_inner();
        let id = user_id(&req.user_id)?;
        let unwanted = rights("rights", &req.rights)?;
        let topology = self.0.snapshot().topology.clone();
        let user = topology.users.get(&id).ok_or_else(|| not_found(&id))?;
        let gone: Vec<UserRight> = unwanted.intersection(&user.rights).cloned().collect();
        if !gone.is_empty() {
            let change = UserChange::Revoke(admin::RevokeUserRightsRequest {
                user_id: id.clone(),
                rights: gone.iter().map(right_admin).collect(),
            });
            self.change(&format!("rights of user {id}"), change).await?;
        }
        Ok(tonic::Response::new(pb::RevokeUserRightsResponse {
            newly_revoked_rights: gone.iter().map(right_pb).collect(),
        }))
    }

    async fn list_user_rights(
        &self,
        request: tonic::Request<pb::ListUserRightsRequest>,
    ) -> ApiResult<pb::ListUserRightsResponse> {
        let rights = self.rights(request.metadata()).await?;
        let user = self.readable_user(&rights, &request.get_ref().user_id)?;
        Ok(tonic::Response::new(pb::ListUserRightsResponse {
            rights: user.rights.iter().map(right_pb).collect(),
        }))
    }
}
