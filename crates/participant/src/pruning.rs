//! Pruning (Daml's `ParticipantPruningService`): the update log up to an offset, the
//! completions written up to it and the deduplication entries past the domain's
//! deduplication period go; active contracts, pending requests and in-flight commands
//! stay. Called by an admin (`Prune`, `ordo admin prune`) or, with a `[pruning]
//! retention`, by the active replica itself every `interval`.
//!
//! The pruned offsets are committed first and published to the readers (`Shared::pruned`)
//! before a row is deleted: a stream that reads across a deletion finds the offset it
//! needed pruned and fails PARTICIPANT_PRUNED_DATA_ACCESSED instead of skipping updates.

use std::sync::Arc;
use std::time::Duration;

use ordo_core::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::error::ParticipantError;
use crate::node::Shared;
use crate::store::{
    self,
    prune::{Pruned, Rows},
};

/// What to prune up to.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// This offset, inclusive.
    Offset(i64),
    /// The updates whose ledger effective time is older than this.
    OlderThan(Duration),
}

/// What a pruning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The shard's pruned offsets afterwards.
    pub pruned: Pruned,
    pub updates_deleted: u64,
    pub completions_deleted: u64,
    pub commands_deleted: u64,
}

/// Prunes up to `target` on the serving replica; one pruning at a time. An offset beyond
/// the ledger end is INVALID_ARGUMENT; one at or below the pruned offset removes only
/// what an interrupted pruning left.
pub async fn prune(
    shared: &Shared,
    target: Target,
    submission_id: &str,
) -> Result<Outcome, ParticipantError> {
    let _one = shared.pruning.lock().await;
    shared.require_serving().await?;
    let ledger_end = *shared.ledger_end.borrow();
    let before = *shared.pruned.borrow();
    let up_to = match target {
        Target::Offset(o) if o <= 0 => {
            return Err(ParticipantError::InvalidArgument(format!(
                "invalid prune_up_to {o}: give an offset from 1 to the ledger end {ledger_end}"
            )));
        }
        Target::Offset(o) if o > ledger_end => {
            return Err(ParticipantError::InvalidArgument(format!(
                "prune_up_to {o} is beyond the ledger end {ledger_end} of {}",
                shared.config.shard
            )));
        }
        Target::Offset(o) => o,
        Target::OlderThan(age) => {
            let cutoff = Timestamp::from_system_time(std::time::SystemTime::now())
                .micros()
                .saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX));
            store::prune::offset_before(&shared.pool, before.updates, ledger_end, cutoff).await?
        }
    };
    let wanted = Pruned {
        updates: up_to,
        completions: store::prune::completions_up_to(&shared.pool, up_to).await?,
    };
    let mut tx = shared.pool.begin().await?;
    let pruned = store::prune::mark(&mut tx, wanted).await?;
    shared.commit(tx).await?;
    shared.pruned.send_replace(pruned);
    metrics::gauge!("ordo_participant_pruned_offset").set(pruned.updates as f64);

    let dedup_cutoff = Timestamp::from_system_time(std::time::SystemTime::now())
        .micros()
        .saturating_sub(
            shared
                .snapshot()
                .topology
                .parameters
                .deduplication_period_us,
        );
    let mut outcome = Outcome {
        pruned,
        ..Outcome::default()
    };
    outcome.updates_deleted = in_batches(shared, Rows::Updates(pruned.updates)).await?;
    outcome.completions_deleted = in_batches(shared, Rows::Completions(pruned.completions)).await?;
    outcome.commands_deleted = in_batches(
        shared,
        Rows::Commands {
            cutoff: dedup_cutoff,
            completions: pruned.completions,
        },
    )
    .await?;
    for (log, n) in [
        ("updates", outcome.updates_deleted),
        ("completions", outcome.completions_deleted),
        ("commands", outcome.commands_deleted),
    ] {
        metrics::counter!("ordo_participant_pruned_rows_total", "log" => log).increment(n);
    }
    tracing::info!(
        submission_id,
        up_to = pruned.updates,
        completions_up_to = pruned.completions,
        updates = outcome.updates_deleted,
        completions = outcome.completions_deleted,
        commands = outcome.commands_deleted,
        "pruned"
    );
    Ok(outcome)
}

/// Deletes `rows` a batch per fenced transaction: how many.
async fn in_batches(shared: &Shared, rows: Rows) -> Result<u64, ParticipantError> {
    let mut total = 0;
    loop {
        let mut tx = shared.pool.begin().await?;
        let n = store::prune::delete(&mut tx, rows).await?;
        shared.commit(tx).await?;
        total += n;
        if n < store::prune::BATCH as u64 {
            return Ok(total);
        }
    }
}

/// The active replica's automatic pruning (`[pruning] retention`): every `interval`,
/// the updates older than the retention go. A failed pruning is logged and tried again
/// at the next interval; it never ends the term.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) -> Result<(), ParticipantError> {
    let config = shared.config.pruning.clone();
    if config.retention.is_zero() {
        stop.cancelled().await;
        return Ok(());
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(config.interval) => {}
        }
        match prune(&shared, Target::OlderThan(config.retention), "retention").await {
            Ok(_) => {}
            Err(e @ ParticipantError::Fenced(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "automatic pruning failed; trying again later"),
        }
    }
}
