//! Pruning a shard's logs (`ParticipantPruningService`, admin token) and reading how far
//! they were pruned (`StateService.GetLatestPrunedOffsets`).

use std::time::Duration;

use ordo_proto::ledger::v1 as pb;
use serde::Serialize;

use crate::client::LedgerClient;
use crate::error::LedgerError;

/// What to prune up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneTarget {
    /// This update offset, inclusive.
    Offset(i64),
    /// The updates whose ledger effective time is older than this.
    OlderThan(Duration),
}

/// How far a shard pruned its logs, inclusive (0: nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrunedOffsets {
    /// Update offsets at or before this are pruned.
    pub updates: i64,
    /// Completion offsets at or before this are pruned.
    pub completions: i64,
}

/// What one pruning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    /// The shard's pruned offsets afterwards.
    pub pruned: PrunedOffsets,
    pub updates_deleted: i64,
    pub completions_deleted: i64,
    pub commands_deleted: i64,
}

impl LedgerClient {
    /// Prunes this shard's update log up to `target` and what goes with it (admin token).
    pub async fn prune(
        &self,
        target: PruneTarget,
        submission_id: &str,
    ) -> Result<PruneOutcome, LedgerError> {
        let (prune_up_to, older_than_ms) = match target {
            PruneTarget::Offset(o) => (o, 0),
            PruneTarget::OlderThan(d) => (0, i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let r = pb::participant_pruning_service_client::ParticipantPruningServiceClient::new(
            self.authed(),
        )
        .prune(pb::PruneRequest {
            prune_up_to,
            submission_id: submission_id.to_owned(),
            older_than_ms,
        })
        .await?
        .into_inner();
        Ok(PruneOutcome {
            pruned: PrunedOffsets {
                updates: r.participant_pruned_up_to_inclusive,
                completions: r.completions_pruned_up_to_inclusive,
            },
            updates_deleted: r.updates_deleted,
            completions_deleted: r.completions_deleted,
            commands_deleted: r.commands_deleted,
        })
    }

    /// How far this shard pruned its logs.
    pub async fn latest_pruned_offsets(&self) -> Result<PrunedOffsets, LedgerError> {
        let r = pb::state_service_client::StateServiceClient::new(self.authed())
            .get_latest_pruned_offsets(pb::GetLatestPrunedOffsetsRequest {})
            .await?
            .into_inner();
        Ok(PrunedOffsets {
            updates: r.participant_pruned_up_to_inclusive,
            completions: r.completions_pruned_up_to_inclusive,
        })
    }
}
