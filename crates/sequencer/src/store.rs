//! All of the sequencer's SQL, over the schema in `migrations/`.

use std::collections::{HashMap, HashSet};

use ordo_node::db;
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::config::SequencerConfig;
use crate::error::SequencerError;
use crate::order::{self, Assignment, Candidate};

/// The schema version this code reads and writes (`seq_meta.schema_version`): 2 stores the
/// signature of each member's latest acknowledgement.
pub const SCHEMA_VERSION: i32 = 2;
/// Channel notified (at commit) whenever events were sequenced.
pub const EVENTS_CHANNEL: &str = "ordo_sequencer_events";
/// Channel notified when members change.
pub const MEMBERS_CHANNEL: &str = "ordo_sequencer_members";
/// Key of the advisory lock that serialises `init` across nodes.
const INIT_LOCK: i64 = 0x6f72_646f_5345_5149; // "ordoSEQI"
/// The database clock in microseconds. `clock_timestamp()`, not `now()`: a transaction's
/// start time could lag the moment timestamps are assigned.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn app_name(config: &SequencerConfig) -> String {
    format!("ordo-sequencer/{}", config.node_name)
}

/// The node's general pool and the writer's pool. Writer connections carry
/// `lock_timeout` and `idle_in_transaction_session_timeout`, so a paused writer cannot hold
/// the head row (the domain's serialisation point) for longer than the stall timeout.
pub async fn connect(config: &SequencerConfig) -> Result<(PgPool, PgPool), SequencerError> {
    let opts = db::connect_options(&config.database_url, &app_name(config))?;
    let pool = db::pool_with(opts.clone(), config.pool_size.saturating_sub(1).max(3)).await?;
    let ms = config.writer_stall_timeout.as_millis().to_string();
    let writer = db::pool_with(
        opts.options([
            ("lock_timeout", ms.as_str()),
            ("idle_in_transaction_session_timeout", ms.as_str()),
        ]),
        1,
    )
    .await?;
    Ok((pool, writer))
}

/// Runs the migrations and creates the token secret, under an advisory lock so that nodes
/// initialising at once never race. Returns whether this call provisioned the database.
pub async fn init(config: &SequencerConfig) -> Result<bool, SequencerError> {
    db::with_advisory_lock(
        &config.database_url,
        &app_name(config),
        INIT_LOCK,
        init_locked,
    )
    .await
}

async fn init_locked(conn: &mut sqlx::PgConnection) -> Result<bool, SequencerError> {
    MIGRATOR.run(&mut *conn).await?;
    let mut secret = vec![0u8; 32];
    rand::fill(&mut secret[..]);
    let done = sqlx::query(
        "INSERT INTO seq_meta (id, schema_version, hmac_secret) VALUES (1, $1, $2)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(SCHEMA_VERSION)
    .bind(secret)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    // The migrations above brought an older schema up to this version.
    sqlx::query("UPDATE seq_meta SET schema_version = $1 WHERE id = 1")
        .bind(SCHEMA_VERSION)
        .execute(&mut *conn)
        .await?;
    Ok(false)
}

/// The token secret of a provisioned database, or why this node must not run on it.
pub async fn check_provisioned(pool: &PgPool, url: &str) -> Result<Vec<u8>, SequencerError> {
    let row = db::provisioned(
        pool,
        "SELECT schema_version, hmac_secret FROM seq_meta WHERE id = 1",
        Some(SCHEMA_VERSION),
        |why| SequencerError::unprovisioned(url, why),
    )
    .await?;
    Ok(row.try_get("hmac_secret")?)
}

/// The committed head: every event with a timestamp at or below it is committed and
/// visible, because commit order equals timestamp order.
pub async fn head(pool: &PgPool) -> Result<i64, SequencerError> {
    Ok(sqlx::query_scalar("SELECT ts FROM seq_head WHERE id = 1")
        .fetch_one(pool)
        .await?)
}

/// The committed head and the database clock.
pub async fn time(pool: &PgPool) -> Result<(i64, i64), SequencerError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT ts, {DB_NOW} AS now FROM seq_head WHERE id = 1"
    )))
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("ts")?, row.try_get("now")?))
}

pub async fn lower_bound(pool: &PgPool) -> Result<i64, SequencerError> {
    Ok(
        sqlx::query_scalar("SELECT lower_bound FROM seq_meta WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

pub async fn count_events(pool: &PgPool) -> Result<i64, SequencerError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?)
}

// ---- members ----

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MemberRow {
    pub idx: i32,
    pub member_id: String,
    pub public_key: Vec<u8>,
    pub enabled: bool,
    pub registered_at: i64,
    pub acknowledged: i64,
}

pub async fn load_members(pool: &PgPool) -> Result<Vec<MemberRow>, SequencerError> {
    Ok(sqlx::query_as(
        "SELECT idx, member_id, public_key, enabled, registered_at, acknowledged
         FROM members ORDER BY idx",
    )
    .fetch_all(pool)
    .await?)
}

/// Registers a member; false when it already existed (its id binds its key, so the key is
/// the same). Re-registering does not re-enable a disabled member.
pub async fn register_member(
    pool: &PgPool,
    member_id: &str,
    public_key: &[u8],
) -> Result<bool, SequencerError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO members (member_id, public_key, registered_at) VALUES ($1, $2, {DB_NOW})
         ON CONFLICT (member_id) DO NOTHING"
    )))
    .bind(member_id)
    .bind(public_key)
    .execute(&mut *tx)
    .await?;
    notify_members(&mut tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Disables a member; false when there is no such member.
pub async fn disable_member(pool: &PgPool, member_id: &str) -> Result<bool, SequencerError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("UPDATE members SET enabled = false WHERE member_id = $1")
        .bind(member_id)
        .execute(&mut *tx)
        .await?;
    notify_members(&mut tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

async fn notify_members(tx: &mut sqlx::PgTransaction<'_>) -> Result<(), SequencerError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(MEMBERS_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records an acknowledgement as `max(old, ts)`, with the member's `signature` over it;
/// false when `ts` is above the committed head. The stored signature always signs the
/// stored timestamp: it is replaced only when the timestamp moves forward (or fills in an
/// acknowledgement recorded before acknowledgements were signed).
pub async fn acknowledge(
    pool: &PgPool,
    idx: i32,
    ts: i64,
    signature: &[u8],
) -> Result<bool, SequencerError> {
    // Every expression of SET reads the row as it was before the update.
    let done = sqlx::query(
        "UPDATE members SET
             acknowledged_signature = CASE
                 WHEN $2 > acknowledged
                   OR ($2 = acknowledged AND acknowledged_signature IS NULL) THEN $3
                 ELSE acknowledged_signature END,
             acknowledged = GREATEST(acknowledged, $2)
         WHERE idx = $1 AND $2 <= (SELECT ts FROM seq_head WHERE id = 1)",
    )
    .bind(idx)
    .bind(ts)
    .bind(signature)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneOutcome {
    pub pruned_events: i64,
    pub lower_bound: i64,
    pub lagging_members: Vec<String>,
}

/// Deletes the events every enabled member acknowledged (and at most up to `up_to` when
/// non-zero). A never-acknowledged enabled member (0) blocks pruning.
pub async fn prune(pool: &PgPool, up_to: i64) -> Result<PruneOutcome, SequencerError> {
    let mut tx = pool.begin().await?;
    // Lock the meta row so two concurrent prunes agree on the lower bound.
    let old_bound: i64 =
        sqlx::query_scalar("SELECT lower_bound FROM seq_meta WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let min_ack: Option<i64> =
        sqlx::query_scalar("SELECT min(acknowledged) FROM members WHERE enabled")
            .fetch_one(&mut *tx)
            .await?;
    let Some(min_ack) = min_ack else {
        tx.commit().await?;
        return Ok(PruneOutcome {
            pruned_events: 0,
            lower_bound: old_bound,
            lagging_members: Vec::new(),
        });
    };
    let bound = if up_to > 0 {
        min_ack.min(up_to)
    } else {
        min_ack
    };
    let mut pruned_events = 0;
    if bound > old_bound {
        let done = sqlx::query("DELETE FROM events WHERE ts <= $1")
            .bind(bound)
            .execute(&mut *tx)
            .await?;
        pruned_events = i64::try_from(done.rows_affected()).unwrap_or(i64::MAX);
        sqlx::query("UPDATE seq_meta SET lower_bound = $1 WHERE id = 1")
            .bind(bound)
            .execute(&mut *tx)
            .await?;
    }
    let lagging_members: Vec<String> = sqlx::query_scalar(
        "SELECT member_id FROM members WHERE enabled AND acknowledged = $1 ORDER BY idx",
    )
    .bind(min_ack)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(PruneOutcome {
        pruned_events,
        lower_bound: bound.max(old_bound),
        lagging_members,
    })
}

// ---- events ----

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EventRow {
    pub ts: i64,
    pub message_id: String,
    pub recipients: Vec<i32>,
    pub broadcast: bool,
    pub payload: Vec<u8>,
}

/// The next events of the total order after `cursor`. A prefix of the order: commit order
/// equals timestamp order, so nothing below a visible event can still appear.
pub async fn read_after(
    pool: &PgPool,
    cursor: i64,
    limit: i64,
) -> Result<Vec<EventRow>, SequencerError> {
    Ok(sqlx::query_as(
        "SELECT ts, message_id, recipients, broadcast, payload FROM events
         WHERE ts > $1 ORDER BY ts LIMIT $2",
    )
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A member's events in `(cursor, upto]`, for a subscription catching up from the table.
pub async fn read_for_member(
    pool: &PgPool,
    idx: i32,
    cursor: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<EventRow>, SequencerError> {
    Ok(sqlx::query_as(
        "SELECT ts, message_id, recipients, broadcast, payload FROM events
         WHERE ts > $1 AND ts <= $2 AND (broadcast OR recipients @> ARRAY[$3]::int[])
         ORDER BY ts LIMIT $4",
    )
    .bind(cursor)
    .bind(upto)
    .bind(idx)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The member's latest event at or before `at`.
pub async fn latest_for_member(
    pool: &PgPool,
    idx: i32,
    at: i64,
) -> Result<Option<i64>, SequencerError> {
    Ok(sqlx::query_scalar(
        "SELECT max(ts) FROM events
         WHERE ts <= $1 AND (broadcast OR recipients @> ARRAY[$2]::int[])",
    )
    .bind(at)
    .bind(idx)
    .fetch_one(pool)
    .await?)
}

/// A validated submission ready to be written.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub sender: i32,
    pub message_id: String,
    pub max_sequencing_time: i64,
    pub recipients: Vec<i32>,
    pub broadcast: bool,
    pub payload: Vec<u8>,
}

/// Sequences a batch in one statement, run as its own transaction: it takes the head lock
/// (the `seq_head` row), reserves one timestamp per submission, inserts by position those
/// within their max sequencing time (skipping pairs that already exist), advances the head
/// and notifies the readers; the lock is released by the commit. No client round trip
/// happens while the lock is held, so the lock is held for one statement and its commit.
/// Commit order therefore equals timestamp order across all nodes. Only when some pair
/// already existed or some item expired is a lookup needed, after the commit.
pub async fn commit_batch(
    writer: &PgPool,
    batch: &[NewEvent],
) -> Result<Assignment, SequencerError> {
    let candidates: Vec<Candidate<'_>> = batch
        .iter()
        .map(|e| Candidate {
            sender: e.sender,
            message_id: &e.message_id,
            max_sequencing_time: e.max_sequencing_time,
        })
        .collect();
    let (base, inserted) = sequence(writer, batch).await?;
    let assignment = order::assign(base, &candidates);
    let check = order::unresolved(&candidates, &assignment, &inserted);
    if check.is_empty() {
        return Ok(assignment);
    }
    // Every row the insert conflicted with was committed before our statement took the
    // lock (or by the statement itself), so the lookup sees it unless it was pruned since.
    let existing = existing_pairs(writer, &check).await?;
    Ok(order::resolve(
        assignment,
        &candidates,
        &inserted,
        &existing,
    ))
}

/// The stored timestamps of those of `pairs` that exist.
async fn existing_pairs(
    db: &PgPool,
    pairs: &[(i32, &str)],
) -> Result<HashMap<(i32, String), i64>, SequencerError> {
    let senders: Vec<i32> = pairs.iter().map(|p| p.0).collect();
    let ids: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    Ok(sqlx::query_as::<_, (i32, String, i64)>(
        "SELECT e.sender, e.message_id, e.ts FROM events e
         JOIN UNNEST($1::int[], $2::text[]) AS b(sender, message_id)
           ON e.sender = b.sender AND e.message_id = b.message_id",
    )
    .bind(&senders)
    .bind(&ids)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(s, m, ts)| ((s, m), ts))
    .collect())
}

/// The statement of [`commit_batch`]: returns the batch's base timestamp and the
/// timestamps actually inserted. Submission `i` (from 0) is stored at `base + i` when that
/// is within its max sequencing time, exactly as [`order::assign`] decides.
async fn sequence(db: &PgPool, batch: &[NewEvent]) -> Result<(i64, HashSet<i64>), SequencerError> {
    let mut sender = Vec::with_capacity(batch.len());
    let mut mid = Vec::with_capacity(batch.len());
    let mut rcpt = Vec::with_capacity(batch.len());
    let mut bc = Vec::with_capacity(batch.len());
    let mut payload = Vec::with_capacity(batch.len());
    let mut mst = Vec::with_capacity(batch.len());
    for e in batch {
        sender.push(e.sender);
        mid.push(e.message_id.as_str());
        // int[][] must be rectangular, so each row's recipients travel as an array
        // literal and are cast per row.
        let list: Vec<String> = e.recipients.iter().map(ToString::to_string).collect();
        rcpt.push(format!("{{{}}}", list.join(",")));
        bc.push(e.broadcast);
        payload.push(e.payload.as_slice());
        mst.push(e.max_sequencing_time);
    }
    // Data-modifying CTEs run exactly once and to completion; `ins` reads `head`, so the
    // head row is locked before anything is inserted. The insert runs in position order,
    // so of a pair repeated in the batch the first occurrence is the one stored.
    let (base, inserted): (i64, Option<Vec<i64>>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH head AS (
             UPDATE seq_head SET ts = GREATEST(ts + 1, {DB_NOW}) + $7::bigint - 1 WHERE id = 1
             RETURNING ts - $7::bigint + 1 AS base, ts AS head
         ), ins AS (
             INSERT INTO events (ts, sender, message_id, recipients, broadcast, payload,
                                 max_sequencing_time)
             SELECT h.base + t.ord - 1, t.sender, t.mid, t.rcpt::int[], t.bc, t.payload, t.mst
             FROM head h,
                  UNNEST($1::int[], $2::text[], $3::text[], $4::bool[], $5::bytea[],
                         $6::bigint[]) WITH ORDINALITY AS t(sender, mid, rcpt, bc, payload, mst, ord)
             WHERE h.base + t.ord - 1 <= t.mst
             ORDER BY t.ord
             ON CONFLICT (sender, message_id) DO NOTHING
             RETURNING ts
         )
         SELECT h.base, (SELECT array_agg(ts) FROM ins) AS inserted
         FROM head h, pg_notify($8::text, h.head::text)"
    )))
    .bind(&sender)
    .bind(&mid)
    .bind(&rcpt)
    .bind(&bc)
    .bind(&payload)
    .bind(&mst)
    .bind(batch.len() as i64)
    .bind(EVENTS_CHANNEL)
    .fetch_one(db)
    .await?;
    Ok((base, inserted.unwrap_or_default().into_iter().collect()))
}
