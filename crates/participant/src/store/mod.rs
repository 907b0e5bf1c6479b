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
mod commands;
pub mod prune;

pub(crate) use self::commands::column;
pub use self::commands::{
    CommandKey, CommandRow, CommandState, CompletionRow, DedupPeriod, NewCommand, NewSubmission,
    Outcome, command_by_message_id, complete, complete_command, completions, insert_commands,
    is_duplicate,
};

/// The schema version this code reads and writes (`p_meta.schema_version`).
pub const SCHEMA_VERSION: i32 = 6;
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

/// How many contracts are active on the shard (the gauge's value at start and at each
/// term's start; batches then maintain it from their counts).
pub async fn count_active_contracts(conn: &mut PgConnection) -> Result<i64, ParticipantError> {
    let row = sqlx::query("SELECT count(*) AS n FROM p_contracts")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("n")?)
}

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

/// The id and row of the active contract with key `key_hash` that one of `parties` is a
/// stakeholder of, if any.
pub async fn visible_contract_by_key(
    pool: &PgPool,
    key_hash: &str,
    parties: &[String],
) -> Result<Option<(String, Vec<u8>)>, ParticipantError> {
    Ok(sqlx::query_as(
        "SELECT contract_id, contract FROM p_contracts WHERE key_hash = $1 AND stakeholders && $2",
    )
    .bind(key_hash)
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
