//! One term of this replica as the shard's active one (DESIGN §3): resume from the
//! database, run the processor and the outbox, serve the Ledger API, until the term ends.
//!
//! Everything a term needs is in the database, never only in memory: the cursor, topology,
//! the ends of the update and completion logs, in-flight commands (deduplication),
//! pending requests with their deadlines, and the outbox. The other replica may have
//! advanced all of it since this one last was active, so each session starts by reloading
//! the cached snapshot and ends; the processor then resumes the subscription after the
//! stored cursor and the outbox resends what is left in it.

use std::sync::Arc;

use ordo_lease::Term;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::ParticipantError;
use crate::node::Shared;
use crate::store;

/// The session of one term (see [`ordo_lease::Replica::run_terms`]). Returns when the
/// term's `stop` is cancelled, or early when a task fails (a refused fence means the term
/// is over). Dropping it mid-way (the lease was lost) stops everything at once.
pub async fn run(shared: Arc<Shared>, term: Term) {
    let stop = term.stop.child_token();
    let _serving = Serving {
        shared: &shared,
        stop: stop.clone(),
    };
    if let Err(e) = resume(&shared).await {
        tracing::warn!(error = %e, "resuming from the database failed");
        shared.replica.error(&e);
        return;
    }
    // Dropped with the session: the tasks are aborted wherever they are.
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::processor::run(shared.clone(), stop.clone()));
    tasks.spawn(crate::outbox::run(shared.clone(), stop.clone()));
    tasks.spawn(crate::pruning::run(shared.clone(), stop.clone()));
    shared.term.send_replace(Some(stop.clone()));
    term.ready().await;

    // Either task ending ends the session: on `stop` both end; after a failure the other
    // is stopped too and the session is retried while the term lasts.
    if let Some(ended) = tasks.join_next().await {
        let failure = match ended {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ParticipantError::Internal(format!(
                "a task of the active replica panicked: {e}"
            ))),
        };
        if let Some(e) = failure {
            tracing::warn!(token = term.token, error = %e, "the active replica's session failed");
            shared.replica.error(&e);
        }
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}
}

/// Reloads what the other replica may have advanced: the snapshot (cursor, topology,
/// packages), the ends of the update and completion logs and how far they were pruned.
async fn resume(shared: &Shared) -> Result<(), ParticipantError> {
    let mut conn = shared.pool.acquire().await?;
    let state = store::load_state(&mut conn).await?;
    // Counted once per term, not per batch: batches maintain it from their counts.
    crate::metrics::active_contracts_are(store::count_active_contracts(&mut conn).await?);
    drop(conn);
    tracing::info!(
        cursor = state.cursor.micros(),
        ledger_end = state.ledger_end,
        completion_end = state.completion_end,
        "resuming as the active replica"
    );
    shared.reload(state);
    shared.forget_pending_creates();
    Ok(())
}

/// While alive, the session may serve; dropped (the session returned or was dropped), the
/// Ledger API stops serving and every waiter on the term (SubmitAndWait, streams) answers
/// UNAVAILABLE.
struct Serving<'a> {
    shared: &'a Shared,
    stop: CancellationToken,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        // One session at a time: a session ends (or is dropped) before the next starts.
        self.stop.cancel();
        self.shared.term.send_replace(None);
    }
}
