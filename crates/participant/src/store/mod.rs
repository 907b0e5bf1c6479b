//! All of the participant's SQL, over the schema in `migrations/`.
//!
//! Functions taking a `&mut PgConnection` run inside the caller's transaction: the event
//! processor passes the one transaction of the batch it processes (`batch`), so that every
//! effect of its events commits together with the cursor.

use ordo_core::{Envelope, MemberId, PublicKey, Recipients, Submission, Timestamp};
use ordo_node::db;
pub use ordo_node::db::redact_url;
use ordo_protocol::TopologyState;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection, Row};

use crate::config::ParticipantConfig;
use crate::error::ParticipantError;

pub mod batch;
pub mod prune;

/// The schema version this code reads and writes (`p_meta.schema_version`).
pub const SCHEMA_VERSION: i32 = 4;
const INIT_LOCK: i64 = 0x6f72_646f_5041_5254; // "ordoPART"

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The connections' `application_name`: the replica, so that an operator can tell the
/// replicas' sessions apart in `pg_stat_activity`.
fn app_name(config: &ParticipantConfig) -> String {
    format!(
        "ordo-participant/{}",
        config.replica.name_or(&config.node_name)
    )
}

pub async fn connect(config: &ParticipantConfig) -> Result<PgPool, ParticipantError> {
    let options = db::connect_options(&config.database_url, &app_name(config))?;
    Ok(db::pool_with(config.replica.connect_options(options), config.pool_size).await?)
}

/// Runs the migrations and records the member, under an advisory lock so that replicas
/// initialising at once never race. Returns whether this call provisioned the database.
pub async fn init(
    config: &ParticipantConfig,
    member: &MemberId,
    key: &PublicKey,
) -> Result<bool, ParticipantError> {
    db::with_advisory_lock(
        &config.database_url,
        &app_name(config),
        INIT_LOCK,
        async |conn| init_locked(conn, config, member, key).await,
    )
    .await
}

async fn init_locked(
    conn: &mut PgConnection,
    config: &ParticipantConfig,
    member: &MemberId,
    key: &PublicKey,
) -> Result<bool, ParticipantError> {
    MIGRATOR.run(&mut *conn).await?;
    // The replicas' lease table (each replica also creates it if missing when it starts).
    sqlx::raw_sql(ordo_lease::SCHEMA)
        .execute(&mut *conn)
        .await?;
    let existing: Option<String> = sqlx::query_scalar("SELECT member_id FROM p_meta WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(found) = existing {
        if found != member.as_str() {
            return Err(ParticipantError::WrongDatabase {
                url: redact_url(&config.database_url),
                found,
                expected: member.to_string(),
            });
        }
        // The migrations above brought an older schema up to this version.
        sqlx::query("UPDATE p_meta SET schema_version = $1 WHERE id = 1")
            .bind(SCHEMA_VERSION)
            .execute(&mut *conn)
            .await?;
        return Ok(false);
    }
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO p_meta (id, schema_version, member_id, public_key) VALUES (1, $1, $2, $3)",
    )
    .bind(SCHEMA_VERSION)
    .bind(member.as_str())
    .bind(key.as_bytes().as_slice())
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO p_state (id, topology) VALUES (1, $1)")
        .bind(to_json(&TopologyState::default()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Checks that the database was provisioned for `member`, with this code's schema.
pub async fn check_provisioned(
    pool: &PgPool,
    url: &str,
    member: &MemberId,
) -> Result<(), ParticipantError> {
    let row = db::provisioned(
        pool,
        "SELECT schema_version, member_id FROM p_meta WHERE id = 1",
        Some(SCHEMA_VERSION),
        |why| match why {
            db::Unprovisioned::Missing => ParticipantError::NotProvisioned {
                url: redact_url(url),
            },
            db::Unprovisioned::SchemaVersion { found, expected } => {
                ParticipantError::SchemaVersion {
                    url: redact_url(url),
                    found,
                    expected,
                }
            }
        },
    )
    .await?;
    let found: String = row.try_get("member_id")?;
    if found != member.as_str() {
        return Err(ParticipantError::WrongDatabase {
            url: redact_url(url),
            found,
            expected: member.to_string(),
        });
    }
    Ok(())
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data to a Vec cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn from_json<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ParticipantError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ParticipantError::Internal(format!("corrupt {what} in the database: {e}")))
}

// ---- processing state ----

/// The processing position as stored.
#[derive(Clone, Debug)]
pub struct ProcessingState {
    pub cursor: Timestamp,
    pub ledger_end: i64,
    pub completion_end: i64,
    pub topology: TopologyState,
    /// How far the logs were pruned.
    pub pruned: prune::Pruned,
}

pub async fn load_state(conn: &mut PgConnection) -> Result<ProcessingState, ParticipantError> {
    read_state(conn, "").await
}

/// The offsets of a batch, taken in memory while the state row is locked and written
/// once with the cursor ([`save_position`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Offsets {
    pub ledger_end: i64,
    pub completion_end: i64,
}

impl Offsets {
    /// The next update offset (gapless: the state row is locked until commit).
    pub fn next_ledger(&mut self) -> i64 {
        self.ledger_end += 1;
        self.ledger_end
    }

    pub fn next_completion(&mut self) -> i64 {
        self.completion_end += 1;
        self.completion_end
    }
}

/// Locks the state row for the rest of the transaction (serialising writers of offsets):
/// the cursor and the offsets, without the topology (the processor has it in memory).
pub async fn lock_position(
    conn: &mut PgConnection,
) -> Result<(Timestamp, Offsets), ParticipantError> {
    let (cursor, ledger_end, completion_end): (i64, i64, i64) = sqlx::query_as(
        "SELECT cursor_ts, ledger_end, completion_end FROM p_state WHERE id = 1 FOR UPDATE",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((
        Timestamp(cursor),
        Offsets {
            ledger_end,
            completion_end,
        },
    ))
}

/// Writes the cursor and the offsets a batch took.
pub async fn save_position(
    conn: &mut PgConnection,
    cursor: Timestamp,
    offsets: &Offsets,
) -> Result<(), ParticipantError> {
    sqlx::query(
        "UPDATE p_state SET cursor_ts = $1, ledger_end = $2, completion_end = $3 WHERE id = 1",
    )
    .bind(cursor.micros())
    .bind(offsets.ledger_end)
    .bind(offsets.completion_end)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks the state row for the rest of the transaction (serialising writers of offsets).
pub async fn lock_state(conn: &mut PgConnection) -> Result<ProcessingState, ParticipantError> {
    read_state(conn, " FOR UPDATE").await
}

async fn read_state(
    conn: &mut PgConnection,
    lock: &'static str,
) -> Result<ProcessingState, ParticipantError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT cursor_ts, ledger_end, completion_end, topology, pruned_up_to,
                completions_pruned_up_to
         FROM p_state WHERE id = 1{lock}"
    )))
    .fetch_one(&mut *conn)
    .await?;
    Ok(ProcessingState {
        cursor: Timestamp(row.try_get("cursor_ts")?),
        ledger_end: row.try_get("ledger_end")?,
        completion_end: row.try_get("completion_end")?,
        topology: from_json(&row.try_get::<Vec<u8>, _>("topology")?, "topology")?,
        pruned: prune::Pruned {
            updates: row.try_get("pruned_up_to")?,
            completions: row.try_get("completions_pruned_up_to")?,
        },
    })
}

pub async fn set_cursor(conn: &mut PgConnection, ts: Timestamp) -> Result<(), ParticipantError> {
    sqlx::query("UPDATE p_state SET cursor_ts = $1 WHERE id = 1")
        .bind(ts.micros())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn save_topology(
    conn: &mut PgConnection,
    topology: &TopologyState,
) -> Result<(), ParticipantError> {
    sqlx::query("UPDATE p_state SET topology = $1 WHERE id = 1")
        .bind(to_json(topology))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn ends(pool: &PgPool) -> Result<(i64, i64), ParticipantError> {
    let row = sqlx::query("SELECT ledger_end, completion_end FROM p_state WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok((row.try_get("ledger_end")?, row.try_get("completion_end")?))
}

// ---- contracts ----

/// One active contract visible to some of `parties` (its stored JSON), or `None`.
pub async fn visible_contract(
    pool: &PgPool,
    contract_id: &str,
    parties: &[String],
) -> Result<Option<Vec<u8>>, ParticipantError> {
    Ok(sqlx::query_scalar(
        "SELECT contract FROM p_contracts WHERE contract_id = $1 AND stakeholders && $2",
    )
    .bind(contract_id)
    .bind(parties)
    .fetch_optional(pool)
    .await?)
}

/// The active contracts visible to `parties` (`None`: every active contract of the shard),
/// optionally of `templates`, and the ledger end they are consistent with: one statement,
/// so one snapshot and one round trip (the ledger end comes with every row, and alone in
/// a row without a contract when none matches).
pub async fn active_contracts(
    pool: &PgPool,
    parties: Option<&[String]>,
    templates: &[String],
) -> Result<(i64, Vec<Vec<u8>>), ParticipantError> {
    // Two statements, so that the parties' one uses the stakeholders' index (a generic
    // plan of `$1 OR stakeholders && $2` scans the whole table).
    let rows: Vec<(i64, Option<Vec<u8>>)> = match parties {
        Some(parties) => {
            sqlx::query_as(
                "SELECT s.ledger_end, c.contract FROM p_state s LEFT JOIN LATERAL (
                     SELECT contract, created_offset, contract_id FROM p_contracts
                     WHERE stakeholders && $1
                       AND (cardinality($2::text[]) = 0 OR template_id = ANY($2))
                 ) c ON true
                 WHERE s.id = 1
                 ORDER BY c.created_offset, c.contract_id",
            )
            .bind(parties)
            .bind(templates)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT s.ledger_end, c.contract FROM p_state s LEFT JOIN LATERAL (
                     SELECT contract, created_offset, contract_id FROM p_contracts
                     WHERE cardinality($1::text[]) = 0 OR template_id = ANY($1)
                 ) c ON true
                 WHERE s.id = 1
                 ORDER BY c.created_offset, c.contract_id",
            )
            .bind(templates)
            .fetch_all(pool)
            .await?
        }
    };
    let end = rows.first().map(|(end, _)| *end).ok_or_else(|| {
        ParticipantError::Internal("the participant's state row is missing".into())
    })?;
    Ok((end, rows.into_iter().filter_map(|(_, c)| c).collect()))
}

// ---- pending requests ----

#[derive(Clone, Debug)]
pub struct PendingRow {
    pub request: Timestamp,
    pub root_hash: String,
    pub submitter: String,
    /// The view (JSON of `ViewPayload`); empty when it did not decode.
    pub view: Vec<u8>,
    /// Why this participant's own checks rejected the request; `None` when they passed.
    pub rejection: Option<String>,
}

// ---- updates ----

/// Updates with `after < offset <= until`, at most `limit`, in offset order.
pub async fn updates(
    pool: &PgPool,
    after: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<Vec<u8>>, ParticipantError> {
    Ok(sqlx::query_scalar(
        "SELECT tx FROM p_updates WHERE ledger_offset > $1 AND ledger_offset <= $2
         ORDER BY ledger_offset LIMIT $3",
    )
    .bind(after)
    .bind(until)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn update_by_id(
    pool: &PgPool,
    update_id: &str,
) -> Result<Option<Vec<u8>>, ParticipantError> {
    Ok(
        sqlx::query_scalar("SELECT tx FROM p_updates WHERE update_id = $1")
            .bind(update_id)
            .fetch_optional(pool)
            .await?,
    )
}

// ---- commands and completions ----

/// A command's deduplication key; `act_as` sorted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommandKey {
    pub application_id: String,
    pub command_id: String,
    pub act_as: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandState {
    InFlight,
    Succeeded,
    Rejected,
}

#[derive(Clone, Debug)]
pub struct CommandRow {
    pub key: CommandKey,
    pub submission_id: String,
    pub state: CommandState,
    pub message_id: String,
    pub max_sequencing_time: Timestamp,
    pub request_ts: Option<i64>,
    pub completed_at: Option<i64>,
    pub completion_offset: Option<i64>,
}

fn command_row(row: &sqlx::postgres::PgRow) -> Result<CommandRow, ParticipantError> {
    let state: String = row.try_get("state")?;
    Ok(CommandRow {
        key: CommandKey {
            application_id: row.try_get("application_id")?,
            command_id: row.try_get("command_id")?,
            act_as: row.try_get("act_as")?,
        },
        submission_id: row.try_get("submission_id")?,
        state: match state.as_str() {
            "in_flight" => CommandState::InFlight,
            "succeeded" => CommandState::Succeeded,
            _ => CommandState::Rejected,
        },
        message_id: row.try_get("message_id")?,
        max_sequencing_time: Timestamp(row.try_get("max_sequencing_time")?),
        request_ts: row.try_get("request_ts")?,
        completed_at: row.try_get("completed_at")?,
        completion_offset: row.try_get("completion_offset")?,
    })
}

const COMMAND_COLUMNS: &str = "application_id, command_id, act_as, submission_id, state, \
                               message_id, max_sequencing_time, request_ts, completed_at, \
                               completion_offset";

pub async fn command_by_message_id(
    conn: &mut PgConnection,
    message_id: &str,
) -> Result<Option<CommandRow>, ParticipantError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COMMAND_COLUMNS} FROM p_commands WHERE message_id = $1 FOR UPDATE"
    )))
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(command_row).transpose()
}

/// Whether a command with `key` is in flight, or succeeded at or after `dedup_cutoff`
/// (what makes a new submission of it a duplicate).
pub async fn is_duplicate(
    pool: &PgPool,
    key: &CommandKey,
    dedup_cutoff: i64,
) -> Result<bool, ParticipantError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM p_commands
             WHERE application_id = $1 AND command_id = $2 AND act_as = $3
               AND (state = 'in_flight' OR (state = 'succeeded' AND completed_at >= $4)))",
    )
    .bind(&key.application_id)
    .bind(&key.command_id)
    .bind(&key.act_as)
    .bind(dedup_cutoff)
    .fetch_one(pool)
    .await?)
}

/// What a new in-flight command records.
#[derive(Clone, Debug)]
pub struct NewCommand {
    pub key: CommandKey,
    pub submission_id: String,
    pub nonce: Vec<u8>,
    pub message_id: String,
    pub root_hash: String,
    pub max_sequencing_time: Timestamp,
    pub submitted_at: Timestamp,
}

/// A command to record as in flight, and its confirmation request to send.
pub struct NewSubmission {
    pub command: NewCommand,
    /// A command with the same key that succeeded at or after this (sequencer µs) is a
    /// duplicate.
    pub dedup_cutoff: i64,
    pub request: Submission,
}

/// One column of `rows`, for an `unnest` parameter.
pub(crate) fn column<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Records in-flight commands and the outbox rows of their confirmation requests, in one
/// statement: whether each was new. A command with the same key that is in flight, or
/// that succeeded at or after its `dedup_cutoff`, is a duplicate: nothing is written for
/// it. A rejected or older one is replaced. A key given twice is a duplicate the second
/// time. Atomic under concurrent submissions of the same key.
pub async fn insert_commands(
    conn: &mut PgConnection,
    group: &[NewSubmission],
) -> Result<Vec<bool>, ParticipantError> {
    // The first of each key; the others are duplicates of it (and Postgres refuses to
    // touch a row twice in one statement).
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&NewSubmission> = group
        .iter()
        .filter(|s| seen.insert(&s.command.key))
        .collect();
    if firsts.is_empty() {
        return Ok(Vec::new());
    }
    // text[][] must be rectangular: the act_as lists go as one JSON array each.
    let act_as = column(&firsts, |s| {
        serde_json::Value::from(s.command.key.act_as.clone()).to_string()
    });
    let new: Vec<String> = sqlx::query_scalar(
        "WITH u AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                 $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bytea[])
             AS u(application_id, command_id, act_as, submission_id, nonce, message_id,
                  root_hash, max_sequencing_time, submitted_at, cutoff, submission)
         ), written AS (
             INSERT INTO p_commands AS c (application_id, command_id, act_as, submission_id,
                 state, nonce, message_id, root_hash, max_sequencing_time, submitted_at)
             SELECT application_id, command_id,
                    ARRAY(SELECT jsonb_array_elements_text(act_as::jsonb)), submission_id,
                    'in_flight', nonce, message_id, root_hash, max_sequencing_time, submitted_at
             FROM u
             ON CONFLICT (application_id, command_id, act_as) DO UPDATE SET
                 submission_id = EXCLUDED.submission_id, state = 'in_flight',
                 nonce = EXCLUDED.nonce, message_id = EXCLUDED.message_id,
                 root_hash = EXCLUDED.root_hash,
                 max_sequencing_time = EXCLUDED.max_sequencing_time,
                 submitted_at = EXCLUDED.submitted_at, request_ts = NULL, completed_at = NULL,
                 completion_offset = NULL
             WHERE c.state = 'rejected'
                OR (c.state = 'succeeded' AND c.completed_at <
                    (SELECT cutoff FROM u WHERE u.message_id = EXCLUDED.message_id))
             RETURNING c.message_id
         ), sent AS (
             INSERT INTO p_outbox (message_id, submission, max_sequencing_time, is_command)
             SELECT u.message_id, u.submission, u.max_sequencing_time, true
             FROM u JOIN written USING (message_id)
             ON CONFLICT (message_id) DO NOTHING
         )
         SELECT message_id FROM written",
    )
    .bind(column(&firsts, |s| s.command.key.application_id.as_str()))
    .bind(column(&firsts, |s| s.command.key.command_id.as_str()))
    .bind(&act_as)
    .bind(column(&firsts, |s| s.command.submission_id.as_str()))
    .bind(column(&firsts, |s| s.command.nonce.as_slice()))
    .bind(column(&firsts, |s| s.command.message_id.as_str()))
    .bind(column(&firsts, |s| s.command.root_hash.as_str()))
    .bind(column(&firsts, |s| s.command.max_sequencing_time.micros()))
    .bind(column(&firsts, |s| s.command.submitted_at.micros()))
    .bind(column(&firsts, |s| s.dedup_cutoff))
    .bind(column(&firsts, |s| encode_submission(&s.request)))
    .fetch_all(&mut *conn)
    .await?;
    // Message ids are unique (they carry a fresh nonce): a submission was written if and
    // only if its own id came back.
    let new: std::collections::HashSet<String> = new.into_iter().collect();
    Ok(group
        .iter()
        .map(|s| new.contains(&s.command.message_id))
        .collect())
}

/// A command's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A google.rpc.Code (0 = OK).
    pub code: i32,
    pub message: String,
    pub update_id: String,
    pub ledger_offset: i64,
    /// The error code id (docs/errors.md); empty for OK.
    pub error_code: String,
}

impl Outcome {
    /// The command committed as `update_id` at `ledger_offset`.
    pub fn committed(update_id: String, ledger_offset: i64) -> Self {
        Self {
            code: 0,
            message: String::new(),
            update_id,
            ledger_offset,
            error_code: String::new(),
        }
    }

    /// The command was rejected with `code`.
    pub fn rejected(code: ordo_proto::errors::ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.grpc as i32,
            message: message.into(),
            update_id: String::new(),
            ledger_offset: 0,
            error_code: code.id.to_owned(),
        }
    }
}

/// Completes an in-flight command (no-op if it is not in flight): the command's state and
/// a new completion, in the caller's transaction; the completion.
pub async fn complete_command(
    conn: &mut PgConnection,
    message_id: &str,
    outcome: &Outcome,
    completed_at: Timestamp,
    offsets: &mut Offsets,
) -> Result<Option<CompletionRow>, ParticipantError> {
    let Some(cmd) = command_by_message_id(conn, message_id).await? else {
        return Ok(None);
    };
    complete(conn, cmd, outcome, completed_at, offsets).await
}

/// [`complete_command`] of a command already read.
pub async fn complete(
    conn: &mut PgConnection,
    cmd: CommandRow,
    outcome: &Outcome,
    completed_at: Timestamp,
    offsets: &mut Offsets,
) -> Result<Option<CompletionRow>, ParticipantError> {
    if cmd.state != CommandState::InFlight {
        return Ok(None);
    }
    let offset = offsets.next_completion();
    let state = if outcome.code == 0 {
        "succeeded"
    } else {
        "rejected"
    };
    // One round trip: the command's state and its completion.
    sqlx::query(
        "WITH done AS (
             UPDATE p_commands SET state = $2, completed_at = $3, completion_offset = $4
             WHERE message_id = $1
         )
         INSERT INTO p_completions (completion_offset, application_id, command_id, submission_id,
             act_as, status_code, status_message, update_id, ledger_offset, error_code)
         VALUES ($4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&cmd.message_id)
    .bind(state)
    .bind(completed_at.micros())
    .bind(offset)
    .bind(&cmd.key.application_id)
    .bind(&cmd.key.command_id)
    .bind(&cmd.submission_id)
    .bind(&cmd.key.act_as)
    .bind(outcome.code)
    .bind(&outcome.message)
    .bind(&outcome.update_id)
    .bind(outcome.ledger_offset)
    .bind(&outcome.error_code)
    .execute(&mut *conn)
    .await?;
    Ok(Some(CompletionRow {
        completion_offset: offset,
        application_id: cmd.key.application_id,
        command_id: cmd.key.command_id,
        submission_id: cmd.submission_id,
        act_as: cmd.key.act_as,
        outcome: outcome.clone(),
    }))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletionRow {
    pub completion_offset: i64,
    pub application_id: String,
    pub command_id: String,
    pub submission_id: String,
    pub act_as: Vec<String>,
    pub outcome: Outcome,
}

fn completion_row(row: &sqlx::postgres::PgRow) -> Result<CompletionRow, ParticipantError> {
    Ok(CompletionRow {
        completion_offset: row.try_get("completion_offset")?,
        application_id: row.try_get("application_id")?,
        command_id: row.try_get("command_id")?,
        submission_id: row.try_get("submission_id")?,
        act_as: row.try_get("act_as")?,
        outcome: Outcome {
            code: row.try_get("status_code")?,
            message: row.try_get("status_message")?,
            update_id: row.try_get("update_id")?,
            ledger_offset: row.try_get("ledger_offset")?,
            error_code: row.try_get("error_code")?,
        },
    })
}

/// Completions of `application_id` for commands acting as one of `parties`, after
/// `after`, in order.
pub async fn completions(
    pool: &PgPool,
    application_id: &str,
    parties: &[String],
    after: i64,
    limit: i64,
) -> Result<Vec<CompletionRow>, ParticipantError> {
    let rows = sqlx::query(
        "SELECT * FROM p_completions
         WHERE application_id = $1 AND act_as && $2 AND completion_offset > $3
         ORDER BY completion_offset LIMIT $4",
    )
    .bind(application_id)
    .bind(parties)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(completion_row).collect()
}

// ---- outbox ----

/// An outbox submission as stored before the binary form: JSON with hex contents. Rows of
/// that form (an older version's, until sent) are still read.
#[derive(Serialize, Deserialize)]
struct StoredEnvelope {
    recipients: Vec<MemberId>,
    broadcast: bool,
    content: String,
}

/// A submission as the outbox stores it: the sequencer API's own protobuf form (without
/// the sender), so the contents are stored as they are sent.
pub fn encode_submission(s: &Submission) -> Vec<u8> {
    use prost::Message as _;
    ordo_proto::sequencer::v1::SubmissionRequest {
        sender: String::new(),
        message_id: s.message_id.clone(),
        max_sequencing_time: s.max_sequencing_time.micros(),
        envelopes: s
            .envelopes
            .iter()
            .map(ordo_proto::convert::envelope_to_pb)
            .collect(),
    }
    .encode_to_vec()
}

pub fn decode_submission(
    message_id: &str,
    max_sequencing_time: Timestamp,
    bytes: &[u8],
) -> Result<Submission, ParticipantError> {
    let corrupt = |e: String| ParticipantError::Internal(format!("corrupt outbox submission: {e}"));
    if bytes.first() == Some(&b'[') {
        return decode_json_submission(message_id, max_sequencing_time, bytes);
    }
    let pb = <ordo_proto::sequencer::v1::SubmissionRequest as prost::Message>::decode(bytes)
        .map_err(|e| corrupt(e.to_string()))?;
    let (_, mut submission) =
        ordo_proto::convert::submission_from_pb(pb).map_err(|e| corrupt(e.to_string()))?;
    submission.message_id = message_id.to_owned();
    submission.max_sequencing_time = max_sequencing_time;
    Ok(submission)
}

fn decode_json_submission(
    message_id: &str,
    max_sequencing_time: Timestamp,
    bytes: &[u8],
) -> Result<Submission, ParticipantError> {
    let envelopes: Vec<StoredEnvelope> = from_json(bytes, "outbox submission")?;
    let envelopes = envelopes
        .into_iter()
        .map(|e| {
            Ok(Envelope {
                recipients: Recipients {
                    members: e.recipients.into_iter().collect(),
                    broadcast: e.broadcast,
                },
                content: hex::decode(&e.content).map_err(|err| {
                    ParticipantError::Internal(format!("corrupt outbox envelope: {err}"))
                })?,
            })
        })
        .collect::<Result<Vec<_>, ParticipantError>>()?;
    Ok(Submission {
        message_id: message_id.to_owned(),
        max_sequencing_time,
        envelopes,
    })
}

#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub submission: Submission,
    pub is_command: bool,
}

pub async fn outbox(pool: &PgPool, limit: i64) -> Result<Vec<OutboxRow>, ParticipantError> {
    let rows = sqlx::query(
        "SELECT message_id, submission, max_sequencing_time, is_command FROM p_outbox
         ORDER BY max_sequencing_time LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("message_id")?;
            let mst = Timestamp(row.try_get("max_sequencing_time")?);
            Ok(OutboxRow {
                submission: decode_submission(&id, mst, &row.try_get::<Vec<u8>, _>("submission")?)?,
                is_command: row.try_get("is_command")?,
            })
        })
        .collect()
}

pub async fn delete_outbox(
    conn: &mut PgConnection,
    message_ids: &[String],
) -> Result<(), ParticipantError> {
    if message_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM p_outbox WHERE message_id = ANY($1)")
        .bind(message_ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod commands_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn outbox_submissions_round_trip() {
        let key = ordo_core::KeyPair::generate();
        let m = MemberId::new("p1", &key.public()).unwrap();
        let s = Submission {
            message_id: "m1".into(),
            max_sequencing_time: Timestamp(42),
            envelopes: vec![Envelope {
                recipients: Recipients::members([m]),
                content: vec![1, 2, 3],
            }],
        };
        let back = decode_submission("m1", Timestamp(42), &encode_submission(&s)).unwrap();
        assert_eq!(back, s);
        // The earlier JSON form is still read.
        let json = format!(
            r#"[{{"recipients":["{}"],"broadcast":false,"content":"010203"}}]"#,
            s.envelopes[0].recipients.members.iter().next().unwrap()
        );
        let back = decode_submission("m1", Timestamp(42), json.as_bytes()).unwrap();
        assert_eq!(back, s);
    }
}
