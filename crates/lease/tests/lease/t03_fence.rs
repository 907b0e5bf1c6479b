use std::time::Duration;

use anyhow::Result;
use ordo_lease::{FenceError, Role, store};
use sqlx::PgPool;

use crate::harness::*;
use crate::t02_takeover::wait_for_active;

async fn writes_table(pool: &PgPool) -> Result<()> {
    sqlx::query("CREATE TABLE writes (id text PRIMARY KEY)")
        .execute(pool)
        .await?;
    Ok(())
}

/// The application's pattern: write, check the fence in the same transaction, commit.
async fn fenced_write(
    pool: &PgPool,
    holder: &str,
    token: i64,
    id: &str,
) -> Result<Result<(), FenceError>> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO writes (id) VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if let Err(e) = store::check_fence(&mut tx, SERVICE, holder, token).await {
        tx.rollback().await?;
        return Ok(Err(e));
    }
    tx.commit().await?;
    Ok(Ok(()))
}

async fn exists(pool: &PgPool, id: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM writes WHERE id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

#[tokio::test]
async fn a_deposed_replica_cannot_commit_a_fenced_write() -> Result<()> {
    let db = db("fence").await?;
    writes_table(&db.pool).await?;
    let a = replica(&db, "a")?;
    let b = replica(&db, "b")?;
    let (first, old_token) = one_active(&[&a, &b], Duration::from_secs(5)).await?;
    let (old, new) = if first == 0 { (&a, &b) } else { (&b, &a) };

    // While active, the handle's fence passes and the write commits.
    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO writes (id) VALUES ('before')")
        .execute(&mut *tx)
        .await?;
    assert_eq!(old.handle.fence(&mut tx).await?, old_token);
    tx.commit().await?;
    assert!(exists(&db.pool, "before").await?);

    // The old replica is paused (its task no longer runs); the other takes over.
    old.task.abort();
    let new_token = wait_for_active(new, Duration::from_secs(5)).await?;
    assert!(new_token > old_token);

    // The paused replica wakes up and writes with the token it still remembers.
    let r = fenced_write(&db.pool, old.handle.holder(), old_token, "after").await?;
    match r {
        Err(FenceError::Deposed {
            token,
            current_token,
            ref current_holder,
            ..
        }) => {
            assert_eq!((token, current_token), (old_token, new_token));
            assert_eq!(current_holder, new.handle.holder());
        }
        other => panic!("expected Deposed, got {other:?}"),
    }
    assert!(
        !exists(&db.pool, "after").await?,
        "the deposed write committed"
    );
    // Its handle refuses too, without asking the database.
    let mut conn = db.pool.acquire().await?;
    assert!(matches!(
        old.handle.fence(&mut conn).await,
        Err(FenceError::NotActive { .. })
    ));
    // The new holder writes fine.
    fenced_write(&db.pool, new.handle.holder(), new_token, "new").await??;
    assert!(exists(&db.pool, "new").await?);
    Ok(())
}

#[tokio::test]
async fn a_write_after_expiry_fails_even_without_a_new_holder() -> Result<()> {
    let db = db("expiry").await?;
    writes_table(&db.pool).await?;
    let a = replica(&db, "a")?;
    let Role::Active { token } = *a
        .handle
        .role()
        .wait_for(|r| matches!(r, Role::Active { .. }))
        .await?
    else {
        unreachable!("waited for active");
    };
    a.task.abort();
    ordo_testkit::wait_for("expiry by the database clock", TTL * 3, || async {
        matches!(
            store::current(&db.pool, SERVICE).await,
            Ok(Some((_, _, false)))
        )
        .then_some(())
    })
    .await?;
    let r = fenced_write(&db.pool, "a", token, "late").await?;
    assert!(matches!(r, Err(FenceError::Expired { .. })), "got {r:?}");
    assert!(!exists(&db.pool, "late").await?);
    // A service whose lease was never taken has no fence to pass.
    let mut conn = db.pool.acquire().await?;
    let r = store::check_fence(&mut conn, "nobody", "a", 1).await;
    assert!(matches!(r, Err(FenceError::NoLease { .. })), "got {r:?}");
    Ok(())
}

#[tokio::test]
async fn a_takeover_waits_for_a_fenced_transaction_in_progress() -> Result<()> {
    let db = db("serialise").await?;
    writes_table(&db.pool).await?;
    let token = match store::acquire(&db.pool, SERVICE, "a", TTL).await? {
        ordo_lease::state::AcquireResult::Won { token, .. } => token,
        other => panic!("first acquire: {other:?}"),
    };
    // `a` passes its fence and holds the transaction open past its lease's expiry.
    let mut tx = db.pool.begin().await?;
    store::check_fence(&mut tx, SERVICE, "a", token).await?;
    sqlx::query("INSERT INTO writes (id) VALUES ('in-flight')")
        .execute(&mut *tx)
        .await?;
    ordo_testkit::wait_for("expiry", TTL * 3, || async {
        matches!(
            store::current(&db.pool, SERVICE).await,
            Ok(Some((_, _, false)))
        )
        .then_some(())
    })
    .await?;
    let pool = db.pool.clone();
    let takeover = tokio::spawn(async move { store::acquire(&pool, SERVICE, "b", TTL).await });
    // The takeover blocks on the row lock the fence check holds.
    ordo_testkit::wait_for(
        "the takeover waiting on the lease row lock",
        TTL * 3,
        || async {
            let waiting: Option<i64> = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO ordo_lease%'",
            )
            .fetch_one(&db.pool)
            .await
            .ok();
            (waiting == Some(1)).then_some(())
        },
    )
    .await?;
    assert!(
        !takeover.is_finished(),
        "the takeover did not wait for the fence lock"
    );
    tx.commit().await?;
    let won = takeover.await??;
    assert!(
        matches!(won, ordo_lease::state::AcquireResult::Won { token: t, .. } if t == token + 1),
        "got {won:?}"
    );
    Ok(())
}
