//! SIGKILL of the active replica of a participant shard, of the mediator and of the
//! topology manager under a steady load of cross-shard transfers: a passive replica takes
//! over and no command is lost, left hanging or committed twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, ensure};
use nix::sys::signal::Signal;
use ordo_testkit::wait_for;

use crate::harness::{Ledger, Net, Outcome, after};
use crate::{COMMITS, SERIAL, TAKEOVER, WORKERS, ordo};

async fn kill_active_under_load(service: &str) -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut net = Net::start(ordo()).await?;
    let ledger = Arc::new(Ledger::setup(&net.network, WORKERS).await?);
    let victim = net.active(service, TAKEOVER).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = ledger.run(stop.clone());
    ledger.commits(COMMITS, TAKEOVER).await?;

    let killed_at = Instant::now();
    let pid = victim.signal(Signal::SIGKILL).await?;
    let successor = net.active(service, TAKEOVER).await?;
    let took_over = killed_at.elapsed();
    ensure!(
        successor.name != victim.name,
        "{} still active after SIGKILL",
        victim.name
    );
    // The lease metrics of the new active replica, labelled with the service (its first
    // renew comes one renew period after the takeover).
    let url = format!("{}/metrics", successor.http);
    let lines: Vec<String> = [
        "ordo_lease_failovers_total",
        "ordo_lease_takeover_seconds_count",
        "ordo_lease_renew_seconds_count",
        "ordo_lease_since_renew_seconds",
        "ordo_lease_role",
    ]
    .iter()
    .map(|metric| format!("{metric}{{service=\"{service}\"}}"))
    .collect();
    wait_for("the lease metrics", TAKEOVER, || async {
        let metrics = ordo_node::http_client::get_ok(&url).await.ok()?;
        lines
            .iter()
            .all(|l| metrics.contains(l.as_str()))
            .then_some(())
    })
    .await?;
    if service == "topology" {
        // Topology changes go through the new active manager.
        let shard1 = net.network.client_for_shard("shard-1").await?;
        shard1.allocate_party("late-joiner").await?;
    }
    ledger.commits(COMMITS, TAKEOVER).await?;
    stop.store(true, Ordering::SeqCst);
    let records = load.await??;
    let summary = ledger.check(&records).await?;
    let after_takeover = after(&records, killed_at + took_over)
        .filter(|r| matches!(r.outcome, Outcome::Committed { .. }))
        .count();
    ensure!(after_takeover > 0, "nothing committed after the takeover");
    eprintln!(
        "{service}: killed {} (pid {pid}); {} serving after {took_over:?}; {summary:?}",
        victim.name, successor.name
    );
    // The killed replica comes back passive.
    net.restart(&victim).await?;
    let status = victim.status().await?;
    ensure!(
        status.role == "passive",
        "the restarted replica is {}",
        status.role
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_killed_under_load() -> Result<()> {
    kill_active_under_load("shard-1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mediator_killed_under_load() -> Result<()> {
    kill_active_under_load("mediator").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_killed_under_load() -> Result<()> {
    kill_active_under_load("topology").await
}
