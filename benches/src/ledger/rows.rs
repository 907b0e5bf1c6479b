//! The raw-rows baseline: the rows one committed transaction leaves in the nodes'
//! databases, written straight into copies of the nodes' tables, as fast as the cluster
//! commits them.
//!
//! The copies are the nodes' own migrations (so the same columns, keys and indexes), run
//! in a scratch database of the network's cluster, one schema per database they stand
//! for: `shard_1`, `shard_2`, `mediator`, `sequencer`. The rows' contents are modelled on
//! the run's own rows (an update's transaction, a contract, the last few hundred events),
//! so their sizes are the real ones.
//!
//! Only what stays is written: what a transaction's outcome is made of (its updates,
//! contracts, archived ids, command and completion, verdict and events), not the rows a
//! node writes and deletes on the way (pending requests, outboxes, locks) nor updates of
//! rows (cursors, command states). That is the floor any design of the nodes pays.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use super::Workload;

/// The network's databases.
pub struct Databases {
    /// Any database of the cluster: the scratch database is created from there.
    pub server: String,
    pub shards: [String; 2],
    pub sequencer: String,
}

/// What one transaction leaves in the nodes' databases.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Leaves {
    /// The shard (0: shard-1, 1: shard-2) whose client submitted it: its command and its
    /// completion. Both shards get the update.
    submitter: usize,
    /// Per shard: whether it stores the contract the transaction creates.
    created: [bool; 2],
    /// Per shard: whether it archives the contract the transaction consumes.
    archived: [bool; 2],
    /// Sequenced events: the request (one submission: the views and the informee tree),
    /// one response per participant hosting a confirming party, the verdict.
    events: usize,
}

/// The transactions of a scenario, in the proportions the load makes them.
#[derive(Clone)]
pub struct Shape {
    cycle: Vec<Leaves>,
}

impl Shape {
    /// The Iou's issuer (its signatory) is on shard-1, so shard-1 confirms and stores
    /// every Iou; an owner (an observer, and the controller of Transfer) is on either
    /// shard, and the load's clients are spread over both.
    pub fn of(workload: Workload) -> Self {
        let cycle = match workload {
            // The issuer on shard-1 creates an Iou for a holder on shard-2; the issuer
            // alone confirms.
            Workload::Issue => vec![Leaves {
                submitter: 0,
                created: [true, true],
                archived: [false, false],
                events: 3,
            }],
            // Half the transfers go from shard-1 to shard-2, half back; the sender
            // confirms besides the issuer, so a sender on shard-2 adds a response.
            Workload::Transfer => vec![
                Leaves {
                    submitter: 0,
                    created: [true, true],
                    archived: [true, false],
                    events: 3,
                },
                Leaves {
                    submitter: 1,
                    created: [true, false],
                    archived: [true, true],
                    events: 4,
                },
            ],
        };
        Self { cycle }
    }

    fn leaves(&self, k: u64) -> Leaves {
        self.cycle[(k % self.cycle.len() as u64) as usize]
    }

    pub fn events_per_transaction(&self) -> f64 {
        self.average(|l| l.events)
    }

    fn average(&self, count: impl Fn(&Leaves) -> usize) -> f64 {
        self.cycle.iter().map(count).sum::<usize>() as f64 / self.cycle.len() as f64
    }

    /// Rows per transaction by table, both shards together.
    fn rows_per_transaction(&self) -> BTreeMap<&'static str, f64> {
        let on = |flags: [bool; 2]| flags.iter().filter(|f| **f).count();
        BTreeMap::from([
            ("p_updates", 2.0),
            ("p_contracts", self.average(|l| on(l.created))),
            ("p_archived", self.average(|l| on(l.archived))),
            ("p_commands", 1.0),
            ("p_completions", 1.0),
            ("verdicts", 1.0),
            ("events", self.events_per_transaction()),
        ])
    }
}

/// An event of the run, as the sequencer stored it.
#[derive(Clone, sqlx::FromRow)]
pub struct EventTemplate {
    pub sender: i32,
    pub recipients: Vec<i32>,
    pub payload: Vec<u8>,
}

/// The run's own rows the baseline's rows are modelled on.
#[derive(Clone)]
pub struct Templates {
    /// The latest update's transaction on shard-1.
    tx: Vec<u8>,
    /// The latest contract stored on shard-1.
    template_id: String,
    stakeholders: Vec<String>,
    contract: Vec<u8>,
    /// The latest events that are neither broadcasts (topology) nor a member's message to
    /// itself (time proofs): requests, responses and verdicts in the run's proportions.
    pub events: Vec<EventTemplate>,
}

/// Events modelled on: about a hundred transactions' worth.
const EVENT_TEMPLATES: i64 = 350;

impl Templates {
    pub async fn sample(db: &Databases) -> Result<Self> {
        let mut shard = PgConnection::connect(&db.shards[0]).await?;
        let (tx,): (Vec<u8>,) =
            sqlx::query_as("SELECT tx FROM p_updates ORDER BY ledger_offset DESC LIMIT 1")
                .fetch_optional(&mut shard)
                .await?
                .context("shard-1 holds no update to model the rows on: did the load commit?")?;
        let (template_id, stakeholders, contract): (String, Vec<String>, Vec<u8>) = sqlx::query_as(
            "SELECT template_id, stakeholders, contract FROM p_contracts
                 ORDER BY created_offset DESC LIMIT 1",
        )
        .fetch_optional(&mut shard)
        .await?
        .context("shard-1 holds no contract to model the rows on")?;
        shard.close().await?;
        let mut sequencer = PgConnection::connect(&db.sequencer).await?;
        let events: Vec<EventTemplate> = sqlx::query_as(
            "SELECT sender, recipients, payload FROM events
             WHERE NOT broadcast AND recipients <> ARRAY[sender]
             ORDER BY ts DESC LIMIT $1",
        )
        .bind(EVENT_TEMPLATES)
        .fetch_all(&mut sequencer)
        .await?;
        sequencer.close().await?;
        ensure!(
            !events.is_empty(),
            "the sequencer holds no event of a transaction to model the rows on"
        );
        Ok(Self {
            tx,
            template_id,
            stakeholders,
            contract,
            events,
        })
    }
}

#[derive(Serialize)]
pub struct Figures {
    /// Rows one transaction leaves, by table (both shards together; an average over the
    /// scenario's kinds of transaction).
    pub rows_per_transaction: BTreeMap<&'static str, f64>,
    /// Concurrent writers, each committing batches of `batch` transactions.
    pub writers: usize,
    pub batch: usize,
    /// Each batch commits once per database it writes (shard-1, shard-2, the mediator,
    /// the sequencer), one after another, as the nodes each commit their own.
    pub commits_per_batch: usize,
    pub seconds: f64,
    pub transactions: u64,
    pub transactions_per_sec: f64,
    pub rows_per_sec: f64,
    /// Mean size of the event payloads written (bytes).
    pub event_payload_bytes: f64,
}

const SCRATCH: &str = "ordo_bench_scratch";

/// The nodes' migrations: the scratch tables are the nodes' own.
const PARTICIPANT: [&str; 2] = [
    include_str!("../../../crates/participant/migrations/0001_participant.sql"),
    include_str!("../../../crates/participant/migrations/0002_trust.sql"),
];
const MEDIATOR: &str = include_str!("../../../crates/mediator/migrations/0001_mediator.sql");
const SEQUENCER: &str = include_str!("../../../crates/sequencer/migrations/0001_sequencer.sql");
const SHARD_SCHEMAS: [&str; 2] = ["shard_1", "shard_2"];

/// `writers` concurrent writers, each writing batches of `writers` transactions for
/// `window`: transactions and rows per second.
pub async fn measure(
    db: &Databases,
    shape: &Shape,
    templates: &Templates,
    writers: usize,
    window: Duration,
) -> Result<Figures> {
    let url = with_database(&db.server, SCRATCH);
    let mut admin = PgConnection::connect(&db.server).await?;
    create_scratch(&mut admin, &url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(writers as u32 + 1)
        .connect(&url)
        .await?;
    let batch = writers;
    let writing = Writing {
        pool: pool.clone(),
        shape: shape.clone(),
        templates: templates.clone(),
        next: AtomicU64::new(0),
        events_next: AtomicU64::new(0),
    };
    let writing = Arc::new(writing);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let writing = writing.clone();
        tasks.push(tokio::spawn(async move {
            let (mut transactions, mut rows) = (0u64, 0u64);
            while started.elapsed() < window {
                rows += writing.batch(batch).await?;
                transactions += batch as u64;
            }
            Ok::<_, anyhow::Error>((transactions, rows))
        }));
    }
    let (mut transactions, mut rows) = (0, 0);
    for t in tasks {
        let (n, r) = t.await??;
        transactions += n;
        rows += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {SCRATCH}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let payloads = &templates.events;
    Ok(Figures {
        rows_per_transaction: shape.rows_per_transaction(),
        writers,
        batch,
        commits_per_batch: 4,
        seconds: (seconds * 100.0).round() / 100.0,
        transactions,
        transactions_per_sec: (transactions as f64 / seconds).round(),
        rows_per_sec: (rows as f64 / seconds).round(),
        event_payload_bytes: (payloads.iter().map(|e| e.payload.len()).sum::<usize>() as f64
            / payloads.len() as f64)
            .round(),
    })
}

/// The cluster's `fsync` and `synchronous_commit`.
pub async fn durability(server: &str) -> Result<(String, String)> {
    let mut conn = PgConnection::connect(server).await?;
    let (fsync,): (String,) = sqlx::query_as("SHOW fsync").fetch_one(&mut conn).await?;
    let (sync,): (String,) = sqlx::query_as("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((fsync, sync))
}

/// A fresh scratch database with the nodes' tables, one schema per node's database.
async fn create_scratch(admin: &mut PgConnection, url: &str) -> Result<()> {
    // The name is ours, never input.
    for statement in [
        format!("DROP DATABASE IF EXISTS {SCRATCH}"),
        format!("CREATE DATABASE {SCRATCH}"),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *admin)
            .await?;
    }
    let mut conn = PgConnection::connect(url).await?;
    let mut ddl = String::new();
    for schema in SHARD_SCHEMAS {
        ddl.push_str(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};\n"
        ));
        for migration in PARTICIPANT {
            ddl.push_str(migration);
            ddl.push('\n');
        }
    }
    for (schema, migration) in [("mediator", MEDIATOR), ("sequencer", SEQUENCER)] {
        ddl.push_str(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};\n{migration}\n"
        ));
    }
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut conn)
        .await
        .context("creating the scratch tables from the nodes' migrations")?;
    conn.close().await?;
    Ok(())
}

/// `url` with its database (the path) replaced by `db`, keeping the query.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..path]),
        None => format!("{}/{db}", &base[..path]),
    }
}

/// What the writers share.
struct Writing {
    pool: PgPool,
    shape: Shape,
    templates: Templates,
    /// The next transaction's number: every key of its rows derives from it.
    next: AtomicU64,
    /// The next event template to use.
    events_next: AtomicU64,
}

/// One shard's rows of a batch.
#[derive(Default)]
struct ShardRows {
    /// (ledger offset, update id)
    updates: (Vec<i64>, Vec<String>),
    /// (contract id, created offset)
    created: (Vec<String>, Vec<i64>),
    archived: Vec<String>,
    /// (command id, hash, key): the hash stands for the update id, the message id's
    /// hash and the root hash, all of a hash's length.
    commands: (Vec<String>, Vec<String>, Vec<i64>),
}

/// A batch's events, column by column.
#[derive(Default)]
struct EventRows<'a> {
    ts: Vec<i64>,
    sender: Vec<i32>,
    message_id: Vec<String>,
    /// Array literals (`{3,4}`): `int[][]` must be rectangular.
    recipients: Vec<String>,
    payload: Vec<&'a [u8]>,
}

impl Writing {
    /// Writes the rows of `size` transactions, one database transaction per node's
    /// database; the rows written.
    async fn batch(&self, size: usize) -> Result<u64> {
        let first = self.next.fetch_add(size as u64, Ordering::Relaxed);
        let mut shards: [ShardRows; 2] = Default::default();
        let (mut verdicts, mut roots) = (Vec::new(), Vec::new());
        let mut events = EventRows::default();
        for k in first..first + size as u64 {
            let leaves = self.shape.leaves(k);
            let key = k as i64;
            for (s, shard) in shards.iter_mut().enumerate() {
                shard.updates.0.push(key);
                shard.updates.1.push(hex64(key, 1));
                if leaves.created[s] {
                    shard.created.0.push(hex64(key, 2));
                    shard.created.1.push(key);
                }
                if leaves.archived[s] {
                    shard.archived.push(hex64(key, 3));
                }
            }
            let commands = &mut shards[leaves.submitter].commands;
            commands.0.push(format!("ld-bench-m-c{}-{k}", k % 64));
            commands.1.push(hex64(key, 4));
            commands.2.push(key);
            verdicts.push(key);
            roots.push(hex64(key, 5));
            let templates = &self.templates.events;
            let from = self
                .events_next
                .fetch_add(leaves.events as u64, Ordering::Relaxed);
            for j in 0..leaves.events as u64 {
                let t = &templates[((from + j) % templates.len() as u64) as usize];
                let ts = key * 8 + j as i64;
                events.ts.push(ts);
                events.sender.push(t.sender);
                events.message_id.push(format!("bench-{ts}"));
                let list: Vec<String> = t.recipients.iter().map(ToString::to_string).collect();
                events.recipients.push(format!("{{{}}}", list.join(",")));
                events.payload.push(&t.payload);
            }
        }
        let mut rows = 0;
        for (schema, shard) in SHARD_SCHEMAS.iter().zip(&shards) {
            rows += self.write_shard(schema, shard).await?;
        }
        sqlx::query(
            "INSERT INTO mediator.verdicts (request_id, root_hash, outcome, reasons, decided_at)
             SELECT k, r, 'approve', '{}', k FROM UNNEST($1::bigint[], $2::text[]) AS t(k, r)",
        )
        .bind(&verdicts)
        .bind(&roots)
        .execute(&self.pool)
        .await?;
        rows += verdicts.len() as u64;
        sqlx::query(
            "INSERT INTO sequencer.events
                 (ts, sender, message_id, recipients, broadcast, payload, max_sequencing_time)
             SELECT t, s, m, r::int[], false, p, t + 30000000
             FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bytea[])
                  AS u(t, s, m, r, p)",
        )
        .bind(&events.ts)
        .bind(&events.sender)
        .bind(&events.message_id)
        .bind(&events.recipients)
        .bind(&events.payload)
        .execute(&self.pool)
        .await?;
        rows += events.ts.len() as u64;
        Ok(rows)
    }

    /// One shard's rows of a batch in one transaction; the rows written.
    async fn write_shard(&self, schema: &str, rows: &ShardRows) -> Result<u64> {
        let t = &self.templates;
        let mut tx = self.pool.begin().await?;
        // The schema names are ours, never input.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}.p_updates (ledger_offset, update_id, tx)
             SELECT o, u, $3 FROM UNNEST($1::bigint[], $2::text[]) AS t(o, u)"
        )))
        .bind(&rows.updates.0)
        .bind(&rows.updates.1)
        .bind(&t.tx)
        .execute(&mut *tx)
        .await?;
        if !rows.created.0.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {schema}.p_contracts
                     (contract_id, template_id, stakeholders, contract, created_offset)
                 SELECT c, $2, $3, $4, o FROM UNNEST($1::text[], $5::bigint[]) AS t(c, o)"
            )))
            .bind(&rows.created.0)
            .bind(&t.template_id)
            .bind(&t.stakeholders)
            .bind(&t.contract)
            .bind(&rows.created.1)
            .execute(&mut *tx)
            .await?;
        }
        if !rows.archived.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {schema}.p_archived (contract_id, archived_at)
                 SELECT c, 0 FROM UNNEST($1::text[]) AS t(c)"
            )))
            .bind(&rows.archived)
            .execute(&mut *tx)
            .await?;
        }
        let (commands, hashes, keys) = &rows.commands;
        if !commands.is_empty() {
            let act_as = &t.stakeholders[..1.min(t.stakeholders.len())];
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {schema}.p_commands
                     (application_id, command_id, act_as, submission_id, state, nonce,
                      message_id, root_hash, max_sequencing_time, request_ts, submitted_at,
                      completed_at, completion_offset)
                 SELECT 'ordo-load', c, $2, '', 'succeeded', $3, 'cmd-' || h, h, k, k, k, k, k
                 FROM UNNEST($1::text[], $4::text[], $5::bigint[]) AS t(c, h, k)"
            )))
            .bind(commands)
            .bind(act_as)
            .bind([0x5au8; 16].as_slice())
            .bind(hashes)
            .bind(keys)
            .execute(&mut *tx)
            .await?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {schema}.p_completions
                     (completion_offset, application_id, command_id, submission_id, act_as,
                      status_code, status_message, update_id, ledger_offset)
                 SELECT k, 'ordo-load', c, '', $2, 0, '', h, k
                 FROM UNNEST($1::text[], $3::text[], $4::bigint[]) AS t(c, h, k)"
            )))
            .bind(commands)
            .bind(act_as)
            .bind(hashes)
            .bind(keys)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(
            (rows.updates.0.len() + rows.created.0.len() + rows.archived.len() + 2 * commands.len())
                as u64,
        )
    }
}

/// 64 hex digits (a hash's length) unique per `key` and `kind`.
fn hex64(key: i64, kind: u8) -> String {
    format!("{kind:02x}{key:062x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_leaves_its_rows_on_both_shards() {
        let transfer = Shape::of(Workload::Transfer);
        let rows = transfer.rows_per_transaction();
        assert_eq!(rows["p_updates"], 2.0);
        // shard-1 (the issuer's) stores and archives every Iou, shard-2 one of the two.
        assert_eq!(rows["p_contracts"], 1.5);
        assert_eq!(rows["p_archived"], 1.5);
        assert_eq!(transfer.events_per_transaction(), 3.5);
        let issue = Shape::of(Workload::Issue).rows_per_transaction();
        assert_eq!((issue["p_contracts"], issue["p_archived"]), (2.0, 0.0));
        assert_eq!(issue["events"], 3.0);
    }

    #[test]
    fn the_scratch_url_keeps_the_server_and_query() {
        assert_eq!(
            with_database("postgres://ordo@127.0.0.1:5432/ordo_sequencer", "x"),
            "postgres://ordo@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_ne!(hex64(7, 1), hex64(7, 2));
        assert_eq!(hex64(i64::MAX, 5).len(), 64);
    }
}
