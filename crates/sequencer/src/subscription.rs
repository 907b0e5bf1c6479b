//! One member's subscription: it delivers the member's events after a cursor, from the tail
//! buffer when that covers the cursor, else from the table, never past the tail's head
//! (so it only ever sees a committed prefix of the order).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ordo_proto::sequencer::v1 as pb;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::SequencerError;
use crate::store::{self, MemberRow};
use crate::tail::{Event, Tail};

const CATCH_UP_LIMIT: i64 = 1000;
const SCAN_LIMIT: usize = 4096;
const CHANNEL: usize = 256;

pub type EventStream = tokio_stream::wrappers::ReceiverStream<Result<pb::SequencedEvent, Status>>;

/// What every subscription on a node shares.
#[derive(Clone)]
pub struct Subscriptions {
    pub pool: PgPool,
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
    /// Checks the start point and starts streaming the member's events after `after`.
    pub async fn start(
        &self,
        member: Arc<MemberRow>,
        after: i64,
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
            };
            if let Err(status) = sub.run(&this).await {
                let _ = sub.tx.send(Err(status)).await;
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

struct Subscription {
    member: Arc<MemberRow>,
    /// Global timestamp scanned up to.
    cursor: i64,
    /// Timestamp of the last event delivered (or the chain's start).
    previous: i64,
    tx: mpsc::Sender<Result<pb::SequencedEvent, Status>>,
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
                }
                continue;
            }
            let idx = self.member.idx;
            let batch = subs.tail.scan(self.cursor, SCAN_LIMIT, |e| e.is_for(idx));
            let (events, new_cursor) = match batch {
                Some(b) => b,
                None => self.catch_up(subs, upto).await.map_err(Status::from)?,
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

    /// The member's events after the cursor from the table, up to `upto` (committed).
    async fn catch_up(
        &self,
        subs: &Subscriptions,
        upto: i64,
    ) -> Result<(Vec<Arc<Event>>, i64), SequencerError> {
        let rows = store::read_for_member(
            &subs.pool,
            self.member.idx,
            self.cursor,
            upto,
            CATCH_UP_LIMIT,
        )
        .await?;
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
        };
        tokio::select! {
            () = subs.stop.cancelled() => return Err(Closed),
            sent = self.tx.send(Ok(event)) => sent.map_err(|_| Closed)?,
        }
        self.previous = e.ts;
        metrics::counter!("ordo_sequencer_events_delivered_total", "node" => subs.node.clone())
            .increment(1);
        Ok(())
    }
}

fn shutting_down() -> Status {
    Status::unavailable("sequencer node is shutting down: resubscribe on another node")
}
