//! The node's one tail reader: it follows the total order in the `events` table, decodes
//! each event once and keeps the most recent ones in memory for the node's subscriptions.
//! Woken by local commits, by `NOTIFY ordo_sequencer_events` from other nodes, after the
//! listener reconnects, and by a slow safety tick — never by busy polling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ordo_core::{Clock, SystemClock};
use ordo_proto::sequencer::v1 as pb;
use parking_lot::RwLock;
use prost::Message;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::store::{self, EventRow};

const READ_LIMIT: i64 = 1000;
/// What an event costs in memory beyond its payload, ids and recipients.
const EVENT_OVERHEAD: usize = 160;
const SAFETY_TICK: Duration = Duration::from_secs(1);

/// A sequenced event, decoded once for every subscription on this node.
#[derive(Debug)]
pub struct Event {
    pub ts: i64,
    pub sender: String,
    pub message_id: String,
    pub recipients: Vec<i32>,
    pub broadcast: bool,
    pub envelopes: Vec<pb::Envelope>,
    /// About what the event holds in memory, for the buffer's byte bound.
    pub bytes: usize,
}

impl Event {
    pub fn decode(row: EventRow) -> Self {
        let bytes = EVENT_OVERHEAD
            + row.payload.len()
            + row.message_id.len()
            + row.recipients.len() * std::mem::size_of::<i32>();
        // The payload was encoded by this crate's writer; a row that does not decode is a
        // bug or corruption, delivered with no envelopes rather than stalling every reader.
        let sub = pb::SubmissionRequest::decode(row.payload.as_slice()).unwrap_or_else(|e| {
            tracing::error!(ts = row.ts, error = %e, "undecodable event payload");
            pb::SubmissionRequest::default()
        });
        Self {
            ts: row.ts,
            sender: sub.sender,
            message_id: row.message_id,
            recipients: row.recipients,
            broadcast: row.broadcast,
            envelopes: sub.envelopes,
            bytes,
        }
    }

    pub fn is_for(&self, idx: i32) -> bool {
        self.broadcast || self.recipients.contains(&idx)
    }
}

/// The payload stored for a submission: its sender and envelopes.
pub fn encode_payload(sender: &str, envelopes: Vec<pb::Envelope>) -> Vec<u8> {
    pb::SubmissionRequest {
        sender: sender.to_owned(),
        envelopes,
        ..Default::default()
    }
    .encode_to_vec()
}

struct Buffer {
    /// Every event with `from < ts <= head` is in `events`.
    from: i64,
    events: VecDeque<Arc<Event>>,
    /// The sum of the events' `bytes`.
    bytes: usize,
}

pub struct Tail {
    buffer: RwLock<Buffer>,
    /// Most events, and most bytes, kept: the older ones are read from the table.
    capacity: usize,
    capacity_bytes: usize,
    head: watch::Sender<i64>,
    /// Notified by the local writer and the listener: there may be new events.
    pub wake: Notify,
    /// `database clock - local clock`, in microseconds, refreshed every safety tick.
    pub clock_offset: AtomicI64,
}

impl Tail {
    /// A tail that starts at the committed head `head`.
    pub fn new(head: i64, capacity: usize, capacity_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            buffer: RwLock::new(Buffer {
                from: head,
                events: VecDeque::new(),
                bytes: 0,
            }),
            capacity,
            capacity_bytes,
            head: watch::Sender::new(head),
            wake: Notify::new(),
            clock_offset: AtomicI64::new(0),
        })
    }

    /// The last timestamp read: everything at or below it is committed and visible.
    pub fn head(&self) -> i64 {
        *self.head.borrow()
    }

    pub fn watch_head(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// An estimate of the database clock.
    pub fn db_now(&self) -> i64 {
        SystemClock.now().micros() + self.clock_offset.load(Ordering::Relaxed)
    }

    /// When the buffer covers `cursor`: the buffered events after it for which `want`
    /// holds (scanning at most `max`), and the new cursor.
    pub fn scan(
        &self,
        cursor: i64,
        max: usize,
        want: impl Fn(&Event) -> bool,
    ) -> Option<(Vec<Arc<Event>>, i64)> {
        let buf = self.buffer.read();
        if cursor < buf.from {
            return None;
        }
        let start = buf.events.partition_point(|e| e.ts <= cursor);
        let mut new_cursor = cursor;
        let mut out = Vec::new();
        for e in buf.events.range(start..).take(max) {
            new_cursor = e.ts;
            if want(e) {
                out.push(e.clone());
            }
        }
        Some((out, new_cursor))
    }

    fn append(&self, events: Vec<Arc<Event>>) {
        let Some(last) = events.last().map(|e| e.ts) else {
            return;
        };
        {
            let mut buf = self.buffer.write();
            buf.bytes += events.iter().map(|e| e.bytes).sum::<usize>();
            buf.events.extend(events);
            while buf.events.len() > self.capacity || buf.bytes > self.capacity_bytes {
                let Some(e) = buf.events.pop_front() else {
                    break;
                };
                buf.from = e.ts;
                buf.bytes -= e.bytes;
            }
            metrics::gauge!("ordo_sequencer_tail_buffer_bytes").set(buf.bytes as f64);
        }
        // Publish the head only after the events are in the buffer.
        self.head.send_replace(last);
    }
}

/// Reads the order until `stop`; `healthy` reports whether the last read worked.
pub async fn run_reader(
    tail: Arc<Tail>,
    pool: PgPool,
    stop: CancellationToken,
    healthy: watch::Sender<bool>,
    node: String,
) {
    let mut cursor = tail.head();
    let mut ticker = tokio::time::interval(SAFETY_TICK);
    loop {
        match read_available(&tail, &pool, &mut cursor, &node).await {
            Ok(()) => healthy.send_if_modified(|h| !std::mem::replace(h, true)),
            Err(e) => {
                tracing::warn!(error = %e, "tail reader cannot read events");
                healthy.send_if_modified(|h| std::mem::replace(h, false))
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tail.wake.notified() => {}
            _ = ticker.tick() => refresh_clock(&tail, &pool).await,
        }
    }
}

async fn read_available(
    tail: &Tail,
    pool: &PgPool,
    cursor: &mut i64,
    node: &str,
) -> Result<(), crate::SequencerError> {
    loop {
        let rows = store::read_after(pool, *cursor, READ_LIMIT).await?;
        let n = rows.len();
        let events: Vec<Arc<Event>> = rows
            .into_iter()
            .map(|r| Arc::new(Event::decode(r)))
            .collect();
        if let Some(last) = events.last() {
            *cursor = last.ts;
            let lag = (tail.db_now() - last.ts).max(0) as f64 / 1e6;
            metrics::gauge!("ordo_sequencer_tail_lag_seconds", "node" => node.to_owned()).set(lag);
            crate::metrics::head(node, last.ts);
        }
        tail.append(events);
        if n < READ_LIMIT as usize {
            return Ok(());
        }
    }
}

async fn refresh_clock(tail: &Tail, pool: &PgPool) {
    let before = SystemClock.now().micros();
    if let Ok((_, db_now)) = store::time(pool).await {
        let after = SystemClock.now().micros();
        tail.clock_offset
            .store(db_now - (before + after) / 2, Ordering::Relaxed);
    }
}

/// Listens for other nodes' commits and member changes. After a reconnect it wakes the
/// tail and reloads members, since notifications sent meanwhile are lost.
pub async fn run_listener(
    tail: Arc<Tail>,
    registry: Arc<Registry>,
    pool: PgPool,
    stop: CancellationToken,
) {
    let mut members_tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen_all([store::EVENTS_CHANNEL, store::MEMBERS_CHANNEL])
                .await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            () = stop.cancelled() => return,
            l = listener => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for sequencer events; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        // (Re)connected: catch up on anything missed while not listening.
        tail.wake.notify_one();
        let _ = registry.refresh().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = members_tick.tick() => { let _ = registry.refresh().await; }
                n = listener.try_recv() => match n {
                    Ok(Some(n)) if n.channel() == store::MEMBERS_CHANNEL => {
                        let _ = registry.refresh().await;
                    }
                    Ok(Some(_)) => tail.wake.notify_one(),
                    Ok(None) => {
                        tail.wake.notify_one();
                        let _ = registry.refresh().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, bytes: usize) -> Arc<Event> {
        Arc::new(Event {
            ts,
            sender: "s".into(),
            message_id: format!("m{ts}"),
            recipients: vec![1],
            broadcast: false,
            envelopes: vec![],
            bytes,
        })
    }

    #[test]
    fn the_buffer_is_bounded_in_events_and_in_bytes() {
        let tail = Tail::new(0, 3, 1000);
        tail.append((1..=5).map(|ts| event(ts, 10)).collect());
        let (kept, cursor) = tail.scan(2, 100, |_| true).expect("covers 2");
        assert_eq!(kept.iter().map(|e| e.ts).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(cursor, 5);
        assert!(tail.scan(1, 100, |_| true).is_none(), "event 2 was dropped");

        // Big events: the byte bound keeps two of them.
        tail.append((6..=8).map(|ts| event(ts, 400)).collect());
        assert!(tail.scan(5, 100, |_| true).is_none());
        let (kept, _) = tail.scan(6, 100, |_| true).expect("covers 6");
        assert_eq!(kept.iter().map(|e| e.ts).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(tail.buffer.read().bytes, 800);
        assert_eq!(tail.head(), 8);
    }
}
