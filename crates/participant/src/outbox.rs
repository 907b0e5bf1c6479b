//! Sends what the processor and the submission path wrote to the outbox.
//!
//! Every row carries its deterministic message id, so a send repeated after a crash or a
//! failover is sequenced at most once. A row is deleted once the sequencer answered
//! definitely: sequenced (now or earlier), or refused. A refused confirmation request
//! completes its command as rejected. A send that got no definite answer before its max
//! sequencing time may or may not have been sequenced: a time proof is sent to learn the
//! domain time, and the processor completes the command as timed out once it sees an
//! event past the max sequencing time without the request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Envelope, Recipients, Submission, Timestamp};
use ordo_protocol::{Message, SignedMessage, TimeProof};
use ordo_sequencer_client::ClientError;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::node::Shared;
use crate::store::{self, Outcome};

/// How often the outbox is scanned when nothing wakes the sender.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let sending: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        match store::outbox(&shared.pool, 1000).await {
            Ok(rows) => {
                for row in rows {
                    let id = row.submission.message_id.clone();
                    if !sending.lock().insert(id.clone()) {
                        continue;
                    }
                    let shared = shared.clone();
                    let sending = sending.clone();
                    tokio::spawn(async move {
                        send_one(&shared, row).await;
                        sending.lock().remove(&id);
                        shared.outbox_wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the outbox failed; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = shared.outbox_wake.notified() => {}
            () = tokio::time::sleep(SCAN_INTERVAL) => {}
        }
    }
}

async fn send_one(shared: &Shared, row: store::OutboxRow) {
    let id = row.submission.message_id.clone();
    let mst = row.submission.max_sequencing_time;
    match shared.sequencer.send(row.submission).await {
        Ok(sequenced) => {
            tracing::debug!(message_id = %id, ts = sequenced.timestamp.micros(), "sequenced");
            delete(shared, &id).await;
        }
        Err(ClientError::Rejected(status)) => {
            tracing::warn!(message_id = %id, %status, "the sequencer refused a message");
            if row.is_command {
                let outcome = Outcome {
                    code: tonic::Code::Aborted as i32,
                    message: format!(
                        "the sequencer refused the confirmation request: {}",
                        status.message()
                    ),
                    update_id: String::new(),
                    ledger_offset: 0,
                };
                if let Err(e) = crate::processor::reject_unsequenced(shared, &id, &outcome).await {
                    tracing::warn!(message_id = %id, error = %e, "completing a refused command failed");
                    return;
                }
            }
            delete(shared, &id).await;
        }
        Err(ClientError::Expired { .. }) => {
            tracing::info!(message_id = %id, "no definite answer before max sequencing time");
            if row.is_command {
                request_time_proof(shared, mst).await;
            }
            delete(shared, &id).await;
        }
        Err(e) => {
            // Nothing definite (no healthy endpoint, shutting down): retry later.
            tracing::info!(message_id = %id, error = %e, "send failed; will retry");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn delete(shared: &Shared, id: &str) {
    if let Err(e) = store::delete_outbox(&shared.pool, id).await {
        tracing::warn!(message_id = %id, error = %e, "deleting an outbox row failed");
    }
}

/// Sends a time proof to ourselves, so that an event after `after` arrives and the
/// processor learns that a submission can no longer be sequenced.
pub async fn request_time_proof(shared: &Shared, after: Timestamp) {
    let nonce: u64 = rand::random();
    let content = SignedMessage::encode(
        &shared.member,
        &shared.key,
        &Message::TimeProof(TimeProof { nonce }),
    );
    let submission = Submission {
        message_id: format!("tp-{}-{nonce:016x}", after.micros()),
        max_sequencing_time: Timestamp::from_system_time(std::time::SystemTime::now())
            .plus(Duration::from_secs(60)),
        envelopes: vec![Envelope {
            recipients: Recipients::members([shared.member.clone()]),
            content,
        }],
    };
    if let Err(e) = shared.sequencer.send(submission).await {
        tracing::warn!(error = %e, "sending a time proof failed");
    }
}
