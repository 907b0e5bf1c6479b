//! What the run measured: every command's outcome, counted once (`submitted` when a
//! command starts, one outcome when it ends), latency histograms (hdrhistogram) over the
//! whole run and per second of it, errors by kind, and the command ids by outcome for the
//! cross-check.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

use crate::route::Failure;

/// The kind of error a command that got no answer within `--timeout` counts under.
pub const TIMEOUT: &str = "TIMEOUT";
/// Latencies are recorded in microseconds, up to an hour.
const MAX_US: u64 = 3_600_000_000;

/// The command a slot turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Issue,
    Transfer,
    Propose,
    Accept,
}

/// What became of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Committed,
    Rejected(Failure),
    /// No answer in time; the kind says what was waited for.
    TimedOut(&'static str),
}

/// Counts per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub committed: u64,
    pub rejected: u64,
    pub timed_out: u64,
}

/// One second of the run (by when commands were answered).
#[derive(Default)]
struct Second {
    committed: u64,
    failed: u64,
    /// Committed latencies (µs); two significant digits are plenty for a chart.
    latency: Option<Histogram<u32>>,
}

/// A second of the timeline, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecondFigures {
    /// Seconds since the measurement started (this second ends then).
    pub second: u64,
    pub committed: u64,
    /// Rejected and timed out.
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The command ids by outcome, for the cross-check.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub committed: HashSet<String>,
    /// Rejected with a definite answer: must not be in any log.
    pub rejected: HashSet<String>,
    /// Timed out or failed without a definite answer: may be in a log.
    pub open: HashSet<String>,
}

struct Tally {
    submitted: u64,
    counts: Counts,
    by_op: BTreeMap<Op, Counts>,
    errors: BTreeMap<String, u64>,
    /// The first message seen of each kind of error.
    examples: BTreeMap<String, String>,
    latency: Histogram<u64>,
    /// Open loop: from due to sent (µs).
    waits: Histogram<u64>,
    timeline: Vec<Second>,
    ids: Ids,
    last_answer: Option<Instant>,
}

/// Collects outcomes from every client. Cheap enough to lock per command.
pub(crate) struct Recorder {
    /// When the measurement started ([`Recorder::begin`]); setup comes before.
    start: OnceLock<Instant>,
    tally: Mutex<Tally>,
}

/// What the progress bar shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Live {
    pub submitted: u64,
    pub answered: u64,
    pub committed: u64,
    pub failed: u64,
    /// Over the last whole second.
    pub rate: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Everything measured, once every client has stopped.
pub(crate) struct Totals {
    pub submitted: u64,
    pub counts: Counts,
    pub by_op: BTreeMap<Op, Counts>,
    pub errors: BTreeMap<String, u64>,
    pub examples: BTreeMap<String, String>,
    pub latency: Histogram<u64>,
    pub waits: Histogram<u64>,
    pub timeline: Vec<SecondFigures>,
    pub ids: Ids,
    /// From the start to the last answer.
    pub elapsed: Duration,
}

fn histogram<T: hdrhistogram::Counter>(digits: u8) -> Histogram<T> {
    Histogram::new_with_bounds(1, MAX_US, digits)
        .expect("hdrhistogram takes 1 µs to 1 h at 2 or 3 significant digits")
}

fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self {
            start: OnceLock::new(),
            tally: Mutex::new(Tally {
                submitted: 0,
                counts: Counts::default(),
                by_op: BTreeMap::new(),
                errors: BTreeMap::new(),
                examples: BTreeMap::new(),
                latency: histogram(3),
                waits: histogram(3),
                timeline: Vec::new(),
                ids: Ids::default(),
                last_answer: None,
            }),
        }
    }

    /// Starts the measurement now (once).
    pub(crate) fn begin(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// When the measurement started (now, if it has not).
    pub(crate) fn start(&self) -> Instant {
        self.begin()
    }

    /// A command started (sent, or due in an open loop); it owes one [`Recorder::answer`].
    pub(crate) fn submitted(&self) {
        self.tally.lock().submitted += 1;
    }

    /// An open loop's command was sent `waited` after it fell due.
    pub(crate) fn waited(&self, waited: Duration) {
        let us = waited.as_micros() as u64;
        self.tally
            .lock()
            .waits
            .saturating_record(us.clamp(1, MAX_US));
    }

    /// The outcome of a command that started at `started`.
    pub(crate) fn answer(&self, op: Op, command_id: String, started: Instant, outcome: Outcome) {
        let now = Instant::now();
        let latency_us = now.saturating_duration_since(started).as_micros() as u64;
        let second = now.saturating_duration_since(self.start()).as_secs() as usize;
        let mut t = self.tally.lock();
        t.last_answer = Some(now);
        if t.timeline.len() <= second {
            t.timeline.resize_with(second + 1, Second::default);
        }
        let per_op = t.by_op.entry(op).or_default();
        match outcome {
            Outcome::Committed => {
                per_op.committed += 1;
                t.counts.committed += 1;
                t.latency.saturating_record(latency_us.clamp(1, MAX_US));
                let s = &mut t.timeline[second];
                s.committed += 1;
                s.latency
                    .get_or_insert_with(|| histogram(2))
                    .saturating_record(latency_us.clamp(1, MAX_US));
                t.ids.committed.insert(command_id);
            }
            Outcome::Rejected(failure) => {
                per_op.rejected += 1;
                t.counts.rejected += 1;
                t.timeline[second].failed += 1;
                *t.errors.entry(failure.kind.clone()).or_default() += 1;
                t.examples.entry(failure.kind).or_insert(failure.message);
                if failure.definite {
                    t.ids.rejected.insert(command_id);
                } else {
                    t.ids.open.insert(command_id);
                }
            }
            Outcome::TimedOut(kind) => {
                per_op.timed_out += 1;
                t.counts.timed_out += 1;
                t.timeline[second].failed += 1;
                *t.errors.entry(kind.to_owned()).or_default() += 1;
                t.ids.open.insert(command_id);
            }
        }
    }

    pub(crate) fn live(&self) -> Live {
        let now = self.start().elapsed().as_secs() as usize;
        let t = self.tally.lock();
        let last = now.checked_sub(1).and_then(|s| t.timeline.get(s));
        let quantile = |q: f64| {
            last.and_then(|s| s.latency.as_ref())
                .map_or(0.0, |h| ms(h.value_at_quantile(q)))
        };
        let c = t.counts;
        Live {
            submitted: t.submitted,
            answered: c.committed + c.rejected + c.timed_out,
            committed: c.committed,
            failed: c.rejected + c.timed_out,
            rate: last.map_or(0, |s| s.committed),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }

    /// Everything measured.
    pub(crate) fn finish(self) -> Totals {
        let start = self.start();
        let t = self.tally.into_inner();
        let elapsed = t
            .last_answer
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(start));
        let timeline = t
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let q = |q: f64| {
                    s.latency
                        .as_ref()
                        .map_or(0.0, |h| ms(h.value_at_quantile(q)))
                };
                SecondFigures {
                    second: i as u64 + 1,
                    committed: s.committed,
                    failed: s.failed,
                    p50_ms: q(0.5),
                    p99_ms: q(0.99),
                }
            })
            .collect();
        Totals {
            submitted: t.submitted,
            counts: t.counts,
            by_op: t.by_op,
            errors: t.errors,
            examples: t.examples,
            latency: t.latency,
            waits: t.waits,
            timeline,
            ids: t.ids,
            elapsed,
        }
    }
}

impl Totals {
    /// The latency at quantile `q` of the committed commands, in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        ms(self.latency.value_at_quantile(q))
    }

    pub(crate) fn max_ms(&self) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        ms(self.latency.max())
    }

    /// How long an open loop's commands waited between due and sent: quantile `q`.
    pub(crate) fn wait_ms(&self, q: f64) -> f64 {
        if self.waits.is_empty() {
            return 0.0;
        }
        ms(self.waits.value_at_quantile(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: &str, definite: bool) -> Outcome {
        Outcome::Rejected(Failure {
            kind: kind.into(),
            message: format!("{kind} happened"),
            definite,
        })
    }

    #[test]
    fn every_outcome_is_counted_once_by_kind_and_op() {
        let r = Recorder::new();
        r.start
            .set(Instant::now() - Duration::from_secs(2))
            .unwrap();
        for _ in 0..5 {
            r.submitted();
        }
        let sent = Instant::now() - Duration::from_millis(20);
        r.answer(Op::Transfer, "a".into(), sent, Outcome::Committed);
        r.answer(Op::Transfer, "b".into(), sent, Outcome::Committed);
        r.answer(Op::Accept, "c".into(), sent, failure("ABORTED", true));
        r.answer(Op::Accept, "d".into(), sent, failure("UNAVAILABLE", false));
        r.answer(Op::Issue, "e".into(), sent, Outcome::TimedOut(TIMEOUT));
        let live = r.live();
        assert_eq!((live.submitted, live.answered, live.failed), (5, 5, 3));
        let t = r.finish();
        assert_eq!(t.submitted, 5);
        assert_eq!(
            t.counts,
            Counts {
                committed: 2,
                rejected: 2,
                timed_out: 1
            }
        );
        assert_eq!(t.by_op[&Op::Accept].rejected, 2);
        assert_eq!(t.errors["ABORTED"], 1);
        assert_eq!(t.errors[TIMEOUT], 1);
        assert_eq!(t.examples["UNAVAILABLE"], "UNAVAILABLE happened");
        assert!(t.ids.committed.contains("a") && t.ids.rejected.contains("c"));
        assert!(t.ids.open.contains("d") && t.ids.open.contains("e"));
        // Answered in the third second of the run, about 20 ms each.
        assert_eq!(t.timeline.len(), 3);
        assert_eq!((t.timeline[2].committed, t.timeline[2].failed), (2, 3));
        let p50 = t.quantile_ms(0.5);
        assert!((19.0..200.0).contains(&p50), "{p50}");
        assert!(t.elapsed >= Duration::from_secs(2));
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let t = Recorder::new().finish();
        assert_eq!((t.quantile_ms(0.99), t.max_ms()), (0.0, 0.0));
        assert!(t.timeline.is_empty());
        assert_eq!(t.elapsed, Duration::ZERO);
    }
}
