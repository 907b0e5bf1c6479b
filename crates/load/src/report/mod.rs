//! The final report: one [`Report`] (serialised as `--json`'s one object), printed as
//! text, or written as a self-contained HTML page ([`html`]).

pub mod html;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::crosscheck::CrossCheck;
use crate::error::LoadError;
use crate::options::{LoadOptions, Mix, Scenario, Via};
use crate::procfs::NodeUsage;
use crate::stats::{Counts, Op, SecondFigures, Totals};

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub run_id: String,
    pub scenario: Scenario,
    /// The weights of a `mix` run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mix: Option<Mix>,
    pub via: Via,
    /// `closed` (`--clients`) or `open` (`--rate`).
    #[serde(rename = "loop")]
    pub pacing: &'static str,
    pub clients: usize,
    /// The open loop's commands per second.
    pub rate: Option<f64>,
    /// From the first command to the last answer.
    pub seconds: f64,
    pub submitted: u64,
    pub committed: u64,
    pub rejected: u64,
    pub timed_out: u64,
    pub committed_per_sec: f64,
    /// Latency of the committed commands: from sending (closed loop) or from being due
    /// (open loop) to the answer.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Open loop: how long commands waited after falling due before they were sent (their
    /// client busy with an earlier one, or waiting for an Iou to show); included in the
    /// latency. A large wait means too few clients for the rate. 0 in a closed loop.
    pub wait_p99_ms: f64,
    pub wait_max_ms: f64,
    /// Rejected and timed-out commands by kind: a gRPC code (`ABORTED`), an HTTP status
    /// (`HTTP_409`), `TIMEOUT`, `IOU_NOT_VISIBLE`, `HTTP_TRANSPORT` or `BAD_ANSWER`.
    pub errors: BTreeMap<String, u64>,
    /// One message of each kind of rejection, as the ledger or gateway worded it.
    pub error_examples: BTreeMap<String, String>,
    /// Outcomes per command: issue, transfer, propose, accept.
    pub commands: BTreeMap<Op, Counts>,
    /// CPU and memory of the network's processes on this machine over the run.
    pub nodes: Vec<NodeUsage>,
    pub cross_check: CrossCheck,
    /// Per second of the run (the HTML report's charts; not in `--json`).
    #[serde(skip)]
    pub timeline: Vec<SecondFigures>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    /// The report of a finished run. Fails when its counts do not add up: every
    /// submitted command must have exactly one outcome.
    pub(crate) fn new(
        opts: &LoadOptions,
        totals: Totals,
        nodes: Vec<NodeUsage>,
        cross_check: CrossCheck,
    ) -> Result<Self, LoadError> {
        let c = totals.counts;
        let answered = c.committed + c.rejected + c.timed_out;
        if totals.submitted != answered {
            return Err(LoadError::Accounting(format!(
                "{} commands submitted but {answered} answered ({} committed, {} rejected, \
                 {} timed out)",
                totals.submitted, c.committed, c.rejected, c.timed_out
            )));
        }
        let errors_total: u64 = totals.errors.values().sum();
        if errors_total != c.rejected + c.timed_out {
            return Err(LoadError::Accounting(format!(
                "{errors_total} errors by kind for {} rejected and {} timed out",
                c.rejected, c.timed_out
            )));
        }
        let seconds = totals.elapsed.as_secs_f64();
        Ok(Self {
            run_id: opts.run_id.clone(),
            scenario: opts.scenario,
            mix: (opts.scenario == Scenario::Mix).then_some(opts.mix),
            via: opts.via,
            pacing: if opts.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            clients: opts.clients,
            rate: opts.rate,
            seconds: round2(seconds),
            submitted: totals.submitted,
            committed: c.committed,
            rejected: c.rejected,
            timed_out: c.timed_out,
            committed_per_sec: if seconds > 0.0 {
                round2(c.committed as f64 / seconds)
            } else {
                0.0
            },
            p50_ms: totals.quantile_ms(0.5),
            p90_ms: totals.quantile_ms(0.9),
            p99_ms: totals.quantile_ms(0.99),
            max_ms: totals.max_ms(),
            wait_p99_ms: totals.wait_ms(0.99),
            wait_max_ms: totals.wait_ms(1.0),
            errors: totals.errors,
            error_examples: totals.examples,
            commands: totals.by_op,
            nodes,
            cross_check,
            timeline: totals.timeline,
        })
    }

    /// A one-line title: what ran, how.
    pub fn title(&self) -> String {
        let pacing = match self.rate {
            Some(rate) => format!("open loop at {rate}/s over {} clients", self.clients),
            None => format!("{} clients, closed loop", self.clients),
        };
        format!(
            "ordo load: {} via {}, {pacing}, run {}",
            self.scenario, self.via, self.run_id
        )
    }

    /// The cross-check in words.
    pub fn cross_check_line(&self) -> String {
        let x = &self.cross_check;
        let late = if x.late > 0 {
            format!(" ({} of them committed after timing out)", x.late)
        } else {
            String::new()
        };
        format!(
            "{} committed, {} in the shards' update logs{late}: {}",
            x.committed,
            x.in_logs,
            if x.matches { "match" } else { "MISMATCH" }
        )
    }

    /// The report as text, for a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title());
        let line = |out: &mut String, label: &str, value: String| {
            let _ = writeln!(out, "  {label:<13} {value}");
        };
        line(&mut out, "seconds", format!("{:.2}", self.seconds));
        line(
            &mut out,
            "commands",
            format!(
                "{} submitted: {} committed, {} rejected, {} timed out",
                self.submitted, self.committed, self.rejected, self.timed_out
            ),
        );
        line(
            &mut out,
            "throughput",
            format!("{:.1} committed/s", self.committed_per_sec),
        );
        line(
            &mut out,
            "latency",
            format!(
                "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
            ),
        );
        if self.rate.is_some() {
            line(
                &mut out,
                "waited",
                format!(
                    "p99 {:.1} ms, max {:.1} ms from due to sent (included in the latency)",
                    self.wait_p99_ms, self.wait_max_ms
                ),
            );
        }
        let by_op: Vec<String> = self
            .commands
            .iter()
            .map(|(op, c)| {
                let name = serde_json::to_value(op).ok();
                let name = name.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
                format!("{name} {}", c.committed)
            })
            .collect();
        line(&mut out, "committed", by_op.join(", "));
        if self.errors.is_empty() {
            line(&mut out, "errors", "none".into());
        } else {
            for (i, (kind, n)) in self.errors.iter().enumerate() {
                let example = self
                    .error_examples
                    .get(kind)
                    .map(|m| format!(" (e.g. {})", shorten(m, 100)))
                    .unwrap_or_default();
                let label = if i == 0 { "errors" } else { "" };
                line(&mut out, label, format!("{kind} {n}{example}"));
            }
        }
        line(&mut out, "cross-check", self.cross_check_line());
        if !self.nodes.is_empty() {
            let _ = writeln!(out, "  {:<16} {:>7} {:>9}", "node", "cpu %", "rss MiB");
            for n in &self.nodes {
                let _ = writeln!(
                    out,
                    "  {:<16} {:>7.1} {:>9.1}",
                    n.name, n.cpu_percent, n.rss_mb
                );
            }
        }
        out
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}
