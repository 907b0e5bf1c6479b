//! Failover time: a network from `ordo up` (two replicas per active-passive service), the
//! active replica of a service SIGKILLed, and the time until the first commit through its
//! successor — a cross-shard transfer for a participant shard or the mediator, a party
//! allocation (a topology transaction) for the topology manager. Each run restarts the
//! killed replica (it comes back passive) before the next.
//!
//! With `--load-clients N`, each kill happens under a cross-shard transfer load
//! (`ordo load`'s engine, N closed-loop clients over the Ledger API) that runs from
//! [`LOAD_BEFORE`] before the kill to [`LOAD_WINDOW`] in all; each run reports what the
//! load committed, rejected and timed out, and whether the shards' update logs hold exactly
//! what it counted as committed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::harness::{Ledger, Net, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// Kills per service.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The services whose active replica is killed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "shard-1,mediator,topology"
    )]
    services: Vec<String>,
    /// The `ordo` binary (default: next to this one; `cargo build --release -p ordo-cli`).
    #[arg(long)]
    ordo: Option<PathBuf>,
    /// Closed-loop transfer clients running through each kill (0: a quiet network).
    #[arg(long, default_value_t = 0)]
    load_clients: usize,
    /// One line of JSON.
    #[arg(long)]
    pub json: bool,
}

/// How long the load runs before the kill, and in all.
const LOAD_BEFORE: Duration = Duration::from_secs(4);
const LOAD_WINDOW: Duration = Duration::from_secs(16);

#[derive(Serialize)]
pub struct Report {
    /// Per service: milliseconds from SIGKILL to the first commit through the successor.
    services: Vec<ServiceReport>,
    /// The lease settings of the replicas (`ordo up`'s defaults).
    lease: String,
}

#[derive(Serialize)]
struct ServiceReport {
    service: String,
    runs_ms: Vec<u64>,
    median_ms: u64,
    min_ms: u64,
    max_ms: u64,
    /// Per run, the load around the kill (with `--load-clients`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    load: Vec<LoadRun>,
}

/// What the load around one kill did.
#[derive(Serialize)]
struct LoadRun {
    committed_per_sec: f64,
    submitted: u64,
    committed: u64,
    rejected: u64,
    timed_out: u64,
    p99_ms: f64,
    max_ms: f64,
    /// Errors by kind (rejections and time-outs).
    errors: std::collections::BTreeMap<String, u64>,
    /// The shards' update logs hold exactly the commits the load counted.
    cross_check_matches: bool,
}

impl LoadRun {
    fn of(r: ordo_load::Report) -> Self {
        Self {
            committed_per_sec: r.committed_per_sec,
            submitted: r.submitted,
            committed: r.committed,
            rejected: r.rejected,
            timed_out: r.timed_out,
            p99_ms: r.p99_ms,
            max_ms: r.max_ms,
            errors: r.errors,
            cross_check_matches: r.cross_check.matches,
        }
    }
}

/// `ordo load`'s options for the load around one kill.
fn load_options(clients: usize) -> Result<ordo_load::LoadOptions> {
    crate::ledger::quiet_load(
        ordo_load::Scenario::Transfer,
        ordo_load::Via::Grpc,
        Some(clients),
        None,
        LOAD_WINDOW,
    )
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: Args) -> Result<Report> {
    let ordo = crate::ordo_binary(args.ordo)?;
    // The lease settings `ordo up` gives its replicas: the defaults.
    let lease = ordo_lease::ReplicaConfig::default();
    let mut net = Net::start(&ordo).await?;
    let ledger = Arc::new(Ledger::setup(&net.network, 1).await?);
    let mut services = Vec::new();
    for service in &args.services {
        let mut runs_ms = Vec::new();
        let mut loads = Vec::new();
        for run in 0..args.runs {
            // The probe commits before the kill.
            probe(&net, &ledger, service, run).await?;
            let (ms, victim) = if args.load_clients > 0 {
                let opts = load_options(args.load_clients)?;
                let network = net.network.clone();
                let (report, killed) = tokio::join!(
                    ordo_load::run(&network, &opts, ordo_load::Progress::Hidden),
                    async {
                        tokio::time::sleep(LOAD_BEFORE).await;
                        kill(&net, &ledger, service, run, &lease).await
                    }
                );
                let killed = killed?;
                let report =
                    report.with_context(|| format!("the load around {service} run {run}"))?;
                eprintln!("  load: {}", crate::ledger::summary(&report));
                loads.push(LoadRun::of(report));
                killed
            } else {
                kill(&net, &ledger, service, run, &lease).await?
            };
            runs_ms.push(ms);
            net.restart(&victim).await?;
        }
        let mut sorted = runs_ms.clone();
        services.push(ServiceReport {
            service: service.clone(),
            median_ms: crate::stats::quantile(&mut sorted, 0.5),
            min_ms: sorted.first().copied().unwrap_or_default(),
            max_ms: sorted.last().copied().unwrap_or_default(),
            runs_ms,
            load: loads,
        });
    }
    Ok(Report {
        services,
        lease: format!(
            "ttl {} ms, renew_period {} ms, safety_margin {} ms",
            lease.ttl.as_millis(),
            lease.renew_period.as_millis(),
            lease.safety_margin.as_millis()
        ),
    })
}

/// Kills the active replica of `service` at a random moment of its renew cycle: the
/// milliseconds to the first commit through its successor, and the victim.
async fn kill(
    net: &Net,
    ledger: &Ledger,
    service: &str,
    run: usize,
    lease: &ordo_lease::ReplicaConfig,
) -> Result<(u64, crate::harness::Replica)> {
    let victim = net.active(service, TIMEOUT).await?;
    // At a random moment of the victim's renew cycle: a loop of fixed steps would
    // otherwise kill at the same phase every run.
    let renew_ms = lease.renew_period.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..renew_ms))).await;
    let killed_at = Instant::now();
    victim.signal(Signal::SIGKILL).await?;
    let committed_at = probe(net, ledger, service, run).await?;
    let ms = committed_at.duration_since(killed_at).as_millis() as u64;
    let successor = net.active(service, TIMEOUT).await?;
    tracing::info!(service, run, ms, victim = %victim.name, successor = %successor.name, "failover");
    eprintln!(
        "{service} run {run}: {ms} ms ({} -> {})",
        victim.name, successor.name
    );
    Ok((ms, victim))
}

/// Commits once through `service`: retries until the first success; its time.
async fn probe(net: &Net, ledger: &Ledger, service: &str, run: usize) -> Result<Instant> {
    let deadline = Instant::now() + TIMEOUT;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let done = if service == "topology" {
            let shard = net.network.client_for_shard("shard-1").await;
            match shard {
                Ok(c) => c
                    .allocate_party(&format!("probe-{run}-{attempt}"))
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        } else {
            matches!(ledger.transfer(0).await?.outcome, Outcome::Committed { .. })
        };
        if done {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "no commit through {service} within {TIMEOUT:?}"
            ))
            .context(format!("run {run}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
