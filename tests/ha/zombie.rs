//! Zombie fencing: the active participant replica is frozen (SIGSTOP) until its lease
//! expires and the passive replica takes over and commits; when it resumes (SIGCONT) it
//! commits nothing more — the shard's tables are unchanged by it — and steps down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use nix::sys::signal::Signal;
use ordo_testkit::wait_for;
use sqlx::PgPool;

use crate::harness::{Ledger, Net};
use crate::{COMMITS, SERIAL, TAKEOVER, WORKERS, ordo};

/// The participant's tables, each as one digest (the lease table aside).
async fn tables(pool: &PgPool) -> Result<Vec<(String, String)>> {
    let mut digests = Vec::new();
    for table in [
        "p_state",
        "p_contracts",
        "p_pending",
        "p_updates",
        "p_commands",
        "p_completions",
        "p_outbox",
    ] {
        // The table names are the constants above.
        let digest: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
        )))
        .fetch_one(pool)
        .await?;
        digests.push((table.to_owned(), digest));
    }
    Ok(digests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_active_replica_is_fenced_out() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let net = Net::start(ordo()).await?;
    let ledger = Arc::new(Ledger::setup(&net.network, WORKERS).await?);
    let zombie = net.active("shard-1", TAKEOVER).await?;
    let zombie_holder = zombie.status().await?.holder;
    let stop = Arc::new(AtomicBool::new(false));
    let load = ledger.run(stop.clone());
    ledger.commits(COMMITS, TAKEOVER).await?;

    // Frozen mid-load, with work in memory.
    let pid = zombie.signal(Signal::SIGSTOP).await?;
    let successor = net.active("shard-1", TAKEOVER).await?;
    ensure!(successor.name != zombie.name);
    ledger.commits(COMMITS, TAKEOVER).await?;
    stop.store(true, Ordering::SeqCst);
    let records = load.await??;

    let pool = PgPool::connect(&net.database_url(&zombie)?).await?;
    let before = tables(&pool).await?;
    // A frozen process answers no /status: signal it by the pid.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT)?;
    let status = wait_for(
        "the resumed replica to report passive",
        Duration::from_secs(10),
        || async { zombie.status().await.ok().filter(|s| s.role == "passive") },
    )
    .await?;
    ensure!(!status.serving);
    ensure!(
        status.lease_holder.as_deref() != Some(zombie_holder.as_str()),
        "the lease is still the zombie's: {status:?}"
    );
    // Its renew timer, processor and outbox have all run by now; it wrote nothing.
    let log = wait_for(
        "the zombie to log its step-down",
        Duration::from_secs(10),
        || async {
            let log = net.log(&zombie);
            log.contains("term ended").then_some(log)
        },
    )
    .await?;
    let after = tables(&pool).await?;
    ensure!(
        before == after,
        "the zombie changed the shard's tables:\nbefore {before:?}\nafter  {after:?}"
    );
    ensure!(
        !log.contains("active replica serving")
            || log.matches("active replica serving").count() == 1,
        "the zombie served another term"
    );
    let summary = ledger.check(&records).await?;
    eprintln!(
        "zombie {} fenced out; {} took over; {summary:?}",
        zombie.name, successor.name
    );
    Ok(())
}
