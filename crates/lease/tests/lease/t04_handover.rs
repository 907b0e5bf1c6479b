use std::time::{Duration, Instant};

use anyhow::Result;
use ordo_lease::{Role, store};

use crate::harness::*;
use crate::t02_takeover::wait_for_active;

/// Scheduling and statement latency on a busy test machine.
const SLACK: Duration = Duration::from_millis(400);

#[tokio::test]
async fn step_down_hands_over_within_one_renew_period() -> Result<()> {
    let db = db("handover").await?;
    let a = replica(&db, "a")?;
    let b = replica(&db, "b")?;
    let (first, old_token) = one_active(&[&a, &b], Duration::from_secs(5)).await?;
    let (old, new) = if first == 0 { (&a, &b) } else { (&b, &a) };

    let start = Instant::now();
    old.handle.step_down().await?;
    assert_eq!(old.handle.current(), Role::Passive);
    let new_token = wait_for_active(new, RENEW + SLACK).await?;
    assert!(start.elapsed() <= RENEW + SLACK);
    assert!(new_token > old_token);
    assert_eq!(
        old.handle.current(),
        Role::Passive,
        "the old one took it back"
    );
    let row = store::current(&db.pool, SERVICE).await?;
    assert_eq!(row, Some((new.handle.holder().to_owned(), new_token, true)));
    Ok(())
}

#[tokio::test]
async fn dropping_the_handle_releases_the_lease_and_ends_the_task() -> Result<()> {
    let db = db("shutdown").await?;
    let a = replica(&db, "a")?;
    let Role::Active { token } = *a
        .handle
        .role()
        .wait_for(|r| matches!(r, Role::Active { .. }))
        .await?
    else {
        unreachable!("waited for active");
    };
    let Replica { handle, task } = a;
    drop(handle);
    tokio::time::timeout(TTL, task).await??;
    let row = store::current(&db.pool, SERVICE).await?;
    assert_eq!(
        row,
        Some(("a".to_owned(), token, false)),
        "released, not left to expire"
    );
    Ok(())
}
