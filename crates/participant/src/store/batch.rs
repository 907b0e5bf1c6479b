//! A batch's reads and writes (the event processor's SQL): one statement per table to
//! read what the batch can touch (`read`), and one set-based statement per kind of change
//! to write what it decided (`write`), whatever the number of events, inside the batch's
//! transaction.

use std::collections::{HashMap, HashSet};

use ordo_core::Timestamp;
use sqlx::{PgConnection, Row};

use super::commands::{COMMAND_COLUMNS, command_row};
use super::{PendingRow, column};
use crate::apply::{Loaded, Writes};
use crate::conflict::{ContractState, KeyState};
use crate::error::ParticipantError;

/// What a batch asks for.
#[derive(Debug, Default)]
pub struct Wanted {
    /// The inputs of its views.
    pub inputs: Vec<String>,
    /// The contracts its views create.
    pub created: Vec<String>,
    /// The keys its views assign or find free (hashes).
    pub keys: Vec<String>,
    /// The requests its verdicts decide.
    pub decided: Vec<i64>,
    /// The message ids of its own events.
    pub message_ids: Vec<String>,
    /// Its last event: what comes due before it is read too.
    pub last: Timestamp,
}

/// Reads what a batch can touch (see [`Loaded`]): three statements.
pub async fn read(conn: &mut PgConnection, wanted: &Wanted) -> Result<Loaded, ParticipantError> {
    let mut loaded = Loaded::default();
    if !wanted.inputs.is_empty() || !wanted.created.is_empty() {
        // Active inputs with their rows, and created ids known here (active or archived).
        let rows = sqlx::query(
            "SELECT contract_id, locked_by, contract FROM p_contracts WHERE contract_id = ANY($1)
             UNION ALL
             SELECT contract_id, NULL, NULL FROM p_contracts WHERE contract_id = ANY($2)
             UNION ALL
             SELECT contract_id, NULL, NULL FROM p_archived WHERE contract_id = ANY($2)",
        )
        .bind(&wanted.inputs)
        .bind(&wanted.created)
        .fetch_all(&mut *conn)
        .await?;
        let mut contracts = HashMap::new();
        let mut known = HashSet::new();
        for row in rows {
            let contract_id: String = row.try_get("contract_id")?;
            let Some(bytes) = row.try_get::<Option<Vec<u8>>, _>("contract")? else {
                known.insert(contract_id);
                continue;
            };
            let locked_by: Option<i64> = row.try_get("locked_by")?;
            let stored = crate::events::StoredContract::instance_of(&bytes);
            if stored.is_none() {
                tracing::warn!(contract = %contract_id, "stored contract does not parse");
            }
            contracts.insert(
                contract_id,
                ContractState {
                    locked_by: locked_by.map(Timestamp),
                    stored,
                },
            );
        }
        loaded.contracts = contracts;
        loaded.known = known;
    }
    if !wanted.keys.is_empty() {
        // Each key's holder and lock (one row each at most: the maintainers' shard never
        // stores two active contracts with one key).
        let rows = sqlx::query(
            "SELECT key_hash, contract_id, NULL::bigint AS request_ts FROM p_contracts
             WHERE key_hash = ANY($1)
             UNION ALL
             SELECT key_hash, NULL, request_ts FROM p_key_locks WHERE key_hash = ANY($1)",
        )
        .bind(&wanted.keys)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let state: &mut KeyState = loaded.keys.entry(row.try_get("key_hash")?).or_default();
            if let Some(holder) = row.try_get::<Option<String>, _>("contract_id")? {
                state.holder = Some(holder);
            }
            if let Some(request) = row.try_get::<Option<i64>, _>("request_ts")? {
                state.locked_by = Some(Timestamp(request));
            }
        }
    }
    let rows = sqlx::query(
        "SELECT request_ts, root_hash, submitter, view, rejection, deadline FROM p_pending
         WHERE request_ts = ANY($1) OR deadline < $2",
    )
    .bind(&wanted.decided)
    .bind(wanted.last.micros())
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let deadline = Timestamp(row.try_get("deadline")?);
        loaded.pending.push((
            PendingRow {
                request: Timestamp(row.try_get("request_ts")?),
                root_hash: row.try_get("root_hash")?,
                submitter: row.try_get("submitter")?,
                view: row.try_get("view")?,
                rejection: row.try_get("rejection")?,
            },
            deadline,
        ));
    }
    let requests: Vec<i64> = loaded
        .pending
        .iter()
        .map(|(row, _)| row.request.micros())
        .collect();
    // Two branches: the unsequenced commands come from an ordered index scan, which marks
    // the index entries of dead row versions as it meets them (a bitmap scan does not, so
    // every batch would visit every dead version of every command until the next vacuum).
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "(SELECT {COMMAND_COLUMNS} FROM p_commands
          WHERE message_id = ANY($1) OR request_ts = ANY($2))
         UNION
         (SELECT {COMMAND_COLUMNS} FROM p_commands
          WHERE state = 'in_flight' AND request_ts IS NULL AND max_sequencing_time < $3
          ORDER BY max_sequencing_time)"
    )))
    .bind(&wanted.message_ids)
    .bind(&requests)
    .bind(wanted.last.micros())
    .fetch_all(&mut *conn)
    .await?;
    loaded.commands = rows.iter().map(command_row).collect::<Result<_, _>>()?;
    Ok(loaded)
}

/// Where a batch leaves the log: its last event and the offsets it took.
pub struct Position<'a> {
    pub cursor: Timestamp,
    pub offsets: &'a super::Offsets,
}

/// Writes what a batch decided, the outbox rows the sequencer took since the last batch
/// (`sent`, deleted) and the batch's position: one statement per non-empty kind of change
/// to the contracts and commands, in an order under which the result is the batch's final
/// state (locks are released before new ones are taken, commands learn their requests
/// before they complete), then one for everything else ([`append`]).
pub async fn write(
    conn: &mut PgConnection,
    w: &Writes,
    sent: &[String],
    position: Position<'_>,
) -> Result<(), ParticipantError> {
    if !w.command_requests.is_empty() {
        let (ids, requests): (Vec<&str>, Vec<i64>) = w
            .command_requests
            .iter()
            .map(|(id, r)| (id.as_str(), *r))
            .unzip();
        sqlx::query(
            "UPDATE p_commands SET request_ts = u.request
             FROM unnest($1::text[], $2::bigint[]) AS u(message_id, request)
             WHERE p_commands.message_id = u.message_id AND state = 'in_flight'",
        )
        .bind(&ids)
        .bind(&requests)
        .execute(&mut *conn)
        .await?;
    }
    if !w.archived.is_empty() || !w.created_archived.is_empty() {
        let (ids, ats): (Vec<&str>, Vec<i64>) =
            w.archived.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        let (new_ids, new_ats): (Vec<&str>, Vec<i64>) = w
            .created_archived
            .iter()
            .map(|(id, at)| (id.as_str(), *at))
            .unzip();
        // Those stored here are removed and remembered as archived (freshness), and so
        // are those created and archived within the batch.
        sqlx::query(
            "WITH gone AS (
                 DELETE FROM p_contracts c USING unnest($1::text[], $2::bigint[]) AS a(id, at)
                 WHERE c.contract_id = a.id RETURNING a.id, a.at
             )
             INSERT INTO p_archived (contract_id, archived_at)
             SELECT id, at FROM gone
             UNION ALL SELECT * FROM unnest($3::text[], $4::bigint[])
             ON CONFLICT (contract_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&ats)
        .bind(&new_ids)
        .bind(&new_ats)
        .execute(&mut *conn)
        .await?;
    }
    if !w.released.is_empty() {
        sqlx::query(
            "WITH keys AS (DELETE FROM p_key_locks WHERE request_ts = ANY($1))
             UPDATE p_contracts SET locked_by = NULL WHERE locked_by = ANY($1)",
        )
        .bind(&w.released)
        .execute(&mut *conn)
        .await?;
    }
    if !w.key_locked.is_empty() {
        let (keys, requests): (Vec<&str>, Vec<i64>) =
            w.key_locked.iter().map(|(k, r)| (k.as_str(), *r)).unzip();
        sqlx::query(
            "INSERT INTO p_key_locks (key_hash, request_ts)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (key_hash) DO UPDATE SET request_ts = excluded.request_ts",
        )
        .bind(&keys)
        .bind(&requests)
        .execute(&mut *conn)
        .await?;
    }
    if !w.locked.is_empty() {
        let (ids, requests): (Vec<&str>, Vec<i64>) =
            w.locked.iter().map(|(id, r)| (id.as_str(), *r)).unzip();
        sqlx::query(
            "UPDATE p_contracts SET locked_by = u.request
             FROM unnest($1::text[], $2::bigint[]) AS u(id, request)
             WHERE contract_id = u.id",
        )
        .bind(&ids)
        .bind(&requests)
        .execute(&mut *conn)
        .await?;
    }
    if !w.created.is_empty() {
        let ids: Vec<&str> = w
            .created
            .iter()
            .map(|(c, _)| c.contract_id.as_str())
            .collect();
        let templates: Vec<&str> = w
            .created
            .iter()
            .map(|(c, _)| c.template_id.as_str())
            .collect();
        // text[][] must be rectangular: the stakeholders go as one JSON array each.
        let stakeholders: Vec<String> = w
            .created
            .iter()
            .map(|(c, _)| {
                serde_json::to_string(&c.stakeholders().into_iter().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        let contracts: Vec<Vec<u8>> = w.created.iter().map(|(c, _)| super::to_json(c)).collect();
        let offsets: Vec<i64> = w.created.iter().map(|(c, _)| c.created_offset).collect();
        let locks: Vec<Option<i64>> = w.created.iter().map(|(_, l)| *l).collect();
        let keys: Vec<Option<&str>> = w
            .created
            .iter()
            .map(|(c, _)| c.key_hash.as_deref())
            .collect();
        sqlx::query(
            "INSERT INTO p_contracts (contract_id, template_id, stakeholders, contract,
                 created_offset, locked_by, key_hash)
             SELECT id, template, ARRAY(SELECT jsonb_array_elements_text(s::jsonb)), contract,
                    created_offset, locked_by, key_hash
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[],
                         $6::bigint[], $7::text[])
                  AS u(id, template, s, contract, created_offset, locked_by, key_hash)
             ON CONFLICT (contract_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&templates)
        .bind(&stakeholders)
        .bind(&contracts)
        .bind(&offsets)
        .bind(&locks)
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
    }
    if !w.completions.is_empty() {
        complete(conn, w).await?;
    }
    append(conn, w, sent, position).await
}

/// The changes of the batch that touch no row another of its changes touches, with the
/// cursor and offsets, in one statement: pending requests deleted and inserted (a request
/// is never both), updates appended, outbox rows inserted and the sent ones deleted (rows
/// of earlier batches), the position.
async fn append(
    conn: &mut PgConnection,
    w: &Writes,
    sent: &[String],
    position: Position<'_>,
) -> Result<(), ParticipantError> {
    let pending = &w.pending_inserted;
    let outbox = &w.outbox;
    sqlx::query(
        "WITH removed AS (DELETE FROM p_pending WHERE request_ts = ANY($1)),
         pending AS (
             INSERT INTO p_pending (request_ts, root_hash, submitter, view, deadline, rejection)
             SELECT * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bytea[],
                                  $6::bigint[], $7::text[])
             ON CONFLICT (request_ts) DO NOTHING
         ),
         updates AS (
             INSERT INTO p_updates (ledger_offset, update_id, tx)
             SELECT * FROM unnest($8::bigint[], $9::text[], $10::bytea[])
         ),
         outbox AS (
             INSERT INTO p_outbox (message_id, submission, max_sequencing_time, is_command)
             SELECT * FROM unnest($11::text[], $12::bytea[], $13::bigint[], $14::bool[])
             ON CONFLICT (message_id) DO NOTHING
         ),
         sent AS (DELETE FROM p_outbox WHERE message_id = ANY($15))
         UPDATE p_state SET cursor_ts = $16, ledger_end = $17, completion_end = $18
         WHERE id = 1",
    )
    .bind(&w.pending_removed)
    .bind(column(pending, |(r, _)| r.request.micros()))
    .bind(column(pending, |(r, _)| r.root_hash.as_str()))
    .bind(column(pending, |(r, _)| r.submitter.as_str()))
    .bind(column(pending, |(r, _)| r.view.as_slice()))
    .bind(column(pending, |(_, d)| d.micros()))
    .bind(column(pending, |(r, _)| r.rejection.as_deref()))
    .bind(column(&w.updates, |(o, _, _)| *o))
    .bind(column(&w.updates, |(_, id, _)| id.as_str()))
    .bind(column(&w.updates, |(_, _, tx)| tx.as_slice()))
    .bind(column(outbox, |o| o.submission.message_id.as_str()))
    .bind(column(outbox, |o| super::encode_submission(&o.submission)))
    .bind(column(outbox, |o| {
        o.submission.max_sequencing_time.micros()
    }))
    .bind(column(outbox, |o| o.is_command))
    .bind(sent)
    .bind(position.cursor.micros())
    .bind(position.offsets.ledger_end)
    .bind(position.offsets.completion_end)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The completed commands' states and their completions, in one statement.
async fn complete(conn: &mut PgConnection, w: &Writes) -> Result<(), ParticipantError> {
    let done = &w.completions;
    let message_ids: Vec<&str> = done.iter().map(|(m, _, _)| m.as_str()).collect();
    let states: Vec<&str> = done
        .iter()
        .map(|(_, _, c)| {
            if c.outcome.code == 0 {
                "succeeded"
            } else {
                "rejected"
            }
        })
        .collect();
    let ats: Vec<i64> = done.iter().map(|(_, at, _)| *at).collect();
    let offsets: Vec<i64> = done.iter().map(|(_, _, c)| c.completion_offset).collect();
    let apps: Vec<&str> = done
        .iter()
        .map(|(_, _, c)| c.application_id.as_str())
        .collect();
    let commands: Vec<&str> = done.iter().map(|(_, _, c)| c.command_id.as_str()).collect();
    let submissions: Vec<&str> = done
        .iter()
        .map(|(_, _, c)| c.submission_id.as_str())
        .collect();
    // text[][] must be rectangular: act_as goes as one JSON array each.
    let act_as: Vec<String> = done
        .iter()
        .map(|(_, _, c)| serde_json::to_string(&c.act_as).unwrap_or_default())
        .collect();
    let codes: Vec<i32> = done.iter().map(|(_, _, c)| c.outcome.code).collect();
    let messages: Vec<&str> = done
        .iter()
        .map(|(_, _, c)| c.outcome.message.as_str())
        .collect();
    let update_ids: Vec<&str> = done
        .iter()
        .map(|(_, _, c)| c.outcome.update_id.as_str())
        .collect();
    let ledger_offsets: Vec<i64> = done
        .iter()
        .map(|(_, _, c)| c.outcome.ledger_offset)
        .collect();
    let error_codes: Vec<&str> = done
        .iter()
        .map(|(_, _, c)| c.outcome.error_code.as_str())
        .collect();
    let dedup_durations: Vec<i64> = done.iter().map(|(_, _, c)| c.dedup.duration_us).collect();
    let dedup_offsets: Vec<i64> = done.iter().map(|(_, _, c)| c.dedup.offset).collect();
    sqlx::query(
        "WITH u AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
                 $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::text[],
                 $11::text[], $12::bigint[], $13::text[], $14::bigint[], $15::bigint[])
             AS u(message_id, state, completed_at, completion_offset, application_id,
                  command_id, submission_id, act_as, status_code, status_message, update_id,
                  ledger_offset, error_code, dedup_duration_us, dedup_offset)
         ), done AS (
             UPDATE p_commands c SET state = u.state, completed_at = u.completed_at,
                 completion_offset = u.completion_offset
             FROM u WHERE c.message_id = u.message_id
         )
         INSERT INTO p_completions (completion_offset, application_id, command_id,
             submission_id, act_as, status_code, status_message, update_id, ledger_offset,
             error_code, dedup_duration_us, dedup_offset)
         SELECT completion_offset, application_id, command_id, submission_id,
                ARRAY(SELECT jsonb_array_elements_text(act_as::jsonb)), status_code,
                status_message, update_id, ledger_offset, error_code, dedup_duration_us,
                dedup_offset
         FROM u",
    )
    .bind(&message_ids)
    .bind(&states)
    .bind(&ats)
    .bind(&offsets)
    .bind(&apps)
    .bind(&commands)
    .bind(&submissions)
    .bind(&act_as)
    .bind(&codes)
    .bind(&messages)
    .bind(&update_ids)
    .bind(&ledger_offsets)
    .bind(&error_codes)
    .bind(&dedup_durations)
    .bind(&dedup_offsets)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
