//! Pruning decided requests: the active replica deletes the verdicts of requests older
//! than `verdict_retention`, every `prune_interval`, a batch per fenced transaction.
//! Nothing reads a verdict back once decided (a late response to a decided request finds
//! no pending request and is dropped either way), so they are a record, kept for as long
//! as the operator wants to look into past decisions.

use std::time::Duration;

use ordo_core::Timestamp;
use ordo_lease::Replica;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::MediatorError;
use crate::store::fenced_commit;

/// Verdicts deleted per transaction.
const BATCH: i64 = 5_000;

/// Prunes every `interval` until `stop`; a failure is logged and tried again at the next
/// interval. Returns at once when `retention` is zero (verdicts kept forever).
pub async fn run(
    pool: PgPool,
    replica: Replica,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    if retention.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let cutoff = Timestamp::from_system_time(std::time::SystemTime::now())
            .micros()
            .saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX));
        match prune(&pool, &replica, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(verdicts = n, cutoff, "pruned decided requests"),
            Err(e) => {
                tracing::warn!(error = %e, "pruning decided requests failed; trying again later")
            }
        }
    }
}

/// Deletes the verdicts of requests sequenced before `cutoff` (sequencer µs): how many.
pub async fn prune(pool: &PgPool, replica: &Replica, cutoff: i64) -> Result<u64, MediatorError> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let n = sqlx::query(
            // By the request's own sequencing time (the primary key), which precedes its
            // decision by at most the decision timeout.
            "DELETE FROM verdicts WHERE request_id IN (
                 SELECT request_id FROM verdicts WHERE request_id < $1
                 ORDER BY request_id LIMIT $2)",
        )
        .bind(cutoff)
        .bind(BATCH)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        fenced_commit(tx, replica).await?;
        total += n;
        metrics::counter!("ordo_mediator_pruned_verdicts_total").increment(n);
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}
