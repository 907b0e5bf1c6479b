//! Group commit of submissions: one task writes the accepted commands (the command row,
//! which decides deduplication by the insert itself, and the confirmation request's outbox
//! row) of every submission waiting at the time in one fenced transaction, instead of one
//! transaction (and one durable commit) per command.

use ordo_lease::Replica;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::error::ParticipantError;
use crate::store::{self, NewSubmission};

/// The most submissions written in one transaction.
const MAX_GROUP: usize = 256;

type Reply = oneshot::Sender<Result<bool, ParticipantError>>;

/// The handle the Ledger API submits through.
pub struct Writer(mpsc::Sender<(NewSubmission, Reply)>);

impl Writer {
    /// Starts the writing task; it ends when the handle is dropped.
    pub fn start(pool: PgPool, replica: Replica) -> Self {
        let (tx, rx) = mpsc::channel(MAX_GROUP * 4);
        tokio::spawn(run(pool, replica, rx));
        Self(tx)
    }

    /// Records `accepted` durably: `Ok(false)` when its command is a duplicate (nothing
    /// written).
    pub async fn write(&self, accepted: NewSubmission) -> Result<bool, ParticipantError> {
        let (reply, answer) = oneshot::channel();
        self.0.send((accepted, reply)).await.map_err(|_| {
            ParticipantError::Unavailable("the participant is shutting down".into())
        })?;
        answer
            .await
            .map_err(|_| ParticipantError::Unavailable("the participant is shutting down".into()))?
    }
}

async fn run(pool: PgPool, replica: Replica, mut rx: mpsc::Receiver<(NewSubmission, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (accepted, replies): (Vec<NewSubmission>, Vec<Reply>) = group.into_iter().unzip();
        metrics::histogram!("ordo_participant_submission_group_events")
            .record(accepted.len() as f64);
        match write(&pool, &replica, &accepted).await {
            Ok(inserted) => {
                for (reply, inserted) in replies.into_iter().zip(inserted) {
                    let _ = reply.send(Ok(inserted));
                }
            }
            // Each on its own, so that each caller gets its own error (and one command's
            // failure is not every command's).
            Err(_) if accepted.len() > 1 => {
                for (a, reply) in accepted.iter().zip(replies) {
                    let written = write(&pool, &replica, std::slice::from_ref(a)).await;
                    let _ = reply.send(written.map(|w| w.first().copied().unwrap_or(false)));
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// One fenced transaction for the group: whether each command was new.
async fn write(
    pool: &PgPool,
    replica: &Replica,
    group: &[NewSubmission],
) -> Result<Vec<bool>, ParticipantError> {
    let mut tx = pool.begin().await?;
    let inserted = store::insert_commands(&mut tx, group).await?;
    replica.fence(&mut tx).await?;
    tx.commit().await?;
    Ok(inserted)
}
