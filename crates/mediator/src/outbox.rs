//! Sends the outbox: signed messages written in the same transaction as the decision that
//! produced them. Each is sent with its deterministic message id until the sequencer
//! answers; a resend of something already sequenced is answered as a duplicate, so a crash
//! between the send and the delete repeats nothing — nor does a failover: the new active
//! replica resends what the old one left.
//!
//! The table stays off the path of a verdict: the runtime hands each batch's messages
//! over right after the commit that made them durable, and the ids the sequencer took
//! are deleted by a later commit ([`Sequenced::take`]). The table is read only when a
//! session starts (what the previous term left) and by a slow sweep (what failed).

use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Clock, Envelope, Recipients, Submission, SystemClock};
use ordo_lease::Replica;
use ordo_sequencer_client::{ClientError, SequencerClient};
use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::MediatorError;
use crate::metrics;
use crate::store::{self, OutboxGroup};

/// How long one send attempt may wait to be sequenced.
const SEND_WINDOW: Duration = Duration::from_secs(30);
/// The period of the sweep through the table, and the pause after a failed one.
const SWEEP: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);

/// Ids of outbox messages the sequencer has taken, waiting to be deleted by the next
/// commit (or by the sweep when no commit comes).
#[derive(Clone, Default)]
pub struct Sequenced(Arc<Mutex<Vec<String>>>);

impl Sequenced {
    /// The ids gathered so far, for a commit to delete. Should the commit fail, the rows
    /// stay and the sweep resends them (the sequencer answers a duplicate) and deletes them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }

    fn add(&self, id: String) {
        self.0.lock().push(id);
    }
}

/// Sends what the runtime hands over on `handed` and, at start and every [`SWEEP`], what
/// the table holds, until `stop` (the end of the session). Its deletes and updates are
/// fenced by `replica`'s lease.
pub async fn run(
    pool: PgPool,
    replica: Replica,
    client: SequencerClient,
    mut handed: mpsc::UnboundedReceiver<Vec<OutboxGroup>>,
    sequenced: Sequenced,
    stop: CancellationToken,
) {
    let mut sweep_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            batch = handed.recv() => {
                let Some(mut messages) = batch else { return };
                while let Ok(more) = handed.try_recv() {
                    messages.extend(more);
                }
                match send(&pool, &replica, &client, &messages, &sequenced).await {
                    Ok(true) => {}
                    Ok(false) => sweep_at = sweep_at.min(tokio::time::Instant::now() + RETRY),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: the sweep will retry");
                        sweep_at = sweep_at.min(tokio::time::Instant::now() + RETRY);
                    }
                }
            }
            () = tokio::time::sleep_until(sweep_at) => {
                let pause = match sweep(&pool, &replica, &client, &sequenced).await {
                    Ok(true) => SWEEP,
                    Ok(false) => RETRY,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: will retry");
                        RETRY
                    }
                };
                sweep_at = tokio::time::Instant::now() + pause;
            }
        }
    }
}

/// Deletes what was sequenced since the last commit, then sends every message the table
/// still holds; `Ok(true)` when none is left to retry.
async fn sweep(
    pool: &PgPool,
    replica: &Replica,
    client: &SequencerClient,
    sequenced: &Sequenced,
) -> Result<bool, MediatorError> {
    let taken = sequenced.take();
    if !taken.is_empty() {
        store::outbox_sequenced(pool, replica, &taken).await?;
    }
    let messages = store::outbox(pool).await?;
    if messages.is_empty() {
        return Ok(true);
    }
    let all_sent = send(pool, replica, client, &messages, sequenced).await?;
    let taken = sequenced.take();
    if !taken.is_empty() {
        store::outbox_sequenced(pool, replica, &taken).await?;
    }
    Ok(all_sent)
}

/// Sends `messages` (groups, a submission each) at once (they share the client's
/// batches); the sequenced ones are added to `sequenced`, failures recorded in the table;
/// `Ok(true)` when none is left to retry.
async fn send(
    pool: &PgPool,
    replica: &Replica,
    client: &SequencerClient,
    messages: &[OutboxGroup],
    sequenced: &Sequenced,
) -> Result<bool, MediatorError> {
    let mut all_sent = true;
    let results = futures::future::join_all(messages.iter().map(|m| send_one(client, m))).await;
    for (message, result) in messages.iter().zip(results) {
        match result {
            Ok(at) => {
                tracing::debug!(message_id = %message.message_id, at = %at.timestamp, duplicate = at.duplicate, "outbox message sequenced");
                sequenced.add(message.message_id.clone());
                metrics::outbox_sent();
            }
            Err(ClientError::Rejected(status)) => {
                tracing::error!(message_id = %message.message_id, %status, "the sequencer refused an outbox message; it stays in the outbox marked refused");
                store::outbox_failed(
                    pool,
                    replica,
                    &message.message_id,
                    &status.to_string(),
                    true,
                )
                .await?;
            }
            Err(e) => {
                tracing::warn!(message_id = %message.message_id, error = %e, "outbox send failed; will retry");
                store::outbox_failed(pool, replica, &message.message_id, &e.to_string(), false)
                    .await?;
                all_sent = false;
            }
        }
    }
    Ok(all_sent)
}

async fn send_one(
    client: &SequencerClient,
    group: &OutboxGroup,
) -> Result<ordo_core::Sequenced, ClientError> {
    client
        .send(Submission {
            message_id: group.message_id.clone(),
            max_sequencing_time: SystemClock.now().plus(SEND_WINDOW),
            envelopes: group
                .messages
                .iter()
                .map(|m| Envelope {
                    recipients: Recipients::members(m.recipients.iter().cloned()),
                    content: m.payload.clone(),
                })
                .collect(),
        })
        .await
}
