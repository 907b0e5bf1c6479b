//! Failover time: a network from `ordo up` (two replicas per active-passive service), the
//! active replica of a service SIGKILLed, and the time until the first commit through its
//! successor — a cross-shard transfer for a participant shard or the mediator, a party
//! allocation (a topology transaction) for the topology manager. Each run restarts the
//! killed replica (it comes back passive) before the next.

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
    /// One line of JSON.
    #[arg(long)]
    pub json: bool,
}

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
        for run in 0..args.runs {
            // A quiet start: the probe commits before the kill.
            probe(&net, &ledger, service, run).await?;
            let victim = net.active(service, TIMEOUT).await?;
            // At a random moment of the victim's renew cycle: a loop of fixed steps would
            // otherwise kill at the same phase every run.
            let renew_ms = lease.renew_period.as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..renew_ms))).await;
            let killed_at = Instant::now();
            victim.signal(Signal::SIGKILL).await?;
            let committed_at = probe(&net, &ledger, service, run).await?;
            let ms = committed_at.duration_since(killed_at).as_millis() as u64;
            let successor = net.active(service, TIMEOUT).await?;
            tracing::info!(service, run, ms, victim = %victim.name, successor = %successor.name, "failover");
            eprintln!(
                "{service} run {run}: {ms} ms ({} -> {})",
                victim.name, successor.name
            );
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
