//! Pruning's reads and deletions: how far the logs were pruned, the offset a time
//! corresponds to, and the deletions in bounded batches (each its own fenced transaction,
//! so that pruning millions of rows never holds locks or a snapshot for long).

use sqlx::{PgConnection, PgPool, Row};

use super::from_json;
use crate::error::ParticipantError;
use crate::events::StoredTx;

/// Rows deleted per transaction.
pub const BATCH: i64 = 5_000;

/// How far the update log (by ledger offset) and the completion log (by completion
/// offset) were pruned, inclusive; 0: nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub updates: i64,
    pub completions: i64,
}

pub async fn pruned(pool: &PgPool) -> Result<Pruned, ParticipantError> {
    let (updates, completions) =
        sqlx::query_as("SELECT pruned_up_to, completions_pruned_up_to FROM p_state WHERE id = 1")
            .fetch_one(pool)
            .await?;
    Ok(Pruned {
        updates,
        completions,
    })
}

/// Raises the pruned offsets (never lowers them); written, and committed, before any row
/// goes, so that a reader that finds rows missing also finds why.
pub async fn mark(conn: &mut PgConnection, to: Pruned) -> Result<Pruned, ParticipantError> {
    let (updates, completions) = sqlx::query_as(
        "UPDATE p_state SET pruned_up_to = GREATEST(pruned_up_to, $1),
                            completions_pruned_up_to = GREATEST(completions_pruned_up_to, $2)
         WHERE id = 1
         RETURNING pruned_up_to, completions_pruned_up_to",
    )
    .bind(to.updates)
    .bind(to.completions)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Pruned {
        updates,
        completions,
    })
}

/// The completion offset that goes with pruning the updates up to `up_to`: the last
/// completion whose transaction is at or before it (completion and update offsets are
/// taken in the same order, so every completion before it was written before that
/// update). 0 when there is none.
pub async fn completions_up_to(pool: &PgPool, up_to: i64) -> Result<i64, ParticipantError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT completion_offset FROM p_completions
         WHERE ledger_offset BETWEEN 1 AND $1
         ORDER BY completion_offset DESC LIMIT 1",
    )
    .bind(up_to)
    .fetch_optional(pool)
    .await?;
    Ok(found.unwrap_or(0))
}

/// The last offset in `(after, end]` whose transaction's ledger effective time is before
/// `cutoff` (µs), or `after` if none: a binary search over the update log, whose effective
/// times follow its offsets (up to the domain's ledger time skew).
pub async fn offset_before(
    pool: &PgPool,
    after: i64,
    end: i64,
    cutoff: i64,
) -> Result<i64, ParticipantError> {
    let (mut lo, mut hi) = (after, end);
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        // The first stored update at or after `mid` (offsets are gapless past the pruned
        // offset; the search begins there).
        let row = sqlx::query(
            "SELECT ledger_offset, tx FROM p_updates WHERE ledger_offset >= $1
             ORDER BY ledger_offset LIMIT 1",
        )
        .bind(mid)
        .fetch_optional(pool)
        .await?;
        let older = match row {
            Some(row) => {
                let tx: StoredTx = from_json(&row.try_get::<Vec<u8>, _>("tx")?, "update")?;
                tx.effective_at < cutoff
            }
            None => false,
        };
        if older {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// Rows pruning deletes.
#[derive(Clone, Copy, Debug)]
pub enum Rows {
    /// Updates at or before this offset.
    Updates(i64),
    /// Completions at or before this completion offset.
    Completions(i64),
    /// Commands that completed before `cutoff` (sequencer µs) with a completion at or
    /// before `completions`.
    Commands { cutoff: i64, completions: i64 },
}

/// Deletes up to [`BATCH`] of `rows`: how many.
pub async fn delete(conn: &mut PgConnection, rows: Rows) -> Result<u64, ParticipantError> {
    match rows {
        Rows::Updates(up_to) => delete_log(conn, "p_updates", "ledger_offset", up_to).await,
        Rows::Completions(up_to) => {
            delete_log(conn, "p_completions", "completion_offset", up_to).await
        }
        Rows::Commands {
            cutoff,
            completions,
        } => delete_commands(conn, cutoff, completions).await,
    }
}

/// Deletes up to [`BATCH`] rows of a log (`table`, keyed by the offset `column`) at or
/// before `up_to`.
async fn delete_log(
    conn: &mut PgConnection,
    table: &'static str,
    column: &'static str,
    up_to: i64,
) -> Result<u64, ParticipantError> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {column} IN (
             SELECT {column} FROM {table} WHERE {column} <= $1 ORDER BY {column} LIMIT $2)"
    )))
    .bind(up_to)
    .bind(BATCH)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Commands past the deduplication period decide nothing; in-flight commands stay.
async fn delete_commands(
    conn: &mut PgConnection,
    cutoff: i64,
    completions: i64,
) -> Result<u64, ParticipantError> {
    Ok(sqlx::query(
        "DELETE FROM p_commands WHERE ctid IN (
             SELECT ctid FROM p_commands
             WHERE state <> 'in_flight' AND completed_at < $1 AND completion_offset <= $2
             LIMIT $3)",
    )
    .bind(cutoff)
    .bind(completions)
    .bind(BATCH)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
