//! How the clients are paced ([`Pace`]). Closed loop: each client sends its next command
//! once the last is answered, the clients starting one after another over the ramp-up.
//! Open loop: commands fall due on a fixed schedule whatever the answers (the rate rising
//! linearly over the ramp-up) into one queue, and the next client that is ready (idle, and
//! holding the Ious its command needs) takes the oldest; a command that waits in the
//! queue counts that wait in its latency, so a slow ledger cannot hide behind its own
//! slowness (no coordinated omission).
//!
//! Both end when `--count` commands were taken or `--duration` is over; the commands in
//! flight are then answered (or time out), and the proposals still in inboxes accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Client;
use crate::options::LoadOptions;
use crate::progress::Bar;
use crate::stats::Recorder;

/// How often the progress bar is redrawn with fresh figures.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// When the open loop's command `k` (from 0) falls due after the start: the rate rises
/// linearly from 0 to `rate` over `ramp` (so `rate·ramp/2` commands fall in it), then
/// stays at `rate`.
pub(crate) fn due_offset(k: u64, rate: f64, ramp: Duration) -> Duration {
    let ramp = ramp.as_secs_f64();
    let k = k as f64;
    let in_ramp = rate * ramp / 2.0;
    let secs = if k < in_ramp {
        (2.0 * ramp * k / rate).sqrt()
    } else {
        ramp + (k - in_ramp) / rate
    };
    Duration::from_secs_f64(secs)
}

/// Commands left to send under `--count` (unlimited without it).
pub(crate) struct Slots(Option<AtomicU64>);

impl Slots {
    fn claim(&self) -> bool {
        match &self.0 {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    fn exhausted(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|left| left.load(Ordering::SeqCst) == 0)
    }
}

/// A command a client may send now; in an open loop, with the time it fell due.
pub(crate) struct Slot(pub Option<Instant>);

/// The open loop's commands that fell due and that no client has taken yet.
pub(crate) struct Queue {
    due: tokio::sync::Mutex<mpsc::UnboundedReceiver<Instant>>,
    /// Fallen due and not taken.
    waiting: AtomicU64,
    /// The schedule has ended.
    scheduled: AtomicBool,
}

/// How the clients take their commands.
pub(crate) enum Pace {
    /// Each client sends its next command once the last is answered, until `--count`
    /// commands were taken or `stop`.
    Closed { slots: Slots, stop: Option<Instant> },
    /// Commands fall due on the schedule; a client that is ready takes the oldest.
    Open(Queue),
}

impl Pace {
    /// The next command, or `None` once the run is over.
    pub(crate) async fn take(&self) -> Option<Slot> {
        match self {
            Pace::Closed { slots, stop } => {
                let stopped = stop.is_some_and(|s| Instant::now() >= s);
                (!stopped && slots.claim()).then_some(Slot(None))
            }
            Pace::Open(queue) => {
                let due = queue.due.lock().await.recv().await?;
                queue.waiting.fetch_sub(1, Ordering::SeqCst);
                Some(Slot(Some(due)))
            }
        }
    }

    /// Whether no command is left to take (nor will be).
    pub(crate) fn over(&self) -> bool {
        match self {
            Pace::Closed { slots, stop } => {
                slots.exhausted() || stop.is_some_and(|s| Instant::now() >= s)
            }
            Pace::Open(queue) => {
                queue.scheduled.load(Ordering::SeqCst) && queue.waiting.load(Ordering::SeqCst) == 0
            }
        }
    }

    /// The closed loop's end: a command not sent by then is dropped.
    pub(crate) fn stop(&self) -> Option<Instant> {
        match self {
            Pace::Closed { stop, .. } => *stop,
            Pace::Open(_) => None,
        }
    }
}

/// Runs the clients until the run ends, redrawing the progress bar meanwhile.
pub(crate) async fn drive(
    clients: Vec<Client>,
    opts: &LoadOptions,
    recorder: &Arc<Recorder>,
    bar: &Bar,
) {
    let start = recorder.start();
    let stop = opts.stop.duration.map(|d| start + d);
    let (due_tx, due_rx) = mpsc::unbounded_channel();
    let pace = Arc::new(match opts.rate {
        None => Pace::Closed {
            slots: Slots(opts.stop.count.map(AtomicU64::new)),
            stop,
        },
        Some(_) => Pace::Open(Queue {
            due: tokio::sync::Mutex::new(due_rx),
            waiting: AtomicU64::new(0),
            scheduled: AtomicBool::new(false),
        }),
    });
    let mut tasks = Vec::new();
    if let Some(rate) = opts.rate {
        let schedule = Schedule {
            rate,
            ramp: opts.ramp_up,
            count: opts.stop.count,
            start,
            stop,
        };
        tasks.push(tokio::spawn(schedule.run(
            due_tx,
            pace.clone(),
            recorder.clone(),
        )));
    }
    let n = clients.len().max(1) as u32;
    for mut c in clients {
        // Closed loop: the clients start one after another over the ramp-up.
        let begin = match opts.rate {
            None => start + opts.ramp_up * c.index as u32 / n,
            Some(_) => start,
        };
        let pace = pace.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(begin).await;
            c.run(&pace).await;
            c.shared.running.fetch_sub(1, Ordering::SeqCst);
            c.drain().await;
        }));
    }
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            results = &mut all => {
                for r in results {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "a client task failed");
                    }
                }
                break;
            }
            _ = ticks.tick() => bar.update(&recorder.live(), start.elapsed()),
        }
    }
    bar.update(&recorder.live(), start.elapsed());
}

/// The open loop's schedule.
struct Schedule {
    rate: f64,
    ramp: Duration,
    count: Option<u64>,
    start: Instant,
    stop: Option<Instant>,
}

impl Schedule {
    /// Hands each command to the queue when it falls due, counting it submitted then, so
    /// that one still waiting for a client is accounted for.
    async fn run(
        self,
        due: mpsc::UnboundedSender<Instant>,
        pace: Arc<Pace>,
        recorder: Arc<Recorder>,
    ) {
        let Pace::Open(queue) = &*pace else { return };
        for k in 0u64.. {
            if self.count.is_some_and(|n| k >= n) {
                break;
            }
            let at = self.start + due_offset(k, self.rate, self.ramp);
            if self.stop.is_some_and(|s| at >= s) {
                break;
            }
            tokio::time::sleep_until(at).await;
            recorder.submitted();
            queue.waiting.fetch_add(1, Ordering::SeqCst);
            if due.send(at).is_err() {
                tracing::error!("the open loop's queue closed before the schedule ended");
                break;
            }
        }
        queue.scheduled.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_ramps_up_then_keeps_the_rate() {
        let ms = |k| due_offset(k, 100.0, Duration::ZERO).as_millis();
        assert_eq!((ms(0), ms(1), ms(250)), (0, 10, 2500));
        // 2 s of ramp to 100/s: 100 commands in the ramp, the 100th at 2 s.
        let ramp = Duration::from_secs(2);
        let at = |k| due_offset(k, 100.0, ramp).as_secs_f64();
        assert!((at(100) - 2.0).abs() < 1e-9);
        assert!((at(25) - 1.0).abs() < 1e-9, "{}", at(25));
        assert!((at(200) - 3.0).abs() < 1e-9);
        // Never earlier for a later command.
        assert!((1..500).all(|k| at(k) > at(k - 1)));
    }

    #[test]
    fn slots_run_out_at_the_count() {
        let limited = Slots(Some(AtomicU64::new(2)));
        assert_eq!(
            (0..4).map(|_| limited.claim()).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert!(Slots(None).claim());
    }
}
