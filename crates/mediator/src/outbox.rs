//! Sends the outbox: signed messages written in the same transaction as the decision that
//! produced them. Each is sent with its deterministic message id until the sequencer
//! answers, then deleted; a resend of something already sequenced is answered as a
//! duplicate, so a crash between the send and the delete repeats nothing — nor does a
//! failover: the new active replica resends what the old one left.

use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Clock, Envelope, Recipients, Submission, SystemClock};
use ordo_lease::Replica;
use ordo_sequencer_client::{ClientError, SequencerClient};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::MediatorError;
use crate::metrics;
use crate::store::{self, OutboxMessage};

/// How long one send attempt may wait to be sequenced.
const SEND_WINDOW: Duration = Duration::from_secs(30);
/// Pause before retrying after a failure, and the period of the safety sweep.
const RETRY: Duration = Duration::from_secs(1);
const SWEEP: Duration = Duration::from_secs(5);

/// Sends the outbox at start, whenever `wake` is notified (after each commit), and
/// periodically, until `stop` (the end of the session). Its deletes and updates are fenced
/// by `replica`'s lease.
pub async fn run(
    pool: PgPool,
    replica: Replica,
    client: SequencerClient,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let pause = match send_all(&pool, &replica, &client).await {
            Ok(true) => SWEEP,
            Ok(false) => RETRY,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: will retry");
                RETRY
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Sends every waiting message; `Ok(true)` when none is left to retry.
async fn send_all(
    pool: &PgPool,
    replica: &Replica,
    client: &SequencerClient,
) -> Result<bool, MediatorError> {
    let messages = store::outbox(pool).await?;
    if messages.is_empty() {
        return Ok(true);
    }
    // Concurrent sends share the client's batches.
    let results = futures::future::join_all(messages.iter().map(|m| send_one(client, m))).await;
    let mut done = true;
    for (message, result) in messages.iter().zip(results) {
        match result {
            Ok(sequenced) => {
                tracing::debug!(message_id = %message.message_id, at = %sequenced.timestamp, duplicate = sequenced.duplicate, "outbox message sequenced");
                store::outbox_sequenced(pool, replica, &message.message_id).await?;
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
                done = false;
            }
        }
    }
    Ok(done)
}

async fn send_one(
    client: &SequencerClient,
    message: &OutboxMessage,
) -> Result<ordo_core::Sequenced, ClientError> {
    client
        .send(Submission {
            message_id: message.message_id.clone(),
            max_sequencing_time: SystemClock.now().plus(SEND_WINDOW),
            envelopes: vec![Envelope {
                recipients: Recipients::members(message.recipients.iter().cloned()),
                content: message.payload.clone(),
            }],
        })
        .await
}
