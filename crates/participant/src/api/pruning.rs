//! ParticipantPruningService: an admin prunes this shard's logs (see [`crate::pruning`]).

use std::sync::Arc;
use std::time::Duration;

use ordo_proto::ledger::v1 as pb;

use super::ApiResult;
use crate::error::ParticipantError;
use crate::node::Shared;
use crate::pruning::{self, Target};

pub struct PruningApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::participant_pruning_service_server::ParticipantPruningService for PruningApi {
    async fn prune(
        &self,
        request: tonic::Request<pb::PruneRequest>,
    ) -> ApiResult<pb::PruneResponse> {
        self.0
            .authorize(request.metadata())
            .await?
            .require_admin()?;
        let req = request.into_inner();
        let target = match (req.prune_up_to, req.older_than_ms) {
            (0, ms) if ms > 0 => Target::OlderThan(Duration::from_millis(ms.unsigned_abs())),
            (offset, 0) => Target::Offset(offset),
            (offset, ms) => {
                return Err(ParticipantError::InvalidArgument(format!(
                    "give either prune_up_to ({offset}) or a positive older_than_ms ({ms}), not both"
                ))
                .into());
            }
        };
        let outcome = pruning::prune(&self.0, target, &req.submission_id).await?;
        Ok(tonic::Response::new(pb::PruneResponse {
            participant_pruned_up_to_inclusive: outcome.pruned.updates,
            completions_pruned_up_to_inclusive: outcome.pruned.completions,
            updates_deleted: outcome.updates_deleted as i64,
            completions_deleted: outcome.completions_deleted as i64,
            commands_deleted: outcome.commands_deleted as i64,
        }))
    }
}
