//! `ordo-bench ledger`: the whole ledger under `ordo load`, against what its storage and
//! its sequencer alone can carry, measured in the same run on the same Postgres.
//!
//! A network from `ordo up` (durable Postgres, two sequencers, two replicas of each shard,
//! of the mediator and of the topology manager) is loaded `--runs` times by the engine of
//! `ordo load` (`ordo_load::run`: independent clients, each with its own party, token and
//! connection, and a cross-check against the shards' update logs). Then, on the same
//! cluster, two baselines:
//!
//! - **raw rows** ([`rows`]): the rows one committed transaction leaves in the nodes'
//!   databases, written with multi-row INSERTs into copies of the nodes' own tables (their
//!   migrations, indexes included) in a scratch database, in batches of `--clients`
//!   transactions by `--clients` concurrent writers: the transactions per second the
//!   storage could commit if nothing but the outcome were written;
//! - **sequencer** ([`sends`]): events per second the network's own sequencers take from
//!   `--clients` members of the benchmark's, each keeping many sends in flight, with the
//!   contents of the run's own events.
//!
//! The ratios say how close the ledger comes to either: `ratio_to_raw_rows` is committed
//! transactions per second over raw ones, `ratio_to_sequencer_events` is the events per
//! second the ledger's transactions made (`events_per_transaction` each) over the events
//! per second the sequencers take.

mod rows;
mod sends;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ordo_ledger_client::Network;
use ordo_load::{CrossCheck, LoadArgs, Progress, Scenario, Via};
use ordo_testkit::wait_for;
use serde::Serialize;

use crate::harness::Net;

#[derive(clap::Args)]
pub struct Args {
    /// What each command is: a cross-shard transfer of an Iou, or an issue of one (the
    /// scenarios of `ordo load`).
    #[arg(long, value_enum, default_value_t = Workload::Transfer)]
    scenario: Workload,
    /// Simulated clients (a closed loop without `--rate`; default 16). Also the raw
    /// baseline's writers and batch size, and the sequencer baseline's senders.
    #[arg(long)]
    clients: Option<usize>,
    /// An open loop: commands per second in all (`ordo load --rate`).
    #[arg(long)]
    rate: Option<f64>,
    /// Length of each load run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Through the shards' Ledger API (gRPC) or the JSON API gateway (HTTP).
    #[arg(long, value_enum, default_value_t = Via::Grpc)]
    via: Via,
    /// Load runs on the one network; the report gives each and their median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Length of each baseline (raw rows, then sequencer sends).
    #[arg(long, default_value_t = 5)]
    baseline_seconds: u64,
    /// The `ordo` binary (default: next to this one; `cargo build --release -p ordo-cli`).
    #[arg(long)]
    ordo: Option<PathBuf>,
    /// One line of JSON.
    #[arg(long)]
    pub json: bool,
}

/// The scenarios whose rows the baseline knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Transfer,
    Issue,
}

impl Workload {
    fn scenario(self) -> Scenario {
        match self {
            Workload::Transfer => Scenario::Transfer,
            Workload::Issue => Scenario::Issue,
        }
    }
}

/// Clients when neither `--clients` nor `--rate` is given.
const DEFAULT_CLIENTS: usize = 16;

#[derive(Serialize)]
pub struct Report {
    scenario: Workload,
    via: Via,
    clients: usize,
    rate: Option<f64>,
    /// `--seconds` of each run.
    seconds: u64,
    runs: Vec<RunFigures>,
    /// The median of each figure over the runs (each taken separately).
    median: Median,
    /// Every run's cross-check matched the shards' update logs.
    all_matched: bool,
    baseline: Baseline,
    /// Sequenced events per committed transaction: the request (views and informee tree
    /// in one submission), one response per confirming participant, the verdict.
    events_per_transaction: f64,
    /// The median committed transactions/s over the raw baseline's transactions/s.
    ratio_to_raw_rows: f64,
    /// The events/s the median run made (committed/s × `events_per_transaction`) over the
    /// events/s the sequencers take.
    ratio_to_sequencer_events: f64,
    /// The cluster's durability settings (both on: every commit waits for its WAL flush).
    fsync: String,
    synchronous_commit: String,
}

/// One load run: the figures of `ordo load`'s report.
#[derive(Serialize)]
struct RunFigures {
    run_id: String,
    seconds: f64,
    submitted: u64,
    committed: u64,
    rejected: u64,
    timed_out: u64,
    committed_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: BTreeMap<String, u64>,
    cross_check: CrossCheck,
    /// CPU of each process over the run (100 = one core busy).
    cpu_percent: BTreeMap<String, f64>,
}

#[derive(Serialize)]
struct Median {
    committed_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Baseline {
    raw_rows: rows::Figures,
    sequencer: sends::Figures,
}

pub async fn run(args: Args) -> Result<Report> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.seconds >= 1, "--seconds must be at least 1");
    ensure!(
        args.baseline_seconds >= 1,
        "--baseline-seconds must be at least 1"
    );
    // Bad load options fail here, before a network is started.
    let clients = load_options(&args)?.clients;
    let ordo = crate::ordo_binary(args.ordo.clone())?;
    let mut net = Net::start(&ordo).await?;
    let outcome = measure(&net, &args, clients).await;
    // As Ctrl-C would: the nodes, then the private Postgres.
    if !net.stop(Duration::from_secs(60)) {
        eprintln!(
            "ordo up did not stop within 60 s; its log:\n{}",
            net.up_log()
        );
    }
    outcome
}

/// One line on what an `ordo load` run did.
pub(crate) fn summary(report: &ordo_load::Report) -> String {
    format!(
        "{:.1} committed/s, {} submitted, {} committed, {} rejected, {} timed out, p50 {:.1} \
         ms, p99 {:.1} ms, cross-check {}",
        report.committed_per_sec,
        report.submitted,
        report.committed,
        report.rejected,
        report.timed_out,
        report.p50_ms,
        report.p99_ms,
        if report.cross_check.matches {
            "matched"
        } else {
            "MISMATCHED"
        }
    )
}

/// `ordo load`'s options for one run (each run gets a fresh run id).
fn load_options(args: &Args) -> Result<ordo_load::LoadOptions> {
    let clients = match (args.clients, args.rate) {
        (None, None) => Some(DEFAULT_CLIENTS),
        (c, _) => c,
    };
    quiet_load(
        args.scenario.scenario(),
        args.via,
        clients,
        args.rate,
        Duration::from_secs(args.seconds),
    )
}

/// The options of a quiet `ordo load` run of `duration` as the benchmarks drive it: no
/// ramp-up, 4 Ious per client, a 30 s command timeout.
pub(crate) fn quiet_load(
    scenario: Scenario,
    via: Via,
    clients: Option<usize>,
    rate: Option<f64>,
    duration: Duration,
) -> Result<ordo_load::LoadOptions> {
    let load = LoadArgs {
        network: PathBuf::new(),
        scenario,
        mix: None,
        via,
        clients,
        rate,
        duration: Some(duration),
        count: None,
        ramp_up: Duration::ZERO,
        timeout: Duration::from_secs(30),
        ious: 4,
        run_id: None,
        json: false,
        quiet: true,
        report: None,
    };
    Ok(load.options()?)
}

async fn measure(net: &Net, args: &Args, clients: usize) -> Result<Report> {
    let network = network_for(net, args.via).await?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let opts = load_options(args)?;
        let report = ordo_load::run(&network, &opts, Progress::Hidden)
            .await
            .with_context(|| format!("load run {i}"))?;
        eprintln!("run {i}: {}", summary(&report));
        runs.push(RunFigures::of(report));
    }
    let median = Median {
        committed_per_sec: median(runs.iter().map(|r| r.committed_per_sec)),
        p50_ms: median(runs.iter().map(|r| r.p50_ms)),
        p90_ms: median(runs.iter().map(|r| r.p90_ms)),
        p99_ms: median(runs.iter().map(|r| r.p99_ms)),
        max_ms: median(runs.iter().map(|r| r.max_ms)),
    };

    let databases = rows::Databases {
        server: network.postgres.url.clone(),
        shards: [database_of(net, "shard-1")?, database_of(net, "shard-2")?],
        sequencer: network.postgres.url.clone(),
    };
    let window = Duration::from_secs(args.baseline_seconds);
    let shape = rows::Shape::of(args.scenario);
    let templates = rows::Templates::sample(&databases).await?;
    let raw = rows::measure(&databases, &shape, &templates, clients, window).await?;
    eprintln!(
        "raw rows: {:.0} transactions/s ({:.0} rows/s)",
        raw.transactions_per_sec, raw.rows_per_sec
    );
    let sequencer = sends::measure(&network, &templates.events, clients, window).await?;
    eprintln!(
        "sequencer: {:.0} events/s ({} failed sends)",
        sequencer.events_per_sec, sequencer.failed
    );
    let (fsync, synchronous_commit) = rows::durability(&databases.server).await?;

    let events_per_transaction = shape.events_per_transaction();
    Ok(Report {
        scenario: args.scenario,
        via: args.via,
        clients,
        rate: args.rate,
        seconds: args.seconds,
        all_matched: runs.iter().all(|r| r.cross_check.matches),
        ratio_to_raw_rows: ratio(median.committed_per_sec, raw.transactions_per_sec),
        ratio_to_sequencer_events: ratio(
            median.committed_per_sec * events_per_transaction,
            sequencer.events_per_sec,
        ),
        events_per_transaction,
        runs,
        median,
        baseline: Baseline {
            raw_rows: raw,
            sequencer,
        },
        fsync,
        synchronous_commit,
    })
}

/// The network as the load needs it: through the gateway, once network.json lists it
/// (`ordo up` lists it after the ledger nodes, once its `/readyz` answers).
async fn network_for(net: &Net, via: Via) -> Result<Network> {
    if via == Via::Grpc {
        return Ok(net.network.clone());
    }
    let file = net.network.path.clone();
    wait_for(
        "network.json to list the gateway",
        Duration::from_secs(120),
        || async { Network::load(&file).ok().filter(|n| !n.gateways.is_empty()) },
    )
    .await
}

/// The database URL of `service`'s first replica (replicas share their database).
fn database_of(net: &Net, service: &str) -> Result<String> {
    let replica = net
        .replicas(service)
        .into_iter()
        .next()
        .with_context(|| format!("network.json lists no replica of {service}"))?;
    net.database_url(&replica)
}

impl RunFigures {
    fn of(r: ordo_load::Report) -> Self {
        Self {
            run_id: r.run_id,
            seconds: r.seconds,
            submitted: r.submitted,
            committed: r.committed,
            rejected: r.rejected,
            timed_out: r.timed_out,
            committed_per_sec: r.committed_per_sec,
            p50_ms: r.p50_ms,
            p90_ms: r.p90_ms,
            p99_ms: r.p99_ms,
            max_ms: r.max_ms,
            errors: r.errors,
            cross_check: r.cross_check,
            cpu_percent: r
                .nodes
                .into_iter()
                .map(|n| (n.name, n.cpu_percent))
                .collect(),
        }
    }
}

/// The median (the mean of the middle two of an even count), to two decimals; 0 when
/// empty.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let m = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    (m * 100.0).round() / 100.0
}

/// `a / b` to three decimals; 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
        assert_eq!(median([44.67, 46.79].into_iter()), 45.73);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn ratio_rounds_and_survives_zero() {
        assert_eq!(ratio(1.0, 3.0), 0.333);
        assert_eq!(ratio(5.0, 0.0), 0.0);
    }
}
