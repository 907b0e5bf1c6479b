//! `ordo admin failover` of a participant shard and of the mediator under load: the active
//! replica hands over and not one command fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, ensure};

use crate::harness::{Ledger, Net, Outcome};
use crate::{COMMITS, SERIAL, TAKEOVER, WORKERS, ordo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_failover_fails_no_command() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let net = Net::start(ordo()).await?;
    let ledger = Arc::new(Ledger::setup(&net.network, WORKERS).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let load = ledger.run(stop.clone());
    ledger.commits(COMMITS, TAKEOVER).await?;

    let file = net.dir.path().join("net/network.json");
    for service in ["shard-1", "mediator", "shard-2"] {
        let before = net.active(service, TAKEOVER).await?;
        let out = tokio::process::Command::new(ordo())
            .args(["admin", "failover", "--service", service, "--network"])
            .arg(&file)
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "ordo admin failover --service {service}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let after = net.active(service, TAKEOVER).await?;
        ensure!(
            after.name != before.name,
            "{service}: {} is still active",
            before.name
        );
        eprintln!("{service}: {}", String::from_utf8_lossy(&out.stdout).trim());
        ledger.commits(COMMITS, TAKEOVER).await?;
    }
    stop.store(true, Ordering::SeqCst);
    let records = load.await??;
    let failed: Vec<_> = records
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Committed { .. }))
        .collect();
    ensure!(
        failed.is_empty(),
        "commands failed during graceful failovers: {failed:#?}"
    );
    let summary = ledger.check(&records).await?;
    eprintln!("{summary:?}");
    Ok(())
}
