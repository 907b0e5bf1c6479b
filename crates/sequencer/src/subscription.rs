//! One member's subscription: it delivers the member's events after a cursor, from the tail
//! buffer when that covers the cursor, else from the table, never past the tail's head
//! (so it only ever sees a committed prefix of the order). When the member asked for
//! heartbeats, a stream that carried nothing for the interval gets one — while it waits
//! for new events and while it reads from the table alike — so the member can tell a quiet
//! node from a frozen one and move on from the latter.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ordo_proto::convert;
use ordo_proto::sequencer::v1 as pb;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::SequencerError;
use crate::store::{self, MemberRow};
use crate::tail::{Event, Tail};

const CATCH_UP_LIMIT: i64 = 1000;
const SCAN_LIMIT: usize = 4096;
const CHANNEL: usize = 256;
/// The shortest heartbeat interval a node honours; shorter requests get this one.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);

/// The heartbeat interval of a subscription that asked for `requested_ms` (0: none).
pub fn heartbeat_interval(requested_ms: u32) -> Option<Duration> {
    (requested_ms > 0)
        .then(|| Duration::from_millis(requested_ms.into()).max(MIN_HEARTBEAT_INTERVAL))
}

pub type EventStream = tokio_stream::wrappers::ReceiverStream<Result<pb::SequencedEvent, Status>>;

/// What every subscription on a node shares.
#[derive(Clone)]
pub struct Subscriptions {
    pub pool: PgPool,
    /// The members: a subscription ends when its member is disabled.
    pub registry: Arc<crate::registry::Registry>,
    pub tail: Arc<Tail>,
    pub stop: CancellationToken,
    pub active: Arc<AtomicI64>,
    pub node: String,
}

struct ActiveGuard(Arc<AtomicI64>, String);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("ordo_sequencer_subscriptions", "node" => self.1.clone()).set(n as f64);
    }
}

impl Subscriptions {
    /// Checks the start point and starts streaming the member's events after `after`, with
    /// a heartbeat after every `heartbeat` without a message, until `expires_at`
    /// (microseconds since the epoch: the expiry of the token it was opened with). Then the
    /// stream ends with UNAUTHENTICATED, and the member subscribes again with a fresh token.
    /// A member disabled meanwhile has its stream ended with PERMISSION_DENIED.
    pub async fn start(
        &self,
        member: Arc<MemberRow>,
        after: i64,
        heartbeat: Option<Duration>,
        expires_at: i64,
    ) -> Result<EventStream, SequencerError> {
        if after < 0 {
            return Err(SequencerError::InvalidArgument(format!(
                "after_timestamp must not be negative, got {after}"
            )));
        }
        let lower = store::lower_bound(&self.pool).await?;
        if lower > 0 && after < lower {
            return Err(SequencerError::FailedPrecondition(format!(
                "events up to {lower} were pruned; resubscribe from at least {lower}"
            )));
        }
        let previous = if lower > 0 && after <= lower {
            // The member's last event before the start may be gone; the client resumes
            // from the last event it processed, which is `after` itself.
            after
        } else {
            store::latest_for_member(&self.pool, member.idx, after)
                .await?
                .unwrap_or(0)
        };
        let (tx, rx) = mpsc::channel(CHANNEL);
        let n = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("ordo_sequencer_subscriptions", "node" => self.node.clone()).set(n as f64);
        let guard = ActiveGuard(self.active.clone(), self.node.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let mut sub = Subscription {
                member,
                cursor: after,
                previous,
                tx,
                heartbeat,
                last_sent: Instant::now(),
            };
            let now = ordo_core::Clock::now(&ordo_core::SystemClock).micros();
            let left = Duration::from_micros(u64::try_from(expires_at - now).unwrap_or(0));
            let disabled = disabled(&this.registry, sub.member.member_id.clone());
            let ended = tokio::select! {
                ended = sub.run(&this) => ended,
                status = disabled => Err(status),
                () = tokio::time::sleep(left) => Err(Status::unauthenticated(format!(
                    "the token of {} expired: subscribe again with a fresh token after the last \
                     event received",
                    sub.member.member_id
                ))),
            };
            if let Err(status) = ended {
                let _ = sub.tx.send(Err(status)).await;
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// Resolves when `member` is disabled (seen at a reload of the registry): the status its
/// stream ends with.
async fn disabled(registry: &crate::registry::Registry, member: String) -> Status {
    let mut reloads = registry.reloads();
    loop {
        if reloads.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !registry.is_enabled(&member) {
            return Status::permission_denied(format!(
                "member {member} was disabled: its subscription ends"
            ));
        }
    }
}

struct Subscription {
    member: Arc<MemberRow>,
    /// Global timestamp scanned up to.
    cursor: i64,
    /// Timestamp of the last event delivered (or the chain's start).
    previous: i64,
    tx: mpsc::Sender<Result<pb::SequencedEvent, Status>>,
    /// Send a heartbeat after this long without a message; `None`: never.
    heartbeat: Option<Duration>,
    /// When the stream last got a message (or started).
    last_sent: Instant,
}

/// Why a subscription loop ended without an error to report.
struct Closed;

impl Subscription {
    async fn run(&mut self, subs: &Subscriptions) -> Result<(), Status> {
        let mut head = subs.tail.watch_head();
        loop {
            let upto = *head.borrow_and_update();
            if self.cursor >= upto {
                tokio::select! {
                    () = subs.stop.cancelled() => return Err(shutting_down()),
                    () = self.tx.closed() => return Ok(()),
                    changed = head.changed() => if changed.is_err() { return Err(shutting_down()) },
                    () = beat_due(self.heartbeat, self.last_sent) => self.beat(),
                }
                continue;
            }
            let idx = self.member.idx;
            let batch = subs.tail.scan(self.cursor, SCAN_LIMIT, |e| e.is_for(idx));
            let (events, new_cursor) = match batch {
                Some(b) => b,
                None => {
                    // A slow read from the table must not look like a frozen node.
                    let read = catch_up(subs, idx, self.cursor, upto);
                    tokio::pin!(read);
                    loop {
                        tokio::select! {
                            read = &mut read => break read.map_err(Status::from)?,
                            () = beat_due(self.heartbeat, self.last_sent) => self.beat(),
                        }
                    }
                }
            };
            for e in events {
                if self.deliver(subs, &e).await.is_err() {
                    // Either the client went away or the node is stopping; tell the
                    // latter so the client resubscribes elsewhere.
                    return if subs.stop.is_cancelled() {
                        Err(shutting_down())
                    } else {
                        Ok(())
                    };
                }
            }
            self.cursor = new_cursor;
        }
    }

    /// Sends a heartbeat saying that every event up to the cursor was sent. A full channel
    /// means the member has messages to read anyway, and a closed one ends the loop at its
    /// next wait: neither needs a heartbeat.
    fn beat(&mut self) {
        let _ = self.tx.try_send(Ok(convert::heartbeat_to_pb(self.cursor)));
        self.last_sent = Instant::now();
    }

    async fn deliver(&mut self, subs: &Subscriptions, e: &Event) -> Result<(), Closed> {
        let me = self.member.member_id.as_str();
        let envelopes = e
            .envelopes
            .iter()
            .filter(|env| {
                env.recipients
                    .as_ref()
                    .is_some_and(|r| r.broadcast || r.members.iter().any(|m| m == me))
            })
            .cloned()
            .collect();
        let event = pb::SequencedEvent {
            timestamp: e.ts,
            previous_timestamp: self.previous,
            sender: e.sender.clone(),
            message_id: e.message_id.clone(),
            envelopes,
            heartbeat: None,
        };
        tokio::select! {
            () = subs.stop.cancelled() => return Err(Closed),
            sent = self.tx.send(Ok(event)) => sent.map_err(|_| Closed)?,
        }
        self.previous = e.ts;
        self.last_sent = Instant::now();
        metrics::counter!("ordo_sequencer_events_delivered_total", "node" => subs.node.clone())
            .increment(1);
        Ok(())
    }
}

/// The member's events after `cursor` from the table, up to `upto` (committed).
async fn catch_up(
    subs: &Subscriptions,
    member: i32,
    cursor: i64,
    upto: i64,
) -> Result<(Vec<Arc<Event>>, i64), SequencerError> {
    let rows = store::read_for_member(&subs.pool, member, cursor, upto, CATCH_UP_LIMIT).await?;
    let full = rows.len() as i64 == CATCH_UP_LIMIT;
    let events: Vec<Arc<Event>> = rows
        .into_iter()
        .map(|r| Arc::new(Event::decode(r)))
        .collect();
    let cursor = match events.last() {
        Some(last) if full => last.ts,
        _ => upto,
    };
    Ok((events, cursor))
}

/// Resolves when a heartbeat is due: `interval` after `last_sent`; never without heartbeats.
async fn beat_due(interval: Option<Duration>, last_sent: Instant) {
    match interval {
        Some(interval) => tokio::time::sleep_until(last_sent + interval).await,
        None => std::future::pending().await,
    }
}

fn shutting_down() -> Status {
    Status::unavailable("sequencer node is shutting down: resubscribe on another node")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_only_when_asked_and_never_too_often() {
        assert_eq!(heartbeat_interval(0), None);
        assert_eq!(heartbeat_interval(1), Some(MIN_HEARTBEAT_INTERVAL));
        assert_eq!(heartbeat_interval(250), Some(Duration::from_millis(250)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_is_due_an_interval_after_the_last_message() {
        let last = Instant::now();
        let interval = Some(Duration::from_millis(250));
        beat_due(interval, last).await;
        assert_eq!(last.elapsed(), Duration::from_millis(250));
        let never = tokio::time::timeout(Duration::from_secs(3600), beat_due(None, last)).await;
        assert!(never.is_err(), "no heartbeats unless asked for");
    }
}
