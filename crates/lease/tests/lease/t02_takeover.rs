use std::time::{Duration, Instant};

use anyhow::Result;
use ordo_lease::{Role, store};

use crate::harness::*;

#[tokio::test]
async fn a_silent_active_replica_is_replaced_after_the_ttl_with_a_larger_token() -> Result<()> {
    let db = db("takeover").await?;
    let a = replica(&db, "a")?;
    let b = replica(&db, "b")?;
    let (first, old_token) = one_active(&[&a, &b], Duration::from_secs(5)).await?;
    let (dead, survivor) = if first == 0 { (&a, &b) } else { (&b, &a) };

    // The active replica stops renewing (crash, pause): its task is gone.
    dead.task.abort();
    let stopped = Instant::now();
    let new_token = wait_for_active(survivor, Duration::from_secs(5)).await?;
    let took = stopped.elapsed();

    assert!(new_token > old_token, "token {new_token} after {old_token}");
    // The lease was last renewed at most one renew period before the abort.
    assert!(
        took >= TTL - RENEW,
        "taken over after {took:?}, before the TTL"
    );
    let row = store::current(&db.pool, SERVICE).await?;
    assert_eq!(
        row,
        Some((survivor.handle.holder().to_owned(), new_token, true))
    );
    // The dead replica's handle no longer claims the lease.
    assert_eq!(dead.handle.current(), Role::Passive);
    Ok(())
}

pub async fn wait_for_active(r: &Replica, timeout: Duration) -> Result<i64> {
    ordo_testkit::wait_for("takeover", timeout, || async { token(r) }).await
}
