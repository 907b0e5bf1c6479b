//! Commands (the deduplication state of every submission) and their completions: the
//! in-flight record each submission writes, and the completion that ends it.

use ordo_core::{Submission, Timestamp};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

use super::{Offsets, encode_submission};
use crate::error::ParticipantError;

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
    pub dedup: DedupPeriod,
    pub state: CommandState,
    pub message_id: String,
    pub max_sequencing_time: Timestamp,
    pub request_ts: Option<i64>,
    pub completed_at: Option<i64>,
    pub completion_offset: Option<i64>,
}

pub(super) fn command_row(row: &sqlx::postgres::PgRow) -> Result<CommandRow, ParticipantError> {
    let state: String = row.try_get("state")?;
    Ok(CommandRow {
        key: CommandKey {
            application_id: row.try_get("application_id")?,
            command_id: row.try_get("command_id")?,
            act_as: row.try_get("act_as")?,
        },
        submission_id: row.try_get("submission_id")?,
        dedup: DedupPeriod {
            duration_us: row.try_get("dedup_duration_us")?,
            offset: row.try_get("dedup_offset")?,
        },
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

pub(super) const COMMAND_COLUMNS: &str = "application_id, command_id, act_as, submission_id, state, \
                               message_id, max_sequencing_time, request_ts, completed_at, \
                               completion_offset, dedup_duration_us, dedup_offset";

/// The deduplication period a command was submitted with, echoed in its completion: a
/// duration (µs), or a completion offset after which a success makes a resubmission a
/// duplicate. Both 0: a command of an earlier version, which did not record it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupPeriod {
    pub duration_us: i64,
    pub offset: i64,
}

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

/// Whether a command with `key` is in flight, or succeeded at or after `dedup_cutoff` and
/// after completion offset `after_offset` (what makes a new submission of it a duplicate).
pub async fn is_duplicate(
    pool: &PgPool,
    key: &CommandKey,
    dedup_cutoff: i64,
    after_offset: i64,
) -> Result<bool, ParticipantError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM p_commands
             WHERE application_id = $1 AND command_id = $2 AND act_as = $3
               AND (state = 'in_flight' OR (state = 'succeeded' AND completed_at >= $4
                                            AND completion_offset > $5)))",
    )
    .bind(&key.application_id)
    .bind(&key.command_id)
    .bind(&key.act_as)
    .bind(dedup_cutoff)
    .bind(after_offset)
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
    pub dedup: DedupPeriod,
}

/// A command to record as in flight, and its confirmation request to send.
pub struct NewSubmission {
    pub command: NewCommand,
    /// A command with the same key that succeeded at or after this (sequencer µs), with a
    /// completion offset after `dedup.offset`, is a duplicate.
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
                 $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bytea[],
                 $12::bigint[], $13::bigint[])
             AS u(application_id, command_id, act_as, submission_id, nonce, message_id,
                  root_hash, max_sequencing_time, submitted_at, cutoff, submission,
                  dedup_duration_us, dedup_offset)
         ), written AS (
             INSERT INTO p_commands AS c (application_id, command_id, act_as, submission_id,
                 state, nonce, message_id, root_hash, max_sequencing_time, submitted_at,
                 dedup_duration_us, dedup_offset)
             SELECT application_id, command_id,
                    ARRAY(SELECT jsonb_array_elements_text(act_as::jsonb)), submission_id,
                    'in_flight', nonce, message_id, root_hash, max_sequencing_time, submitted_at,
                    dedup_duration_us, dedup_offset
             FROM u
             ON CONFLICT (application_id, command_id, act_as) DO UPDATE SET
                 submission_id = EXCLUDED.submission_id, state = 'in_flight',
                 nonce = EXCLUDED.nonce, message_id = EXCLUDED.message_id,
                 root_hash = EXCLUDED.root_hash,
                 max_sequencing_time = EXCLUDED.max_sequencing_time,
                 submitted_at = EXCLUDED.submitted_at, request_ts = NULL, completed_at = NULL,
                 completion_offset = NULL, dedup_duration_us = EXCLUDED.dedup_duration_us,
                 dedup_offset = EXCLUDED.dedup_offset
             WHERE c.state = 'rejected'
                OR (c.state = 'succeeded' AND (
                    c.completed_at < (SELECT cutoff FROM u WHERE u.message_id = EXCLUDED.message_id)
                    OR c.completion_offset <= EXCLUDED.dedup_offset))
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
    .bind(column(&firsts, |s| s.command.dedup.duration_us))
    .bind(column(&firsts, |s| s.command.dedup.offset))
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
             act_as, status_code, status_message, update_id, ledger_offset, error_code,
             dedup_duration_us, dedup_offset)
         VALUES ($4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
    .bind(cmd.dedup.duration_us)
    .bind(cmd.dedup.offset)
    .execute(&mut *conn)
    .await?;
    Ok(Some(CompletionRow {
        completion_offset: offset,
        application_id: cmd.key.application_id,
        command_id: cmd.key.command_id,
        submission_id: cmd.submission_id,
        act_as: cmd.key.act_as,
        outcome: outcome.clone(),
        dedup: cmd.dedup,
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
    pub dedup: DedupPeriod,
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
        dedup: DedupPeriod {
            duration_us: row.try_get("dedup_duration_us")?,
            offset: row.try_get("dedup_offset")?,
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
