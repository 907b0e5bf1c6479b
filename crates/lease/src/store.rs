//! The lease table and its statements. Each statement is atomic on its own; expiry is
//! judged by the database's clock, never the replica's.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

use crate::error::{FenceError, LeaseError};
use crate::state::{AcquireResult, RenewResult};

/// The schema, for a node crate to copy into its own migrations or to run through
/// [`ensure_schema`]. Idempotent.
pub const SCHEMA: &str = include_str!("schema.sql");

/// Advisory lock key serialising concurrent [`ensure_schema`] calls ("ordolease").
const SCHEMA_LOCK: i64 = 0x6f72_646f_6c65_6173;

/// Creates the lease table if it is missing. Safe to call from every replica at start-up.
pub async fn ensure_schema(pool: &PgPool) -> Result<(), LeaseError> {
    let mut tx = pool.begin().await?;
    // Concurrent `CREATE TABLE IF NOT EXISTS` can still collide in the catalog.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Validity the database granted, from its own `expires_at - now()`.
fn valid_for(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or_default()
}

/// Takes the lease for `holder` if it is free, expired, or already ours, in one statement.
///
/// The token grows whenever the lease is taken other than as a continuation of our own
/// unexpired lease: on a change of holder, and also when we retake our own expired or
/// released lease, so that work left over from an earlier term of the same holder is
/// fenced out too.
pub async fn acquire(
    pool: &PgPool,
    service: &str,
    holder: &str,
    ttl: Duration,
) -> Result<AcquireResult, LeaseError> {
    // Under READ COMMITTED, `ON CONFLICT DO UPDATE` re-evaluates the WHERE on the latest
    // row version after waiting for a concurrent taker, so two contenders cannot both win.
    let row = sqlx::query(
        "WITH taken AS (
             INSERT INTO ordo_lease AS l
                 (service, holder, fencing_token, expires_at, acquired_at, renewed_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3::float8 / 1e6), now(), now())
             ON CONFLICT (service) DO UPDATE SET
                 holder = EXCLUDED.holder,
                 fencing_token = CASE
                     WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                     THEN l.fencing_token ELSE l.fencing_token + 1 END,
                 acquired_at = CASE
                     WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                     THEN l.acquired_at ELSE now() END,
                 expires_at = EXCLUDED.expires_at,
                 renewed_at = now()
             WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder
             RETURNING fencing_token, EXTRACT(EPOCH FROM expires_at - now())::float8 AS valid
         )
         SELECT (SELECT fencing_token FROM taken) AS token,
                (SELECT valid FROM taken) AS valid,
                (SELECT holder FROM ordo_lease WHERE service = $1) AS holder,
                (SELECT EXTRACT(EPOCH FROM expires_at - now())::float8
                 FROM ordo_lease WHERE service = $1) AS remaining",
    )
    .bind(service)
    .bind(holder)
    .bind(micros(ttl))
    .fetch_one(pool)
    .await?;
    let token: Option<i64> = row.try_get("token")?;
    Ok(match token {
        Some(token) => AcquireResult::Won {
            token,
            valid_for: valid_for(row.try_get::<Option<f64>, _>("valid")?.unwrap_or(0.0)),
        },
        // The holder comes from the statement's snapshot: informational only.
        None => AcquireResult::Lost {
            holder: row.try_get("holder")?,
            expires_in: row.try_get::<Option<f64>, _>("remaining")?.map(valid_for),
        },
    })
}

/// Extends our lease, only if the row still carries our holder and token and has not
/// expired.
pub async fn renew(
    pool: &PgPool,
    service: &str,
    holder: &str,
    token: i64,
    ttl: Duration,
) -> Result<RenewResult, LeaseError> {
    let valid: Option<f64> = sqlx::query_scalar(
        "UPDATE ordo_lease
         SET expires_at = now() + make_interval(secs => $4::float8 / 1e6), renewed_at = now()
         WHERE service = $1 AND holder = $2 AND fencing_token = $3 AND expires_at > now()
         RETURNING EXTRACT(EPOCH FROM expires_at - now())::float8",
    )
    .bind(service)
    .bind(holder)
    .bind(token)
    .bind(micros(ttl))
    .fetch_optional(pool)
    .await?;
    Ok(match valid {
        Some(v) => RenewResult::Ok {
            valid_for: valid_for(v),
        },
        None => RenewResult::Lost,
    })
}

/// Graceful handover: ends our lease now, so the next contender takes it at once. Returns
/// whether there was an unexpired lease of ours to end.
pub async fn release(
    pool: &PgPool,
    service: &str,
    holder: &str,
    token: i64,
) -> Result<bool, LeaseError> {
    let done = sqlx::query(
        "UPDATE ordo_lease SET expires_at = now()
         WHERE service = $1 AND holder = $2 AND fencing_token = $3 AND expires_at > now()",
    )
    .bind(service)
    .bind(holder)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Checks, inside the caller's transaction, that `holder` still holds `service`'s lease
/// with `token`. Call it in every state-changing transaction of the active replica.
///
/// The row is locked `FOR SHARE` until the caller's transaction ends, so a takeover (an
/// UPDATE of the row) waits for it: a write that passed the check commits before the next
/// holder's term begins. Expiry is judged with `clock_timestamp()`, the database's clock
/// at the check, not `now()`, which is the start of a possibly long transaction.
pub async fn check_fence(
    conn: &mut PgConnection,
    service: &str,
    holder: &str,
    token: i64,
) -> Result<(), FenceError> {
    let row = sqlx::query(
        "SELECT holder, fencing_token, expires_at > clock_timestamp() AS live
         FROM ordo_lease WHERE service = $1 FOR SHARE",
    )
    .bind(service)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(FenceError::NoLease {
            service: service.to_owned(),
        });
    };
    let current_holder: String = row.try_get("holder")?;
    let current_token: i64 = row.try_get("fencing_token")?;
    let live: bool = row.try_get("live")?;
    if current_holder != holder || current_token != token {
        return Err(FenceError::Deposed {
            service: service.to_owned(),
            holder: holder.to_owned(),
            token,
            current_holder,
            current_token,
        });
    }
    if !live {
        return Err(FenceError::Expired {
            service: service.to_owned(),
            holder: holder.to_owned(),
            token,
        });
    }
    Ok(())
}

/// The lease row as stored (for tests and diagnostics): holder, token, and whether it is
/// unexpired by the database's clock.
pub async fn current(
    pool: &PgPool,
    service: &str,
) -> Result<Option<(String, i64, bool)>, LeaseError> {
    let row = sqlx::query(
        "SELECT holder, fencing_token, expires_at > clock_timestamp() AS live
         FROM ordo_lease WHERE service = $1",
    )
    .bind(service)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) => Ok(Some((
            r.try_get("holder")?,
            r.try_get("fencing_token")?,
            r.try_get("live")?,
        ))),
        None => Ok(None),
    }
}
