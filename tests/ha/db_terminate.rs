//! The active participant replica's database connections terminated with
//! `pg_terminate_backend` under load: it recovers (or steps down and the other replica
//! takes over), and nothing is written twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, ensure};
use sqlx::PgPool;

use crate::harness::{Ledger, Net};
use crate::{COMMITS, SERIAL, TAKEOVER, WORKERS, ordo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_survived() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let net = Net::start(ordo()).await?;
    let ledger = Arc::new(Ledger::setup(&net.network, WORKERS).await?);
    let active = net.active("shard-1", TAKEOVER).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = ledger.run(stop.clone());
    ledger.commits(COMMITS, TAKEOVER).await?;

    let pool = PgPool::connect(&net.database_url(&active)?).await?;
    let mut terminated = 0;
    for _ in 0..3 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1",
        )
        .bind(format!("ordo-participant/{}", active.name))
        .fetch_one(&pool)
        .await?;
        terminated += n;
        ledger.commits(3, TAKEOVER).await?;
    }
    ensure!(
        terminated > 0,
        "found no connection of {} to terminate",
        active.name
    );
    let serving = net.active("shard-1", TAKEOVER).await?;
    ledger.commits(COMMITS, TAKEOVER).await?;
    stop.store(true, Ordering::SeqCst);
    let records = load.await??;
    let summary = ledger.check(&records).await?;
    eprintln!(
        "terminated {terminated} connections of {}; {} serving; {summary:?}",
        active.name, serving.name
    );
    Ok(())
}
