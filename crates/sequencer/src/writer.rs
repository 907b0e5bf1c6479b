//! The node's one writer task: group commit. It takes the first queued send, drains what
//! else is already queued (up to `max_batch`) and sequences them in one transaction
//! (`store::commit_batch`), then answers each waiting call.

use std::sync::Arc;
use std::time::Instant;

use ordo_core::{Sequenced, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::error::SequencerError;
use crate::order::Decision;
use crate::store::{self, NewEvent};
use crate::tail::Tail;

type Reply = oneshot::Sender<Result<Sequenced, SequencerError>>;

struct WriteRequest {
    event: NewEvent,
    reply: Reply,
}

/// Queues sends for the writer task. Dropping every handle stops the task after it has
/// written what was queued.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteRequest>,
}

impl WriterHandle {
    /// Sequences the events (together, when the queue allows) and returns one result each.
    pub async fn submit(&self, events: Vec<NewEvent>) -> Vec<Result<Sequenced, SequencerError>> {
        let mut waiting = Vec::with_capacity(events.len());
        for event in events {
            let (reply, rx) = oneshot::channel();
            let queued = self.tx.send(WriteRequest { event, reply }).await;
            waiting.push(queued.ok().map(|()| rx));
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            let res = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(stopping())),
                None => Err(stopping()),
            };
            out.push(res);
        }
        out
    }
}

fn stopping() -> SequencerError {
    SequencerError::Unavailable("sequencer node is shutting down: retry on another node".into())
}

/// Starts the writer task; it wakes the local tail reader after each commit.
pub fn spawn(
    writer_pool: sqlx::PgPool,
    max_batch: usize,
    committed: Arc<Tail>,
    node: String,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(max_batch.saturating_mul(4).max(64));
    let task = tokio::spawn(run(writer_pool, rx, max_batch, committed, node));
    (WriterHandle { tx }, task)
}

async fn run(
    pool: sqlx::PgPool,
    mut rx: mpsc::Receiver<WriteRequest>,
    max_batch: usize,
    committed: Arc<Tail>,
    node: String,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        write_batch(&pool, batch, &committed, &node).await;
    }
}

async fn write_batch(pool: &sqlx::PgPool, batch: Vec<WriteRequest>, committed: &Tail, node: &str) {
    let (events, replies): (Vec<NewEvent>, Vec<Reply>) =
        batch.into_iter().map(|r| (r.event, r.reply)).unzip();
    metrics::histogram!("ordo_sequencer_batch_submissions", "node" => node.to_owned())
        .record(events.len() as f64);
    let started = Instant::now();
    let result = store::commit_batch(pool, &events).await;
    metrics::histogram!("ordo_sequencer_commit_seconds", "node" => node.to_owned())
        .record(started.elapsed().as_secs_f64());
    let assignment = match result {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, batch = events.len(), "group commit failed");
            for reply in replies {
                let _ = reply.send(Err(SequencerError::Unavailable(format!(
                    "sequencing failed: {e}; retry (sends are idempotent, so a retry never \
                     sequences a message twice)"
                ))));
            }
            return;
        }
    };
    committed.wake.notify_one();
    crate::metrics::head(node, assignment.head);
    for ((event, decision), reply) in events.iter().zip(assignment.decisions).zip(replies) {
        let (outcome, res) = match decision {
            Decision::Sequenced(ts) => (
                "sequenced",
                Ok(Sequenced {
                    timestamp: Timestamp(ts),
                    duplicate: false,
                }),
            ),
            Decision::Duplicate(ts) => (
                "duplicate",
                Ok(Sequenced {
                    timestamp: Timestamp(ts),
                    duplicate: true,
                }),
            ),
            Decision::Expired { would_be } => (
                "expired",
                Err(SequencerError::FailedPrecondition(format!(
                    "not sequenced: message {} would be sequenced at {would_be} ({}), after its max_sequencing_time {} ({})",
                    event.message_id,
                    Timestamp(would_be),
                    event.max_sequencing_time,
                    Timestamp(event.max_sequencing_time)
                ))),
            ),
            Decision::Pruned => (
                "pruned",
                Err(SequencerError::FailedPrecondition(format!(
                    "message {} was sequenced earlier, but has since been pruned",
                    event.message_id
                ))),
            ),
        };
        metrics::counter!("ordo_sequencer_sends_total", "node" => node.to_owned(), "outcome" => outcome)
            .increment(1);
        let _ = reply.send(res);
    }
}
