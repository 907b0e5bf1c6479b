//! A member's event stream that survives node failures: it stays on one healthy node,
//! checks every event's previous-timestamp chain, and when its node fails, turns unhealthy
//! or suspect, or sends neither an event nor a heartbeat for `subscription_idle_timeout`,
//! resumes on another from the last delivered event.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use ordo_core::{SequencedEvent, Timestamp};
use ordo_proto::convert;
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_service_client::SequencerServiceClient;
use tokio::sync::{mpsc, watch};
use tonic::Streaming;

use crate::Inner;
use crate::auth::authorize;
use crate::batcher::backoff;
use crate::error::{ClientError, Disposition, classify_status};

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
    /// The token the stream was opened with.
    token: String,
    /// Health changes of any endpoint (its own, or another one becoming usable).
    changes: watch::Receiver<u64>,
}

/// What ended a wait for the next message.
enum Woken {
    Message(Result<Option<pb::SequencedEvent>, tonic::Status>),
    /// The endpoint is not SERVING, or suspect while another one is usable.
    Leave,
    /// Neither an event nor a heartbeat for the idle timeout.
    Idle,
}

/// Resolves once the subscription should leave endpoint `i`.
async fn must_leave(shared: &crate::Shared, i: usize, changes: &mut watch::Receiver<u64>) {
    loop {
        changes.borrow_and_update();
        if shared.endpoints.should_leave(i) {
            return;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
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

    /// Runs the subscription in a task of its own and takes its events in batches of at
    /// most `max`: whatever has arrived, without cancelling a half-received event. The task
    /// ends after the error that ends the subscription, or once the batches are dropped.
    pub fn batches(mut self, max: usize) -> Batches {
        let (tx, rx) = mpsc::channel(max);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = tx.closed() => return,
                    next = self.next() => next,
                };
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        Batches::new(rx, max)
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
            let shared = &self.inner.shared;
            // The idle timer starts afresh with every wait: time the caller spends between
            // two calls of `next` is not the node's silence.
            let idle = shared.config.subscription_idle_timeout;
            let waiting_since = tokio::time::Instant::now();
            let woken = tokio::select! {
                m = active.stream.message() => Woken::Message(m),
                () = must_leave(shared, endpoint, &mut active.changes) => Woken::Leave,
                () = tokio::time::sleep(idle) => Woken::Idle,
            };
            let url = shared.endpoints.url(endpoint);
            if let Woken::Message(Ok(Some(_))) = woken {
                shared.endpoints.heard_from(endpoint);
            }
            let event = match woken {
                Woken::Message(Ok(Some(event))) if event.heartbeat.is_some() => continue,
                Woken::Message(Ok(Some(event))) => event,
                Woken::Leave => {
                    tracing::info!(
                        endpoint = url,
                        "subscription endpoint unhealthy or suspect, moving"
                    );
                    self.leave();
                    continue;
                }
                Woken::Idle => {
                    tracing::warn!(endpoint = url, ?idle, after = %self.last, "subscription saw neither an event nor a heartbeat, resuming on another node");
                    metrics::counter!("ordo_sequencer_client_idle_subscriptions_total")
                        .increment(1);
                    // Heartbeats missed and nothing else heard from the node either: calls
                    // avoid it too, until it answers a health check again.
                    if !shared.endpoints.heard_since(endpoint, waiting_since) {
                        shared.endpoints.suspect(endpoint);
                    }
                    self.leave();
                    continue;
                }
                Woken::Message(Ok(None)) => {
                    tracing::info!(endpoint = url, "subscription stream ended, resubscribing");
                    self.leave();
                    continue;
                }
                Woken::Message(Err(status)) => {
                    tracing::info!(endpoint = url, %status, "subscription stream failed, resubscribing");
                    // Its token expired (the node ends the stream then): get a fresh one.
                    if status.code() == tonic::Code::Unauthenticated
                        && let Some(active) = &self.active
                    {
                        shared.auth.invalidate(&active.token).await;
                    }
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
                Ok((stream, token)) => {
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
                        token,
                        changes: shared.endpoints.changes(),
                    });
                    return Ok(());
                }
                Err(error) => {
                    let status = match &error {
                        ClientError::Rejected(status)
                        | ClientError::Authentication { status, .. } => status.clone(),
                        _ => tonic::Status::unavailable(error.to_string()),
                    };
                    if classify_status(&status) == Disposition::Reject {
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

    /// Opens the stream on endpoint `i`; with the token it was opened with.
    async fn open_at(
        &self,
        i: usize,
    ) -> Result<(Streaming<pb::SequencedEvent>, String), ClientError> {
        let shared = &self.inner.shared;
        let token = shared.token().await?;
        let heartbeat_ms = shared.config.heartbeat_interval.as_millis();
        let request = pb::SubscribeRequest {
            member: shared.config.member.to_string(),
            after_timestamp: self.last.micros(),
            heartbeat_interval_ms: u32::try_from(heartbeat_ms).unwrap_or(u32::MAX),
        };
        let mut client = SequencerServiceClient::new(shared.endpoints.channel(i))
            .max_decoding_message_size(usize::MAX);
        let call = client.subscribe(authorize(request, &token)?);
        match shared.answer(i, call).await {
            Ok(response) => Ok((response.into_inner(), token)),
            Err(status) if classify_status(&status) == Disposition::Retry => {
                Err(ClientError::Unavailable {
                    endpoint: shared.endpoints.url(i).to_string(),
                    status,
                })
            }
            Err(status) => {
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

type Received = Result<SequencedEvent, ClientError>;

/// A subscription's events in batches, for a member that processes whatever has arrived
/// in one go ([`Subscription::batches`]). Events it hands out and does not process (those
/// after a batch's topology change, or a whole batch to go through again one event at a
/// time) are given back and come first in the next batches.
pub struct Batches {
    events: mpsc::Receiver<Received>,
    max: usize,
    /// Received and not processed yet, oldest first.
    carried: VecDeque<SequencedEvent>,
    /// How many of the carried events go one per batch.
    single: usize,
    /// What ended the subscription, handed out after the events before it.
    failure: Option<ClientError>,
}

impl Batches {
    fn new(events: mpsc::Receiver<Received>, max: usize) -> Self {
        Self {
            events,
            max: max.max(1),
            carried: VecDeque::new(),
            single: 0,
            failure: None,
        }
    }

    /// The next batch, oldest first: given-back events, or else at least one new event and
    /// whatever else has arrived. `Err` is what ended the subscription, once every event
    /// before it was handed out. Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next(&mut self) -> Result<Vec<SequencedEvent>, ClientError> {
        if self.carried.is_empty() {
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            let first = self.events.recv().await.ok_or(ClientError::Closed)?;
            let mut next = Some(first);
            while let Some(received) = next.take() {
                match received {
                    Ok(event) => self.carried.push_back(event),
                    Err(e) => {
                        self.failure = Some(e);
                        break;
                    }
                }
                if self.carried.len() < self.max {
                    next = self.events.try_recv().ok();
                }
            }
            if self.carried.is_empty() {
                return Err(self.failure.take().unwrap_or(ClientError::Closed));
            }
        }
        let n = if self.single > 0 {
            self.single -= 1;
            1
        } else {
            self.max
        };
        let n = n.min(self.carried.len());
        Ok(self.carried.drain(..n).collect())
    }

    /// Gives `events` (in order) back, to come before anything newer.
    pub fn give_back(&mut self, events: impl DoubleEndedIterator<Item = SequencedEvent>) {
        for event in events.rev() {
            self.carried.push_front(event);
        }
    }

    /// Gives `events` back to be handed out again one per batch (to find the one whose
    /// effects cannot be written).
    pub fn one_at_a_time(&mut self, events: impl DoubleEndedIterator<Item = SequencedEvent>) {
        let before = self.carried.len();
        self.give_back(events);
        self.single = self.carried.len() - before;
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use ordo_core::MemberId;

    fn event(ts: i64) -> SequencedEvent {
        SequencedEvent {
            timestamp: Timestamp(ts),
            previous_timestamp: Timestamp(ts - 1),
            sender: MemberId::new("m", &ordo_core::KeyPair::generate().public()).unwrap(),
            message_id: format!("e{ts}"),
            envelopes: Vec::new(),
        }
    }

    fn times(batch: &[SequencedEvent]) -> Vec<i64> {
        batch.iter().map(|e| e.timestamp.micros()).collect()
    }

    #[tokio::test]
    async fn batches_take_what_arrived_give_back_and_end_with_the_failure() {
        let (tx, rx) = mpsc::channel(16);
        let mut batches = Batches::new(rx, 3);
        for ts in 1..=5 {
            tx.send(Ok(event(ts))).await.unwrap();
        }
        tx.send(Err(ClientError::Closed)).await.unwrap();
        // At most three at a time, in order.
        let first = batches.next().await.unwrap();
        assert_eq!(times(&first), [1, 2, 3]);
        // Two of them given back come before the rest.
        batches.give_back(first.into_iter().skip(1));
        assert_eq!(times(&batches.next().await.unwrap()), [2, 3]);
        // The last events before the failure, then the failure.
        assert_eq!(times(&batches.next().await.unwrap()), [4, 5]);
        assert!(matches!(batches.next().await, Err(ClientError::Closed)));
    }

    #[tokio::test]
    async fn one_at_a_time_then_whole_batches_again() {
        let (tx, rx) = mpsc::channel(16);
        let mut batches = Batches::new(rx, 8);
        for ts in 1..=4 {
            tx.send(Ok(event(ts))).await.unwrap();
        }
        let all = batches.next().await.unwrap();
        assert_eq!(times(&all), [1, 2, 3, 4]);
        batches.one_at_a_time(all.into_iter().take(3));
        tx.send(Ok(event(5))).await.unwrap();
        for ts in 1..=3 {
            assert_eq!(times(&batches.next().await.unwrap()), [ts]);
        }
        // Back to whole batches once the given-back events are through.
        assert_eq!(times(&batches.next().await.unwrap()), [5]);
    }
}
