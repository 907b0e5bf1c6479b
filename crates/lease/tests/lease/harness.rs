use std::time::Duration;

use anyhow::Result;
use ordo_lease::{Lease, LeaseConfig, LeaseHandle, Role};
use ordo_testkit::{PgCluster, PgOptions, wait_for};
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub const SERVICE: &str = "mediator";
pub const TTL: Duration = Duration::from_millis(1500);
pub const RENEW: Duration = Duration::from_millis(300);

pub struct Db {
    pub pool: PgPool,
    _pg: PgCluster,
}

pub async fn db(name: &str) -> Result<Db> {
    ordo_testkit::init_tracing();
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let url = pg.create_database(name).await?;
    let pool = PgPool::connect(&url).await?;
    ordo_lease::ensure_schema(&pool).await?;
    // A second call is harmless (every replica runs it at start-up).
    ordo_lease::ensure_schema(&pool).await?;
    Ok(Db { pool, _pg: pg })
}

pub fn config(holder: &str) -> LeaseConfig {
    LeaseConfig {
        ttl: TTL,
        renew_period: RENEW,
        safety_margin: Duration::from_millis(300),
        ..LeaseConfig::new(SERVICE, holder)
    }
}

pub struct Replica {
    pub handle: LeaseHandle,
    pub task: JoinHandle<()>,
}

pub fn replica(db: &Db, holder: &str) -> Result<Replica> {
    let (handle, task) = Lease::spawn(db.pool.clone(), config(holder))?;
    Ok(Replica { handle, task })
}

pub fn token(r: &Replica) -> Option<i64> {
    match r.handle.current() {
        Role::Active { token } => Some(token),
        Role::Passive => None,
    }
}

/// Waits until exactly one of `rs` is active; returns its index and token.
pub async fn one_active(rs: &[&Replica], timeout: Duration) -> Result<(usize, i64)> {
    wait_for("exactly one active replica", timeout, || async {
        let active: Vec<_> = rs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| token(r).map(|t| (i, t)))
            .collect();
        (active.len() == 1).then(|| active[0])
    })
    .await
}
