use std::time::{Duration, Instant};

use anyhow::Result;
use ordo_lease::store;

use crate::harness::*;

#[tokio::test]
async fn two_replicas_compete_and_exactly_one_is_active() -> Result<()> {
    let db = db("compete").await?;
    let a = replica(&db, "a")?;
    let b = replica(&db, "b")?;
    let (winner, won) = one_active(&[&a, &b], Duration::from_secs(5)).await?;
    let names = ["a", "b"];

    // The database agrees, and the roles stay put over several renew periods.
    let row = store::current(&db.pool, SERVICE).await?;
    assert_eq!(row, Some((names[winner].to_owned(), won, true)));
    let until = Instant::now() + RENEW * 5;
    while Instant::now() < until {
        let roles = [token(&a), token(&b)];
        assert_eq!(roles.iter().flatten().count(), 1, "roles: {roles:?}");
        assert_eq!(roles[winner], Some(won), "the active replica changed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Renewing keeps the token and the holder.
    let row = store::current(&db.pool, SERVICE).await?;
    assert_eq!(row, Some((names[winner].to_owned(), won, true)));
    Ok(())
}
