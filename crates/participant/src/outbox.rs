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

use ordo_core::Timestamp;
use ordo_sequencer_client::ClientError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::ParticipantError;
use crate::node::Shared;
use crate::store::{self, Outcome};

/// How often the table is read, for what no commit handed over (rows left by an earlier
/// term, sends that failed).
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Sends the outbox until `stop`. Rows come from the commits that wrote them
/// (`Shared::hand_over`) and, at start and every [`SCAN_INTERVAL`], from the table. Rows
/// whose answer is definite are deleted by the processor's next batch, in its transaction
/// (`Shared::sent`); those no batch took by the next scan are deleted here, in one fenced
/// transaction. A deletion the lease fence refuses ends it with that error: this replica's
/// term is over (the active replica resends what is left). A row found in the table
/// again before its deletion committed is sent again, which the sequencer answers as a
/// duplicate.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) -> Result<(), ParticipantError> {
    // Sends in flight, by message id; the tasks are aborted when this returns or is
    // dropped.
    let mut sending: HashSet<String> = HashSet::new();
    let mut sends: JoinSet<(String, Result<bool, ParticipantError>)> = JoinSet::new();
    // Answered definitely since the last scan: not sent again while a batch may be about
    // to delete them.
    let mut answered: HashSet<String> = HashSet::new();
    let mut scan_at = tokio::time::Instant::now();
    loop {
        let mut rows = shared.handed_over();
        if tokio::time::Instant::now() >= scan_at {
            // What no batch took since the last scan is deleted here.
            let left = shared.take_sent();
            if !left.is_empty() {
                match delete(&shared, &left).await {
                    Ok(()) => {}
                    Err(e @ ParticipantError::Fenced(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, rows = left.len(), "deleting sent outbox rows failed");
                        shared.sent(left);
                    }
                }
            }
            match store::outbox(&shared.pool, 1000).await {
                Ok(stored) => rows.extend(
                    stored
                        .into_iter()
                        .filter(|r| !answered.contains(&r.submission.message_id)),
                ),
                Err(e) => tracing::warn!(error = %e, "reading the outbox failed; retrying"),
            }
            answered.clear();
            scan_at = tokio::time::Instant::now() + SCAN_INTERVAL;
        }
        for row in rows {
            let id = row.submission.message_id.clone();
            if !sending.insert(id.clone()) {
                continue;
            }
            let shared = shared.clone();
            sends.spawn(async move { (id, send_one(&shared, row).await) });
        }
        let sent = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = shared.outbox_wake.notified() => None,
            () = tokio::time::sleep_until(scan_at) => None,
            Some(sent) = sends.join_next() => Some(sent),
        };
        // Every send that finished by now joins the group.
        let mut finished: Vec<_> = sent.into_iter().collect();
        while let Some(more) = sends.try_join_next() {
            finished.push(more);
        }
        let mut done = Vec::new();
        for joined in finished {
            let (id, outcome) = joined
                .map_err(|e| ParticipantError::Internal(format!("an outbox send panicked: {e}")))?;
            sending.remove(&id);
            match outcome {
                Ok(true) => {
                    answered.insert(id.clone());
                    done.push(id);
                }
                Ok(false) => {}
                Err(e @ ParticipantError::Fenced(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "an outbox send failed; will retry");
                }
            }
        }
        shared.sent(done);
    }
}

/// Sends one row: `Ok(true)` once the answer is definite (the row can go), `Ok(false)`
/// when it is to be sent again later. Only a refused fence is an error (the row stays
/// for the active replica).
async fn send_one(shared: &Shared, row: store::OutboxRow) -> Result<bool, ParticipantError> {
    let id = row.submission.message_id.clone();
    let mst = row.submission.max_sequencing_time;
    let started = std::time::Instant::now();
    let sent = shared.sequencer.send(row.submission).await;
    crate::metrics::send(
        started.elapsed(),
        match &sent {
            Ok(_) => "sequenced",
            Err(ClientError::Rejected(_)) => "refused",
            Err(_) => "failed",
        },
    );
    match sent {
        Ok(sequenced) => {
            tracing::debug!(message_id = %id, ts = sequenced.timestamp.micros(), "sequenced");
            Ok(true)
        }
        Err(ClientError::Rejected(status)) => {
            tracing::warn!(message_id = %id, %status, "the sequencer refused a message");
            if row.is_command {
                let outcome = Outcome::rejected(
                    ordo_proto::errors::NOT_SEQUENCED_TIMEOUT,
                    format!(
                        "the sequencer refused the confirmation request: {}",
                        status.message()
                    ),
                );
                match crate::processor::reject_unsequenced(shared, &id, &outcome).await {
                    Ok(()) => {}
                    Err(e @ ParticipantError::Fenced(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(message_id = %id, error = %e, "completing a refused command failed");
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        }
        Err(ClientError::Expired { .. }) => {
            tracing::info!(message_id = %id, "no definite answer before max sequencing time");
            if row.is_command {
                request_time_proof(shared, mst).await;
            }
            Ok(true)
        }
        Err(e) => {
            // Nothing definite (no healthy endpoint, shutting down): retry later.
            tracing::info!(message_id = %id, error = %e, "send failed; will retry");
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(false)
        }
    }
}

/// Deletes sent rows in one transaction, fenced: a deposed replica leaves them to the
/// active one.
async fn delete(shared: &Shared, ids: &[String]) -> Result<(), ParticipantError> {
    let mut tx = shared.pool.begin().await?;
    store::delete_outbox(&mut tx, ids).await?;
    shared.commit(tx).await
}

/// Sends a time proof to ourselves, so that an event after `after` arrives and the
/// processor learns that a submission can no longer be sequenced.
pub async fn request_time_proof(shared: &Shared, after: Timestamp) {
    let tag = format!("tp-{}", after.micros());
    if let Err(e) = shared.time_proof(&tag, Duration::from_secs(60)).await {
        tracing::warn!(error = %e, "sending a time proof failed");
    }
}
