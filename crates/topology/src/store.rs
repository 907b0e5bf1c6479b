//! All of the topology manager's SQL, over the schema in `migrations/`. Every write of the
//! running node is one transaction fenced by the replica's lease ([`Replica::fence`]), so
//! a deposed replica never commits; only `init` (provisioning, idempotent) is not.

use ordo_core::Timestamp;
use ordo_lease::Replica;
use ordo_node::db;
pub use ordo_node::db::redact_url;
use ordo_protocol::{TopologyChange, TopologyState, TopologyTransaction};
use sqlx::postgres::PgPool;
use sqlx::{Connection, Postgres, Row, Transaction};

use crate::config::TopologyConfig;
use crate::error::TopologyError;
use crate::plan;

/// The schema version this code reads and writes (`topology_meta.schema_version`).
pub const SCHEMA_VERSION: i32 = 1;
/// Key of the advisory lock that serialises `init`.
const INIT_LOCK: i64 = 0x6f72_646f_544f_5049; // "ordoTOPI"

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The connections' `application_name`: the replica, so that an operator can tell the
/// replicas' sessions apart in `pg_stat_activity`.
fn app_name(config: &TopologyConfig) -> String {
    format!(
        "ordo-topology/{}",
        config.replica.name_or(&config.node_name)
    )
}

pub async fn connect(config: &TopologyConfig) -> Result<PgPool, TopologyError> {
    let options = db::connect_options(&config.database_url, &app_name(config))?;
    Ok(db::pool_with(config.replica.connect_options(options), config.pool_size).await?)
}

/// The member this database belongs to, as `init` recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub member_id: String,
    pub public_key: Vec<u8>,
}

/// Runs the migrations and records the manager's member id and an empty topology, under
/// an advisory lock so that concurrent `init`s never race. Returns whether this call
/// provisioned the database, and the member it belongs to (which may be another one).
pub async fn init(
    config: &TopologyConfig,
    member_id: &str,
    public_key: &[u8],
) -> Result<(bool, Meta), TopologyError> {
    db::with_advisory_lock(
        &config.database_url,
        &app_name(config),
        INIT_LOCK,
        async |conn| init_locked(conn, member_id, public_key).await,
    )
    .await
}

async fn init_locked(
    conn: &mut sqlx::PgConnection,
    member_id: &str,
    public_key: &[u8],
) -> Result<(bool, Meta), TopologyError> {
    MIGRATOR.run(&mut *conn).await?;
    let mut tx = conn.begin().await?;
    let done = sqlx::query(
        "INSERT INTO topology_meta (id, schema_version, member_id, public_key)
         VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(SCHEMA_VERSION)
    .bind(member_id)
    .bind(public_key)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO topology_state (id, serial, state, cursor) VALUES (1, 0, $1::jsonb, 0)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(to_json(&TopologyState::default())?)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query("SELECT member_id, public_key FROM topology_meta WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((
        done.rows_affected() == 1,
        Meta {
            member_id: row.try_get("member_id")?,
            public_key: row.try_get("public_key")?,
        },
    ))
}

/// The member a provisioned database belongs to, or why this node must not run on it.
pub async fn check_provisioned(pool: &PgPool, url: &str) -> Result<Meta, TopologyError> {
    let row = db::provisioned(
        pool,
        "SELECT schema_version, member_id, public_key FROM topology_meta WHERE id = 1",
        Some(SCHEMA_VERSION),
        |why| TopologyError::unprovisioned(url, why),
    )
    .await?;
    Ok(Meta {
        member_id: row.try_get("member_id")?,
        public_key: row.try_get("public_key")?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, TopologyError> {
    serde_json::to_string(value).map_err(|e| TopologyError::Internal(format!("encoding JSON: {e}")))
}

/// Commits `db` only if `replica` still holds the topology lease with its token. The check
/// locks the lease row until the commit, so a takeover waits for this transaction.
async fn fenced_commit(
    mut db: Transaction<'_, Postgres>,
    replica: &Replica,
) -> Result<(), TopologyError> {
    replica.fence(&mut db).await?;
    db.commit().await?;
    Ok(())
}

/// The applied topology and the subscription cursor.
pub async fn load_state(pool: &PgPool) -> Result<(TopologyState, Timestamp), TopologyError> {
    let row = sqlx::query("SELECT state::text AS state, cursor FROM topology_state WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let text: String = row.try_get("state")?;
    let state = serde_json::from_str(&text).map_err(|e| {
        TopologyError::Internal(format!("topology_state holds unreadable JSON: {e}"))
    })?;
    Ok((state, Timestamp(row.try_get("cursor")?)))
}

/// Whether any transaction was ever proposed (false only on a fresh database).
pub async fn has_transactions(pool: &PgPool) -> Result<bool, TopologyError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM topology_transactions)")
            .fetch_one(pool)
            .await?,
    )
}

/// The message id a transaction is sent with: a resend is recognised by the sequencer.
pub fn message_id(serial: u64) -> String {
    format!("topology-{serial}")
}

/// Writes proposals, all or none, and returns their message ids: `topology-<serial>`, or
/// `topology-<serial>-<n>` when that serial was refused before (n − 1 times). Fenced by
/// `replica`.
pub async fn insert_proposals(
    pool: &PgPool,
    replica: &Replica,
    txs: &[TopologyTransaction],
    now: Timestamp,
) -> Result<Vec<String>, TopologyError> {
    let mut db = pool.begin().await?;
    let mut ids = Vec::with_capacity(txs.len());
    for tx in txs {
        let refused: i64 =
            sqlx::query_scalar("SELECT count(*) FROM topology_refused WHERE serial = $1")
                .bind(serial_i64(tx.serial)?)
                .fetch_one(&mut *db)
                .await?;
        let id = if refused == 0 {
            message_id(tx.serial)
        } else {
            format!("{}-{}", message_id(tx.serial), refused + 1)
        };
        sqlx::query(
            "INSERT INTO topology_transactions (serial, kind, change, message_id, proposed_at)
             VALUES ($1, $2, $3::jsonb, $4, $5)",
        )
        .bind(serial_i64(tx.serial)?)
        .bind(plan::kind(&tx.change))
        .bind(to_json(&tx.change)?)
        .bind(&id)
        .bind(now.micros())
        .execute(&mut *db)
        .await?;
        ids.push(id);
    }
    fenced_commit(db, replica).await?;
    Ok(ids)
}

fn serial_i64(serial: u64) -> Result<i64, TopologyError> {
    i64::try_from(serial).map_err(|_| TopologyError::Internal(format!("serial {serial} overflows")))
}

/// A proposal not yet seen sequenced.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub tx: TopologyTransaction,
    pub message_id: String,
}

/// Proposals not yet seen sequenced, in serial order.
pub async fn pending(pool: &PgPool) -> Result<Vec<Proposal>, TopologyError> {
    let rows = sqlx::query(
        "SELECT serial, change::text AS change, message_id FROM topology_transactions
         WHERE sequenced_at IS NULL ORDER BY serial",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let serial: i64 = row.try_get("serial")?;
            let text: String = row.try_get("change")?;
            let change: TopologyChange = serde_json::from_str(&text).map_err(|e| {
                TopologyError::Internal(format!(
                    "topology transaction {serial} holds an unreadable change: {e}"
                ))
            })?;
            Ok(Proposal {
                tx: TopologyTransaction {
                    serial: serial as u64,
                    change,
                },
                message_id: row.try_get("message_id")?,
            })
        })
        .collect()
}

/// Forgets a proposal that was never sequenced (the sequencer refused it definitely).
/// Fenced by `replica`.
pub async fn delete_pending(
    pool: &PgPool,
    replica: &Replica,
    serial: u64,
) -> Result<(), TopologyError> {
    let mut db = pool.begin().await?;
    sqlx::query("DELETE FROM topology_transactions WHERE serial = $1 AND sequenced_at IS NULL")
        .bind(serial_i64(serial)?)
        .execute(&mut *db)
        .await?;
    fenced_commit(db, replica).await
}

/// What processing one sequenced event changes, written in one database transaction
/// together with the cursor.
pub enum Effect<'a> {
    /// Nothing but the cursor.
    None,
    /// Our transaction `tx` was applied; `state` is the topology after it.
    Applied {
        tx: &'a TopologyTransaction,
        state: &'a TopologyState,
    },
    /// Our transaction with this serial was sequenced but refused by the fold: the
    /// proposal moves to `topology_refused` (every member skips it too).
    Refused { serial: u64, reason: &'a str },
}

/// Writes `effect` and moves the cursor to `at`, fenced by `replica`.
pub async fn record(
    pool: &PgPool,
    replica: &Replica,
    at: Timestamp,
    effect: Effect<'_>,
) -> Result<(), TopologyError> {
    let mut db = pool.begin().await?;
    match effect {
        Effect::None => {
            sqlx::query("UPDATE topology_state SET cursor = $1 WHERE id = 1")
                .bind(at.micros())
                .execute(&mut *db)
                .await?;
        }
        Effect::Applied { tx, state } => {
            // The sequenced transaction is the truth: upsert it in case the proposal row is
            // missing or differs.
            sqlx::query(
                "INSERT INTO topology_transactions
                     (serial, kind, change, message_id, proposed_at, sequenced_at)
                 VALUES ($1, $2, $3::jsonb, $4, $5, $5)
                 ON CONFLICT (serial) DO UPDATE SET
                     kind = excluded.kind, change = excluded.change,
                     sequenced_at = excluded.sequenced_at",
            )
            .bind(serial_i64(tx.serial)?)
            .bind(plan::kind(&tx.change))
            .bind(to_json(&tx.change)?)
            .bind(message_id(tx.serial))
            .bind(at.micros())
            .execute(&mut *db)
            .await?;
            sqlx::query(
                "UPDATE topology_state SET serial = $1, state = $2::jsonb, cursor = $3 WHERE id = 1",
            )
            .bind(serial_i64(state.serial)?)
            .bind(to_json(state)?)
            .bind(at.micros())
            .execute(&mut *db)
            .await?;
        }
        Effect::Refused { serial, reason } => {
            sqlx::query(
                "WITH moved AS (
                     DELETE FROM topology_transactions
                     WHERE serial = $1 AND sequenced_at IS NULL
                     RETURNING serial, message_id)
                 INSERT INTO topology_refused (serial, message_id, sequenced_at, reason)
                 SELECT serial, message_id, $2, $3 FROM moved
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(serial_i64(serial)?)
            .bind(at.micros())
            .bind(reason)
            .execute(&mut *db)
            .await?;
            sqlx::query("UPDATE topology_state SET cursor = $1 WHERE id = 1")
                .bind(at.micros())
                .execute(&mut *db)
                .await?;
        }
    }
    fenced_commit(db, replica).await
}

/// When `change` (exactly) last took effect, if it did.
pub async fn effective_at(
    pool: &PgPool,
    change: &TopologyChange,
) -> Result<Option<(u64, Timestamp)>, TopologyError> {
    let row = sqlx::query(
        "SELECT serial, sequenced_at FROM topology_transactions
         WHERE change = $1::jsonb AND sequenced_at IS NOT NULL
         ORDER BY serial DESC LIMIT 1",
    )
    .bind(to_json(change)?)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        let serial: i64 = r.try_get("serial")?;
        let at: i64 = r.try_get("sequenced_at")?;
        Ok((serial as u64, Timestamp(at)))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_deterministic() {
        assert_eq!(message_id(7), "topology-7");
    }
}
