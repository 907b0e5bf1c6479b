//! TopologyAdminService: the gRPC adapter over the change pipeline, with the protobuf ⇄
//! domain conversions of the admin API.

use std::sync::Arc;

use hmac::Mac;
use ordo_proto::admin::v1 as pb;
use ordo_proto::admin::v1::topology_admin_service_server::TopologyAdminService;
use ordo_protocol::{DomainParameters, TopologyChange, TopologyState};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::TopologyError;
use crate::manager::{Manager, Outcome};
use crate::plan;

pub struct AdminApi(pub Arc<Manager>);

/// Who is calling: the operator with the admin token, or a participant known by its
/// client certificate.
enum Caller {
    Admin,
    Participant(String),
}

impl AdminApi {
    /// The check of the calls only the topology admin may make (registering members,
    /// changing the domain's parameters, reading the topology): the admin token, then
    /// whether this replica serves (a passive replica answers UNAVAILABLE naming the
    /// active one).
    async fn check<T>(&self, req: &Request<T>, what: &str) -> Result<(), TopologyError> {
        match self.caller(req)? {
            Caller::Admin => self.0.available().await,
            Caller::Participant(name) => Err(TopologyError::PermissionDenied(format!(
                "participant {name} may not {what}: that needs the topology admin token"
            ))),
        }
    }

    /// The check of the calls a participant may make for itself when the domain allows
    /// it (`participant_self_service`): the admin token, or the certificate of the
    /// participant of `shard` (`None`: any registered participant). Returns the shard of
    /// the calling participant, if it is one.
    async fn check_participant<T>(
        &self,
        req: &Request<T>,
        shard: Option<&str>,
        what: &str,
    ) -> Result<Option<String>, TopologyError> {
        let name = match self.caller(req)? {
            Caller::Admin => {
                self.0.available().await?;
                return Ok(None);
            }
            Caller::Participant(name) => name,
        };
        // A passive replica's view of the topology may lag: it answers UNAVAILABLE (naming
        // the active one) before looking the participant up.
        self.0.available().await?;
        let state = self.0.current();
        let own = state
            .shards
            .values()
            .find(|s| s.participant.name() == name)
            .map(|s| s.name.clone())
            .ok_or_else(|| {
                TopologyError::PermissionDenied(format!(
                    "{name} is not a registered participant: it may not {what}"
                ))
            })?;
        if let Some(shard) = shard.filter(|s| !s.is_empty() && *s != own) {
            return Err(TopologyError::PermissionDenied(format!(
                "participant {name} serves shard {own}: it may not {what} on shard {shard}"
            )));
        }
        Ok(Some(own))
    }

    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, TopologyError> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if let Some(header) = header {
            let token = header.strip_prefix("Bearer ").ok_or_else(|| {
                TopologyError::Unauthenticated(
                    "authorization must be `Bearer <admin token>`".into(),
                )
            })?;
            if !constant_time_eq(
                token.trim().as_bytes(),
                self.0.config.admin_token.as_bytes(),
            ) {
                return Err(TopologyError::Unauthenticated(
                    "wrong topology admin token".into(),
                ));
            }
            return Ok(Caller::Admin);
        }
        let peer = ordo_node::tls::conn_info(req).and_then(|c| c.peer.clone());
        let members: Vec<String> = peer
            .iter()
            .flat_map(|p| p.members().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        match members.as_slice() {
            [name] if self.0.config.participant_self_service => {
                Ok(Caller::Participant(name.clone()))
            }
            _ => Err(TopologyError::Unauthenticated(
                "topology admin calls need `authorization: Bearer <admin token>` (or, for \
                 AllocateParty, VetPackage and the user calls, a participant's client \
                 certificate)"
                    .into(),
            )),
        }
    }
}

/// Compares via HMAC tags so timing does not leak how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let tag = |x: &[u8]| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"ordo-topology-admin").ok()?;
        m.update(x);
        Some(m.finalize().into_bytes())
    };
    match (tag(a), tag(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn effect(o: &Outcome) -> Option<pb::ChangeEffect> {
    Some(pb::ChangeEffect {
        serial: o.serial,
        timestamp: o.timestamp.micros(),
        created: o.created,
    })
}

fn parameters_from_pb(p: Option<pb::DomainParameters>) -> Result<DomainParameters, TopologyError> {
    let p =
        p.ok_or_else(|| TopologyError::InvalidArgument("invalid parameters: missing".into()))?;
    let size = |field: &str, v: u64| {
        usize::try_from(v).map_err(|_| {
            TopologyError::InvalidArgument(format!("invalid parameters.{field}: {v} is too large"))
        })
    };
    let defaults = DomainParameters::default();
    let optional = |field: &str, v: Option<u64>, default: usize| match v {
        Some(v) => size(field, v),
        None => Ok(default),
    };
    Ok(DomainParameters {
        participant_response_timeout_us: p.participant_response_timeout_us,
        deduplication_period_us: p.deduplication_period_us,
        max_command_bytes: size("max_command_bytes", p.max_command_bytes)?,
        max_request_bytes: size("max_request_bytes", p.max_request_bytes)?,
        max_transaction_nodes: optional(
            "max_transaction_nodes",
            p.max_transaction_nodes,
            defaults.max_transaction_nodes,
        )?,
        max_interpretation_steps: p
            .max_interpretation_steps
            .unwrap_or(defaults.max_interpretation_steps),
        max_contract_bytes: optional(
            "max_contract_bytes",
            p.max_contract_bytes,
            defaults.max_contract_bytes,
        )?,
        max_exercise_depth: optional(
            "max_exercise_depth",
            p.max_exercise_depth,
            defaults.max_exercise_depth,
        )?,
    })
}

fn participant_of(state: &TopologyState, shard: &str) -> String {
    state
        .shards
        .get(shard)
        .map(|s| s.participant.to_string())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl TopologyAdminService for AdminApi {
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller_shard = self.check_participant(&req, None, "create a user").await?;
        let user = convert::user_from_pb(req.into_inner().user)?;
        let ((), outcome) = self
            .0
            .change(|state| {
                let decision = plan::create_user(state, user.clone())?;
                if let Some(shard) = &caller_shard {
                    let what = format!("create user {}", user.id);
                    let primary = user.primary_party.as_ref();
                    plan::participant_may_name(state, shard, &what, primary, &user.rights)?;
                }
                Ok(((), decision))
            })
            .await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(convert::user_to_pb(&user)),
            effect: effect(&outcome),
        }))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller_shard = self.check_participant(&req, None, "delete a user").await?;
        let id = req.into_inner().user_id;
        let ((), outcome) = self
            .0
            .change(|state| {
                let decision = plan::delete_user(state, &id)?;
                if let Some(shard) = &caller_shard {
                    plan::participant_may_delete(state, shard, &id)?;
                }
                Ok(((), decision))
            })
            .await?;
        Ok(Response::new(pb::DeleteUserResponse {
            effect: effect(&outcome),
        }))
    }

    async fn grant_user_rights(
        &self,
        req: Request<pb::GrantUserRightsRequest>,
    ) -> Result<Response<pb::GrantUserRightsResponse>, Status> {
        let caller_shard = self
            .check_participant(&req, None, "grant user rights")
            .await?;
        let r = req.into_inner();
        let rights = convert::rights_from_pb("rights", &r.rights)?;
        let (granted, outcome) = self
            .0
            .change(|state| {
                let (granted, decision) = plan::grant_user_rights(state, &r.user_id, &rights)?;
                if let Some(shard) = &caller_shard {
                    let what = format!("grant rights to user {}", r.user_id);
                    plan::participant_may_name(state, shard, &what, None, &rights)?;
                }
                Ok((granted, decision))
            })
            .await?;
        Ok(Response::new(pb::GrantUserRightsResponse {
            newly_granted_rights: convert::rights_to_pb(&granted),
            effect: effect(&outcome),
        }))
    }

    async fn revoke_user_rights(
        &self,
        req: Request<pb::RevokeUserRightsRequest>,
    ) -> Result<Response<pb::RevokeUserRightsResponse>, Status> {
        let caller_shard = self
            .check_participant(&req, None, "revoke user rights")
            .await?;
        let r = req.into_inner();
        let rights = convert::rights_from_pb("rights", &r.rights)?;
        let (revoked, outcome) = self
            .0
            .change(|state| {
                let (revoked, decision) = plan::revoke_user_rights(state, &r.user_id, &rights)?;
                if let Some(shard) = &caller_shard {
                    let what = format!("revoke rights of user {}", r.user_id);
                    plan::participant_may_name(state, shard, &what, None, &rights)?;
                }
                Ok((revoked, decision))
            })
            .await?;
        Ok(Response::new(pb::RevokeUserRightsResponse {
            newly_revoked_rights: convert::rights_to_pb(&revoked),
            effect: effect(&outcome),
        }))
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.check_participant(&req, None, "list the users").await?;
        let state = self.0.current();
        Ok(Response::new(pb::ListUsersResponse {
            users: state.users.values().map(convert::user_to_pb).collect(),
            serial: state.serial,
        }))
    }

    async fn register_participant(
        &self,
        req: Request<pb::RegisterParticipantRequest>,
    ) -> Result<Response<pb::RegisterParticipantResponse>, Status> {
        self.check(&req, "register a participant").await?;
        let r = req.into_inner();
        let (member, outcome) = self
            .0
            .change(|state| plan::register_participant(state, &r.name, &r.public_key, &r.shard))
            .await?;
        Ok(Response::new(pb::RegisterParticipantResponse {
            member: member.to_string(),
            effect: effect(&outcome),
        }))
    }

    async fn register_mediator(
        &self,
        req: Request<pb::RegisterMediatorRequest>,
    ) -> Result<Response<pb::RegisterMediatorResponse>, Status> {
        self.check(&req, "register a mediator").await?;
        let r = req.into_inner();
        let (member, outcome) = self
            .0
            .change(|state| plan::register_mediator(state, &r.name, &r.public_key))
            .await?;
        Ok(Response::new(pb::RegisterMediatorResponse {
            member: member.to_string(),
            effect: effect(&outcome),
        }))
    }

    async fn allocate_party(
        &self,
        req: Request<pb::AllocatePartyRequest>,
    ) -> Result<Response<pb::AllocatePartyResponse>, Status> {
        let caller_shard = self
            .check_participant(&req, Some(&req.get_ref().shard), "allocate a party")
            .await?;
        let mut r = req.into_inner();
        // A participant's party without a shard goes to its own.
        if let Some(own) = caller_shard
            && r.shard.is_empty()
        {
            r.shard = own;
        }
        let (shard, outcome) = self
            .0
            .change(|state| {
                let decision = plan::allocate_party(state, &r.party, &r.shard)?;
                let shard = match decision.change() {
                    TopologyChange::AllocateParty { shard, .. } => shard.clone(),
                    _ => String::new(),
                };
                Ok((shard, decision))
            })
            .await?;
        Ok(Response::new(pb::AllocatePartyResponse {
            party: r.party,
            participant: participant_of(&outcome.state, &shard),
            shard,
            effect: effect(&outcome),
        }))
    }

    async fn list_parties(
        &self,
        req: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        self.check(&req, "list the parties").await?;
        let filter = req.into_inner().shard;
        let state = self.0.current();
        if !filter.is_empty() && !state.shards.contains_key(&filter) {
            return Err(plan::unknown_shard(&state, &filter).into());
        }
        let parties = state
            .parties
            .iter()
            .filter(|(_, shard)| filter.is_empty() || **shard == filter)
            .map(|(party, shard)| pb::PartyInfo {
                party: party.to_string(),
                shard: shard.clone(),
                participant: participant_of(&state, shard),
            })
            .collect();
        Ok(Response::new(pb::ListPartiesResponse {
            parties,
            serial: state.serial,
        }))
    }

    async fn list_shards(
        &self,
        req: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        self.check(&req, "list the shards").await?;
        let state = self.0.current();
        let shards = state
            .shards
            .values()
            .map(|s| pb::ShardInfo {
                shard: s.name.clone(),
                participant: s.participant.to_string(),
                parties: state.parties.values().filter(|p| **p == s.name).count() as u64,
            })
            .collect();
        Ok(Response::new(pb::ListShardsResponse {
            shards,
            serial: state.serial,
        }))
    }

    async fn vet_package(
        &self,
        req: Request<pb::VetPackageRequest>,
    ) -> Result<Response<pb::VetPackageResponse>, Status> {
        self.check_participant(&req, None, "vet a package").await?;
        let r = req.into_inner();
        let max = self.0.config.max_package_bytes;
        let ((), outcome) = self
            .0
            .change(|state| Ok(((), plan::vet_package(state, &r.package_id, &r.source, max)?)))
            .await?;
        Ok(Response::new(pb::VetPackageResponse {
            package_id: r.package_id,
            effect: effect(&outcome),
        }))
    }

    async fn list_packages(
        &self,
        req: Request<pb::ListPackagesRequest>,
    ) -> Result<Response<pb::ListPackagesResponse>, Status> {
        self.check(&req, "list the packages").await?;
        let include_source = req.into_inner().include_source;
        let state = self.0.current();
        let packages = state
            .packages
            .iter()
            .map(|(id, source)| pb::PackageInfo {
                package_id: id.clone(),
                source_bytes: source.len() as u64,
                source: if include_source {
                    source.clone()
                } else {
                    String::new()
                },
            })
            .collect();
        Ok(Response::new(pb::ListPackagesResponse {
            packages,
            serial: state.serial,
        }))
    }

    async fn get_topology(
        &self,
        req: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::GetTopologyResponse>, Status> {
        self.check(&req, "read the topology").await?;
        let state = self.0.current();
        let state_json = serde_json::to_string(&*state)
            .map_err(|e| TopologyError::Internal(format!("encoding the topology: {e}")))?;
        Ok(Response::new(pb::GetTopologyResponse {
            state_json,
            serial: state.serial,
            timestamp: state.timestamp.micros(),
        }))
    }

    async fn set_parameters(
        &self,
        req: Request<pb::SetParametersRequest>,
    ) -> Result<Response<pb::SetParametersResponse>, Status> {
        self.check(&req, "change the domain parameters").await?;
        let parameters = parameters_from_pb(req.into_inner().parameters)?;
        let ((), outcome) = self
            .0
            .change(|state| Ok(((), plan::set_parameters(state, parameters)?)))
            .await?;
        Ok(Response::new(pb::SetParametersResponse {
            effect: effect(&outcome),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn parameters_need_every_field() {
        assert_eq!(
            parameters_from_pb(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let p = parameters_from_pb(Some(pb::DomainParameters {
            participant_response_timeout_us: 1,
            deduplication_period_us: 2,
            max_command_bytes: 3,
            max_request_bytes: 4,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(p.max_request_bytes, 4);
        // The transaction bounds are optional: unset, they keep their defaults.
        let defaults = DomainParameters::default();
        assert_eq!(p.max_transaction_nodes, defaults.max_transaction_nodes);
        assert_eq!(
            p.max_interpretation_steps,
            defaults.max_interpretation_steps
        );
        let p = parameters_from_pb(Some(pb::DomainParameters {
            participant_response_timeout_us: 1,
            deduplication_period_us: 2,
            max_command_bytes: 3,
            max_request_bytes: 4,
            max_transaction_nodes: Some(50),
            max_interpretation_steps: Some(7),
            max_contract_bytes: Some(8),
            max_exercise_depth: Some(2),
        }))
        .unwrap();
        assert_eq!(
            (
                p.max_transaction_nodes,
                p.max_interpretation_steps,
                p.max_contract_bytes,
                p.max_exercise_depth
            ),
            (50, 7, 8, 2)
        );
    }
}
