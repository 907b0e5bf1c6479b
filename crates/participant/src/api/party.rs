//! PartyManagementService: parties are topology; allocation goes through the topology
//! manager onto this shard (admin tokens only).

use std::sync::Arc;

use ordo_core::PartyId;
use ordo_proto::ledger::v1 as pb;

use super::ApiResult;
use crate::error::ParticipantError;
use crate::node::Shared;
use crate::topology_admin;

pub struct PartyApi(pub Arc<Shared>);

impl PartyApi {
    fn details(&self, party: &PartyId, shard: &str) -> pb::PartyDetails {
        pb::PartyDetails {
            party: party.to_string(),
            shard: shard.to_owned(),
            is_local: shard == self.0.config.shard,
        }
    }
}

#[tonic::async_trait]
impl pb::party_management_service_server::PartyManagementService for PartyApi {
    async fn allocate_party(
        &self,
        request: tonic::Request<pb::AllocatePartyRequest>,
    ) -> ApiResult<pb::AllocatePartyResponse> {
        self.0
            .authorize(request.metadata())
            .await?
            .require_admin()?;
        let hint = &request.get_ref().party_id_hint;
        let party = PartyId::new(hint).map_err(|_| {
            ParticipantError::InvalidArgument(format!(
                "invalid party_id_hint {hint:?}: use 1 to 64 of [A-Za-z0-9_-]"
            ))
        })?;
        if let Some(shard) = self.0.snapshot().topology.shard_of(&party) {
            return Err(ParticipantError::AlreadyExists(format!(
                "party {party} already exists (on shard {shard})"
            ))
            .into());
        }
        topology_admin::allocate_party(&self.0, party.as_str()).await?;
        let shard = self.0.config.shard.clone();
        topology_admin::wait_applied(&self.0, &format!("party {party}"), |t| {
            t.shard_of(&party) == Some(shard.as_str())
        })
        .await?;
        Ok(tonic::Response::new(pb::AllocatePartyResponse {
            party_details: Some(self.details(&party, &shard)),
        }))
    }

    async fn list_known_parties(
        &self,
        request: tonic::Request<pb::ListKnownPartiesRequest>,
    ) -> ApiResult<pb::ListKnownPartiesResponse> {
        self.0
            .authorize(request.metadata())
            .await?
            .require_admin()?;
        let snapshot = self.0.snapshot();
        let party_details = snapshot
            .topology
            .parties
            .iter()
            .map(|(p, shard)| self.details(p, shard))
            .collect();
        Ok(tonic::Response::new(pb::ListKnownPartiesResponse {
            party_details,
        }))
    }

    async fn get_participant_id(
        &self,
        request: tonic::Request<pb::GetParticipantIdRequest>,
    ) -> ApiResult<pb::GetParticipantIdResponse> {
        self.0.authorize(request.metadata()).await?;
        Ok(tonic::Response::new(pb::GetParticipantIdResponse {
            participant_id: self.0.member.to_string(),
            shard: self.0.config.shard.clone(),
        }))
    }
}
