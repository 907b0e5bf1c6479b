//! A member's event stream that survives node failures: it stays on one healthy node,
//! checks every event's previous-timestamp chain, and when its node fails or turns
//! unhealthy resumes on another from the last delivered event.

use std::sync::Arc;

use futures::Stream;
use ordo_core::{SequencedEvent, Timestamp};
use ordo_proto::convert;
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_service_client::SequencerServiceClient;
use tokio::sync::watch;
use tonic::Streaming;

use crate::Inner;
use crate::auth::authorize;
use crate::batcher::backoff;
use crate::error::{ClientError, Disposition, classify};

/// Checks that `event` directly follows `last`, the last event delivered (or the
/// subscription's starting point, `Timestamp::MIN` for "from the beginning").
pub fn verify_chain(last: Timestamp, event: &SequencedEvent) -> Result<(), ClientError> {
    if event.previous_timestamp != last || event.timestamp <= last {
        return Err(ClientError::ChainBroken {
            expected_previous: last,
            got_previous: event.previous_timestamp,
            at: event.timestamp,
        });
    }
    Ok(())
}

struct Active {
    endpoint: usize,
    stream: Streaming<pb::SequencedEvent>,
    health: watch::Receiver<bool>,
}

pub struct Subscription {
    inner: Arc<Inner>,
    last: Timestamp,
    active: Option<Active>,
    /// Where the next endpoint search starts; random at first to spread members out.
    cursor: usize,
    opened: bool,
    resubscriptions: u64,
    broken: Option<(Timestamp, Timestamp, Timestamp)>,
}

impl Subscription {
    pub(crate) fn new(inner: Arc<Inner>, after: Timestamp) -> Self {
        Self {
            inner,
            last: after,
            active: None,
            cursor: rand::random::<u32>() as usize,
            opened: false,
            resubscriptions: 0,
            broken: None,
        }
    }

    /// The next event. Waits (across node failures and total outages) until one arrives.
    /// After a `ChainBroken` error the subscription is dead and returns it again.
    pub async fn next(&mut self) -> Result<SequencedEvent, ClientError> {
        if let Some((expected_previous, got_previous, at)) = self.broken {
            return Err(ClientError::ChainBroken {
                expected_previous,
                got_previous,
                at,
            });
        }
        loop {
            let Some(active) = self.active.as_mut() else {
                self.open().await?;
                continue;
            };
            let endpoint = active.endpoint;
            // `None`: the endpoint turned unhealthy.
            let message = tokio::select! {
                m = active.stream.message() => Some(m),
                _ = active.health.wait_for(|healthy| !*healthy) => None,
            };
            let url = self.inner.shared.endpoints.url(endpoint);
            let event = match message {
                Some(Ok(Some(event))) => event,
                None => {
                    tracing::info!(endpoint = url, "subscription endpoint unhealthy, moving");
                    self.leave();
                    continue;
                }
                Some(Ok(None)) => {
                    tracing::info!(endpoint = url, "subscription stream ended, resubscribing");
                    self.leave();
                    continue;
                }
                Some(Err(status)) => {
                    tracing::info!(endpoint = url, %status, "subscription stream failed, resubscribing");
                    self.leave();
                    continue;
                }
            };
            let event = match convert::event_from_pb(event) {
                Ok(event) => event,
                Err(error) => {
                    // A node that sends garbage is not trusted further: resume elsewhere.
                    self.leave();
                    return Err(error.into());
                }
            };
            if let Err(error) = verify_chain(self.last, &event) {
                self.broken = Some((self.last, event.previous_timestamp, event.timestamp));
                self.active = None;
                return Err(error);
            }
            self.last = event.timestamp;
            return Ok(event);
        }
    }

    /// The node currently serving this subscription; `None` while it is looking for one.
    pub fn endpoint(&self) -> Option<String> {
        let active = self.active.as_ref()?;
        Some(self.inner.shared.endpoints.url(active.endpoint).to_string())
    }

    /// How many times the subscription was opened again after its first stream.
    pub fn resubscriptions(&self) -> u64 {
        self.resubscriptions
    }

    /// The last delivered event (or the starting point when none was delivered yet).
    pub fn last_timestamp(&self) -> Timestamp {
        self.last
    }

    /// The events as a `Stream`; it ends after a `ChainBroken` error.
    pub fn into_stream(self) -> impl Stream<Item = Result<SequencedEvent, ClientError>> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut subscription = state?;
            let item = subscription.next().await;
            let broken = matches!(item, Err(ClientError::ChainBroken { .. }));
            Some((item, (!broken).then_some(subscription)))
        })
    }

    fn leave(&mut self) {
        if let Some(active) = self.active.take() {
            self.cursor = active.endpoint + 1;
        }
    }

    /// Opens a stream on a healthy endpoint, waiting as long as it takes for one. Returns
    /// an error only for a definite refusal (e.g. the member is disabled).
    async fn open(&mut self) -> Result<(), ClientError> {
        let shared = &self.inner.shared;
        let mut failures: u32 = 0;
        let mut changes = shared.endpoints.changes();
        loop {
            let Some(i) = shared.endpoints.pick_from(self.cursor, None) else {
                // Total outage: wait for any health change, re-checking now and then.
                changes.borrow_and_update();
                if shared.endpoints.any_healthy() {
                    continue;
                }
                let _ = tokio::time::timeout(shared.config.health_retry, changes.changed()).await;
                continue;
            };
            match self.open_at(i).await {
                Ok(stream) => {
                    if self.opened {
                        self.resubscriptions += 1;
                        metrics::counter!("ordo_sequencer_client_resubscriptions_total")
                            .increment(1);
                    }
                    self.opened = true;
                    tracing::debug!(endpoint = shared.endpoints.url(i), after = %self.last, "subscribed");
                    self.active = Some(Active {
                        endpoint: i,
                        stream,
                        health: shared.endpoints.health(i),
                    });
                    return Ok(());
                }
                Err(error) => {
                    let status = match &error {
                        ClientError::Rejected(status)
                        | ClientError::Authentication { status, .. } => status.clone(),
                        _ => tonic::Status::unavailable(error.to_string()),
                    };
                    if classify(status.code()) == Disposition::Reject {
                        return Err(error);
                    }
                    tracing::debug!(endpoint = shared.endpoints.url(i), %status, "subscribe failed, trying another endpoint");
                    failures += 1;
                    self.cursor = i + 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    async fn open_at(&self, i: usize) -> Result<Streaming<pb::SequencedEvent>, ClientError> {
        let shared = &self.inner.shared;
        let token = shared.token().await?;
        let request = pb::SubscribeRequest {
            member: shared.config.member.to_string(),
            after_timestamp: self.last.micros(),
        };
        let mut client = SequencerServiceClient::new(shared.endpoints.channel(i))
            .max_decoding_message_size(usize::MAX);
        let call = client.subscribe(authorize(request, &token)?);
        match tokio::time::timeout(shared.config.request_timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unauthenticated {
                    shared.auth.invalidate(&token).await;
                    // Retry with a fresh token rather than give up.
                    return Err(ClientError::Unavailable {
                        endpoint: shared.endpoints.url(i).to_string(),
                        status,
                    });
                }
                Err(ClientError::Rejected(status))
            }
            Err(_) => Err(ClientError::Unavailable {
                endpoint: shared.endpoints.url(i).to_string(),
                status: tonic::Status::deadline_exceeded("Subscribe timed out on the client"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_core::{KeyPair, MemberId};

    fn event(timestamp: i64, previous: i64) -> SequencedEvent {
        SequencedEvent {
            timestamp: Timestamp(timestamp),
            previous_timestamp: Timestamp(previous),
            sender: MemberId::new("s", &KeyPair::generate().public()).unwrap(),
            message_id: "m".into(),
            envelopes: vec![],
        }
    }

    #[test]
    fn accepts_a_chained_event() {
        verify_chain(Timestamp::MIN, &event(5, 0)).unwrap();
        verify_chain(Timestamp(5), &event(9, 5)).unwrap();
    }

    #[test]
    fn detects_gap_fork_and_regression() {
        // Gap: an event between 5 and 9 was skipped.
        assert!(matches!(
            verify_chain(Timestamp(5), &event(12, 9)),
            Err(ClientError::ChainBroken {
                expected_previous: Timestamp(5),
                got_previous: Timestamp(9),
                at: Timestamp(12)
            })
        ));
        // First event after a fresh start must chain to the start.
        assert!(verify_chain(Timestamp::MIN, &event(12, 9)).is_err());
        // Duplicate / going backwards.
        assert!(verify_chain(Timestamp(5), &event(5, 5)).is_err());
        assert!(verify_chain(Timestamp(5), &event(4, 5)).is_err());
    }
}
