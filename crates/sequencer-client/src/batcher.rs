//! Sends: concurrent `send` calls are gathered for `linger` into one `SendBatch` call to the
//! next healthy endpoint; each result fans back to its caller. Calls that end without a
//! definite answer — including one whose node answers neither it within `send_deadline` nor
//! a health check within `probe_timeout` — are retried elsewhere with the same message ids
//! until each submission's max sequencing time has passed. The sequencer deduplicates by
//! (sender, message id), so a retry of a batch the frozen node did sequence answers with the
//! original timestamp, and each caller gets the first definite answer.

use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Sequenced, Submission, Timestamp};
use ordo_proto::convert;
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::send_result::Outcome;
use ordo_proto::sequencer::v1::sequencer_service_client::SequencerServiceClient;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::Code;

use crate::Shared;
use crate::auth::authorize;
use crate::error::{ClientError, Disposition, classify_status};

pub(crate) type Reply = oneshot::Sender<Result<Sequenced, ClientError>>;

/// One queued send.
pub(crate) struct Pending {
    request: pb::SubmissionRequest,
    encoded_len: usize,
    reply: Reply,
}

impl Pending {
    pub(crate) fn new(shared: &Shared, submission: &Submission, reply: Reply) -> Self {
        let request = convert::submission_to_pb(&shared.config.member, submission);
        let encoded_len = request.encoded_len();
        Self {
            request,
            encoded_len,
            reply,
        }
    }

    fn max_sequencing_time(&self) -> Timestamp {
        Timestamp(self.request.max_sequencing_time)
    }

    fn answer(self, outcome: Result<Sequenced, ClientError>) {
        let label = match &outcome {
            Ok(_) => "sequenced",
            Err(ClientError::Rejected(_)) => "rejected",
            Err(ClientError::Expired { .. }) => "expired",
            Err(_) => "failed",
        };
        metrics::counter!("ordo_sequencer_client_sends_total", "outcome" => label).increment(1);
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(outcome);
    }
}

/// Whether an item of `item_bytes` still joins a batch of `len` items and `bytes` bytes.
/// An empty batch takes anything, so an oversized submission travels alone and the node
/// answers it with a precise error.
pub fn fits(len: usize, bytes: usize, item_bytes: usize, max_len: usize, max_bytes: usize) -> bool {
    len == 0 || (len < max_len && bytes.saturating_add(item_bytes) <= max_bytes)
}

/// Pause before retry number `attempt` (1-based): 10 ms doubling, capped at 500 ms.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 10u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(500))
}

/// Whether a submission that has been tried without a definite answer must give up.
pub fn expired(max_sequencing_time: Timestamp, now: Timestamp) -> bool {
    now > max_sequencing_time
}

/// Gathers queued sends into batches until every client handle is gone.
pub(crate) async fn run(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let limits = Limits {
        linger: shared.config.linger,
        max_len: shared.config.max_batch,
        max_bytes: shared.config.max_batch_bytes,
    };
    let mut carry = None;
    loop {
        let batch = gather(&mut queue, &mut carry, &limits, |p| p.encoded_len).await;
        if batch.is_empty() {
            return;
        }
        // Batches go out concurrently; the order of concurrent sends is not promised.
        tokio::spawn(dispatch(shared.clone(), batch));
    }
}

struct Limits {
    linger: Duration,
    max_len: usize,
    max_bytes: usize,
}

/// The next batch: the first item (carried over, or awaited), then whatever arrives within
/// `linger` of it while the limits allow. An item that does not fit is carried over to the
/// next batch. Empty only when the queue is closed and drained.
async fn gather<T>(
    queue: &mut mpsc::UnboundedReceiver<T>,
    carry: &mut Option<T>,
    limits: &Limits,
    size: impl Fn(&T) -> usize,
) -> Vec<T> {
    let first = match carry.take() {
        Some(item) => item,
        None => match queue.recv().await {
            Some(item) => item,
            None => return Vec::new(),
        },
    };
    let deadline = tokio::time::Instant::now() + limits.linger;
    let mut bytes = size(&first);
    let mut batch = vec![first];
    while batch.len() < limits.max_len {
        let next = match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) | Err(_) => break,
        };
        let item_bytes = size(&next);
        if !fits(
            batch.len(),
            bytes,
            item_bytes,
            limits.max_len,
            limits.max_bytes,
        ) {
            *carry = Some(next);
            break;
        }
        bytes += item_bytes;
        batch.push(next);
    }
    batch
}

/// Sends one batch until every item has a definite answer, has expired, or no endpoint is
/// healthy.
async fn dispatch(shared: Arc<Shared>, mut pending: Vec<Pending>) {
    let mut attempt: u32 = 0;
    let mut reauthenticated = false;
    let mut avoid = None;
    loop {
        if attempt > 0 {
            pending = drop_expired(pending, shared.config.clock.now());
        }
        if pending.is_empty() {
            return;
        }
        let Some(i) = shared.endpoints.pick(avoid) else {
            for p in pending {
                p.answer(Err(shared.endpoints.no_healthy_endpoint()));
            }
            return;
        };
        let failure = match shared.token().await {
            Ok(token) => match call(&shared, i, &token, &pending).await {
                Ok(results) => {
                    pending =
                        fan_out(pending, results, &mut reauthenticated, &shared, &token).await;
                    None
                }
                Err(status) => Some((status, token)),
            },
            Err(ClientError::Authentication {
                member,
                endpoint,
                status,
            }) => {
                if classify_status(&status) == Disposition::Retry {
                    Some((status, String::new()))
                } else {
                    // A definite authentication failure dooms every item alike.
                    for p in pending {
                        p.answer(Err(ClientError::Authentication {
                            member: member.clone(),
                            endpoint: endpoint.clone(),
                            status: status.clone(),
                        }));
                    }
                    return;
                }
            }
            Err(_) => {
                for p in pending {
                    p.answer(Err(shared.endpoints.no_healthy_endpoint()));
                }
                return;
            }
        };
        if let Some((status, token)) = failure {
            match classify_status(&status) {
                Disposition::Retry => {
                    tracing::debug!(endpoint = shared.endpoints.url(i), %status, "send batch failed, retrying elsewhere");
                    avoid = Some(i);
                }
                Disposition::Reauthenticate if !reauthenticated => {
                    reauthenticated = true;
                    shared.auth.invalidate(&token).await;
                    continue;
                }
                Disposition::Reauthenticate | Disposition::Reject => {
                    for p in pending {
                        p.answer(Err(ClientError::Rejected(status.clone())));
                    }
                    return;
                }
            }
        }
        if !pending.is_empty() {
            attempt += 1;
            metrics::counter!("ordo_sequencer_client_send_retries_total")
                .increment(pending.len() as u64);
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// Answers `Expired` to the items whose max sequencing time has passed; returns the rest.
fn drop_expired(pending: Vec<Pending>, now: Timestamp) -> Vec<Pending> {
    let (gone, keep): (Vec<_>, Vec<_>) = pending
        .into_iter()
        .partition(|p| expired(p.max_sequencing_time(), now));
    for p in gone {
        let error = ClientError::Expired {
            message_id: p.request.message_id.clone(),
            max_sequencing_time: p.max_sequencing_time(),
        };
        p.answer(Err(error));
    }
    keep
}

async fn call(
    shared: &Shared,
    i: usize,
    token: &str,
    pending: &[Pending],
) -> Result<Vec<pb::SendResult>, tonic::Status> {
    let request = pb::SendBatchRequest {
        requests: pending.iter().map(|p| p.request.clone()).collect(),
    };
    let request =
        authorize(request, token).map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
    let mut client = SequencerServiceClient::new(shared.endpoints.channel(i))
        .max_decoding_message_size(usize::MAX);
    let response = shared.answer(i, client.send_batch(request)).await?;
    let results = response.into_inner().results;
    if results.len() != pending.len() {
        // A node that miscounts gave no usable answer; another node may do better.
        return Err(tonic::Status::internal(format!(
            "SendBatch answered {} results for {} requests",
            results.len(),
            pending.len()
        )));
    }
    Ok(results)
}

/// Answers the items with a definite result; returns those to retry.
async fn fan_out(
    pending: Vec<Pending>,
    results: Vec<pb::SendResult>,
    reauthenticated: &mut bool,
    shared: &Shared,
    token: &str,
) -> Vec<Pending> {
    let mut retry = Vec::new();
    let mut invalidate = false;
    for (p, result) in pending.into_iter().zip(results) {
        let status = match result.outcome {
            Some(Outcome::Sequenced(s)) => {
                p.answer(Ok(convert::sequenced_from_pb(&s)));
                continue;
            }
            Some(Outcome::Error(e)) => tonic::Status::new(Code::from_i32(e.code), e.message),
            None => tonic::Status::internal("SendResult without an outcome"),
        };
        match classify_status(&status) {
            Disposition::Retry => retry.push(p),
            Disposition::Reauthenticate if !*reauthenticated => {
                invalidate = true;
                retry.push(p);
            }
            Disposition::Reauthenticate | Disposition::Reject => {
                p.answer(Err(ClientError::Rejected(status)));
            }
        }
    }
    if invalidate {
        *reauthenticated = true;
        shared.auth.invalidate(token).await;
    }
    retry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_len: usize, max_bytes: usize) -> Limits {
        Limits {
            linger: Duration::from_millis(10),
            max_len,
            max_bytes,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gathers_what_arrives_within_linger() {
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            late.send(3).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            late.send(4).unwrap();
        });
        let mut carry = None;
        let started = tokio::time::Instant::now();
        let batch = gather(&mut rx, &mut carry, &limits(100, 1000), |_| 1).await;
        assert_eq!(batch, [1, 2, 3], "4 came after the linger");
        assert_eq!(started.elapsed(), Duration::from_millis(10));
        assert_eq!(
            gather(&mut rx, &mut carry, &limits(100, 1000), |_| 1).await,
            [4]
        );
        drop(tx);
        assert!(
            gather(&mut rx, &mut carry, &limits(100, 1000), |_| 1)
                .await
                .is_empty()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_leaves_without_waiting_and_overflow_carries_over() {
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        for item in [40, 40, 40, 40] {
            tx.send(item).unwrap();
        }
        let mut carry = None;
        let started = tokio::time::Instant::now();
        // Two items fill the count limit: no linger wait.
        assert_eq!(
            gather(&mut rx, &mut carry, &limits(2, 1000), |n| *n).await,
            [40, 40]
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        // 100 bytes allow two items of 40; the third is carried over.
        tx.send(40).unwrap();
        assert_eq!(
            gather(&mut rx, &mut carry, &limits(10, 100), |n| *n).await,
            [40, 40]
        );
        assert_eq!(carry, Some(40));
        assert_eq!(
            gather(&mut rx, &mut carry, &limits(10, 100), |n| *n).await,
            [40]
        );
    }

    #[test]
    fn batch_limits() {
        assert!(
            fits(0, 0, 10_000, 1, 100),
            "an empty batch takes an oversized item"
        );
        assert!(fits(1, 50, 50, 2, 100));
        assert!(!fits(1, 50, 51, 2, 100), "would exceed the byte budget");
        assert!(!fits(2, 0, 1, 2, 100), "would exceed max_batch");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(2), Duration::from_millis(20));
        assert_eq!(backoff(6), Duration::from_millis(320));
        assert_eq!(backoff(7), Duration::from_millis(500));
        assert_eq!(backoff(1000), Duration::from_millis(500));
    }

    #[test]
    fn expires_strictly_after_max_sequencing_time() {
        assert!(!expired(Timestamp(10), Timestamp(10)));
        assert!(expired(Timestamp(10), Timestamp(11)));
    }
}
