//! All of the mediator's SQL, over the schema in `migrations/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ordo_core::{MemberId, PartyId, Timestamp};
use ordo_lease::Replica;
use ordo_node::db;
use ordo_protocol::{RequestId, TopologyState, VerdictOutcome};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};

use crate::config::MediatorConfig;
use crate::error::MediatorError;
use crate::verdict::{Decision, PartyAnswer, PendingRequest};

/// The schema version this code reads and writes (`mediator_meta.schema_version`).
pub const SCHEMA_VERSION: i32 = 3;
/// Key of the advisory lock that serialises `init`.
const INIT_LOCK: i64 = 0x6f72_646f_4d45_4449; // "ordoMEDI"

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The connections' `application_name`: the replica, so that an operator can tell the
/// replicas' sessions apart in `pg_stat_activity`.
fn app_name(config: &MediatorConfig) -> String {
    format!(
        "ordo-mediator/{}",
        config.replica.name_or(&config.node_name)
    )
}

pub async fn connect(config: &MediatorConfig) -> Result<PgPool, MediatorError> {
    let options = db::connect_options(&config.database_url, &app_name(config))?;
    Ok(db::pool_with(config.replica.connect_options(options), config.pool_size).await?)
}

/// Runs the migrations and records the member, under an advisory lock so that replicas
/// initialising at once never race. Returns whether this call provisioned the database.
pub async fn init(config: &MediatorConfig, member: &MemberId) -> Result<bool, MediatorError> {
    db::with_advisory_lock(
        &config.database_url,
        &app_name(config),
        INIT_LOCK,
        async |conn| init_locked(conn, config, member).await,
    )
    .await
}

async fn init_locked(
    conn: &mut sqlx::PgConnection,
    config: &MediatorConfig,
    member: &MemberId,
) -> Result<bool, MediatorError> {
    MIGRATOR.run(&mut *conn).await?;
    let done = sqlx::query(
        "INSERT INTO mediator_meta (id, schema_version, member_id) VALUES (1, $1, $2)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(SCHEMA_VERSION)
    .bind(member.as_str())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    let existing: String = sqlx::query_scalar("SELECT member_id FROM mediator_meta WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    if existing != member.as_str() {
        return Err(wrong_key(config, existing, member));
    }
    // The migrations above brought an older schema up to this version (2: answers are
    // deleted with their request by the code, not by a cascade; 3: verdicts sent in
    // groups), and whatever answers a replica of schema 1 left behind meanwhile go.
    sqlx::query("UPDATE mediator_meta SET schema_version = $1 WHERE id = 1")
        .bind(SCHEMA_VERSION)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM pending_answers
         WHERE request_id NOT IN (SELECT request_id FROM pending_requests)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(false)
}

fn wrong_key(config: &MediatorConfig, provisioned: String, member: &MemberId) -> MediatorError {
    MediatorError::WrongKey {
        url: db::redact_url(&config.database_url),
        key_file: config.key_file.display().to_string(),
        provisioned,
        configured: member.to_string(),
    }
}

/// Refuses a database `init` never provisioned, of another schema version, or of another
/// member.
pub async fn check_provisioned(
    pool: &PgPool,
    config: &MediatorConfig,
    member: &MemberId,
) -> Result<(), MediatorError> {
    let row = db::provisioned(
        pool,
        "SELECT schema_version, member_id FROM mediator_meta WHERE id = 1",
        Some(SCHEMA_VERSION),
        |why| MediatorError::unprovisioned(&config.database_url, why),
    )
    .await?;
    let provisioned: String = row.try_get("member_id")?;
    if provisioned != member.as_str() {
        return Err(wrong_key(config, provisioned, member));
    }
    Ok(())
}

/// What the mediator resumes from.
pub struct Resumed {
    pub cursor: Timestamp,
    pub topology: TopologyState,
    pub pending: Vec<PendingRequest>,
}

fn corrupt(what: impl std::fmt::Display) -> MediatorError {
    MediatorError::Corrupt(what.to_string())
}

fn member(text: &str) -> Result<MemberId, MediatorError> {
    text.parse()
        .map_err(|e| corrupt(format!("member id {text:?}: {e}")))
}

pub async fn load(pool: &PgPool) -> Result<Resumed, MediatorError> {
    let cursor: i64 = sqlx::query_scalar("SELECT ts FROM mediator_cursor WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let topology =
        match sqlx::query_scalar::<_, String>("SELECT state FROM topology_state WHERE id = 1")
            .fetch_optional(pool)
            .await?
        {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| corrupt(format!("topology: {e}")))?
            }
            None => TopologyState::default(),
        };

    let mut pending: BTreeMap<i64, PendingRequest> = BTreeMap::new();
    for row in sqlx::query(
        "SELECT request_id, root_hash, submitter, informee_participants, decision_time
         FROM pending_requests",
    )
    .fetch_all(pool)
    .await?
    {
        let id: i64 = row.try_get("request_id")?;
        let participants: Vec<String> = row.try_get("informee_participants")?;
        let informee_participants = participants
            .iter()
            .map(|p| member(p))
            .collect::<Result<BTreeSet<_>, _>>()?;
        pending.insert(
            id,
            PendingRequest {
                id: Timestamp(id),
                root_hash: row.try_get("root_hash")?,
                submitter: member(row.try_get("submitter")?)?,
                confirming_parties: BTreeMap::new(),
                informee_participants,
                decision_time: Timestamp(row.try_get("decision_time")?),
            },
        );
    }
    // Answers of pending requests only: a replica of schema 1 still running during an
    // upgrade deletes requests without their answers (init deletes those).
    for row in sqlx::query(
        "SELECT request_id, party, host, answered FROM pending_answers
         WHERE request_id IN (SELECT request_id FROM pending_requests)",
    )
    .fetch_all(pool)
    .await?
    {
        let id: i64 = row.try_get("request_id")?;
        let party: String = row.try_get("party")?;
        let party = PartyId::new(&party).map_err(corrupt)?;
        let request = pending
            .get_mut(&id)
            .ok_or_else(|| corrupt(format!("answer for unknown request {id}")))?;
        request.confirming_parties.insert(
            party,
            PartyAnswer {
                host: member(row.try_get("host")?)?,
                answered: row.try_get("answered")?,
            },
        );
    }
    Ok(Resumed {
        cursor: Timestamp(cursor),
        topology,
        pending: pending.into_values().collect(),
    })
}

/// A signed message waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub message_id: String,
    pub recipients: Vec<MemberId>,
    pub payload: Vec<u8>,
}

/// Outbox messages sent together, as the envelopes of one submission with this message
/// id (each envelope to its own recipients): one sequenced event for a batch's verdicts
/// instead of one per verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxGroup {
    pub message_id: String,
    pub messages: Vec<OutboxMessage>,
}

/// `messages` (a batch's verdicts, in decision order) in groups of at most
/// [`ordo_protocol::grouping::GROUP_BYTES`], each named by [`group_id`].
pub fn groups(messages: impl IntoIterator<Item = OutboxMessage>) -> Vec<OutboxGroup> {
    ordo_protocol::grouping::by_bytes(messages, |m| m.payload.len())
        .into_iter()
        .map(|messages| OutboxGroup {
            message_id: group_id(&messages),
            messages,
        })
        .collect()
}

/// A group's message id, from its first and last message: unique, since a request is
/// decided once, and the same whenever the batch's rows are read back.
fn group_id<M: std::borrow::Borrow<OutboxMessage>>(messages: &[M]) -> String {
    match messages {
        [one] => one.borrow().message_id.clone(),
        [first, .., last] => format!(
            "{}..{}",
            first.borrow().message_id,
            last.borrow().message_id
        ),
        [] => String::new(),
    }
}

/// What a batch of events changes, written with the cursor in one transaction.
#[derive(Default)]
pub struct Changes {
    pub topology: Option<Arc<TopologyState>>,
    pub opened: Vec<PendingRequest>,
    pub answered: Vec<(RequestId, Vec<PartyId>)>,
    pub decided: Vec<(Decision, OutboxMessage)>,
    /// What the event held that no honest member sends; raised once it is committed.
    pub alarms: Vec<crate::process::Alarm>,
}

impl Changes {
    /// Adds the changes of a later event of the same batch.
    pub fn absorb(&mut self, later: Changes) {
        if later.topology.is_some() {
            self.topology = later.topology;
        }
        self.opened.extend(later.opened);
        self.answered.extend(later.answered);
        self.decided.extend(later.decided);
        self.alarms.extend(later.alarms);
    }
}

/// Commits `tx` only if `replica` still holds the mediator lease with its token: a
/// deposed replica (paused, partitioned, slow) never writes. The check locks the lease row
/// until the commit, so a takeover waits for this transaction.
pub(crate) async fn fenced_commit(
    mut tx: Transaction<'_, Postgres>,
    replica: &Replica,
) -> Result<(), MediatorError> {
    replica.fence(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// One column of `rows`, as an array parameter of an `unnest`.
fn column<T, U>(rows: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Text arrays as JSON, one per row: Postgres arrays must be rectangular, so a column of
/// `text[]` travels through `unnest` as `text` holding a JSON array.
fn json_arrays<'a, I, T>(rows: impl Iterator<Item = I>) -> Vec<String>
where
    I: IntoIterator<Item = &'a T>,
    T: std::fmt::Display + 'a,
{
    rows.map(|r| {
        let items: Vec<String> = r.into_iter().map(ToString::to_string).collect();
        serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
    })
    .collect()
}

/// Commits the changes of the events up to `at` and moves the cursor there, fenced by
/// `replica`'s lease, with one statement per kind of change whatever the batch's size. A
/// request opened and decided within the batch is never written as pending. `sequenced`
/// are outbox messages the sequencer has taken since the last commit: they leave the
/// outbox here. The cursor only moves forward: a second writer processing the same event
/// (which the fence already refuses) fails here instead of deciding twice.
pub async fn commit(
    pool: &PgPool,
    replica: &Replica,
    at: Timestamp,
    changes: &Changes,
    sequenced: &[String],
) -> Result<(), MediatorError> {
    let mut tx = pool.begin().await?;
    let moved = sqlx::query("UPDATE mediator_cursor SET ts = $1 WHERE id = 1 AND ts < $1")
        .bind(at.micros())
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() != 1 {
        return Err(MediatorError::Internal(format!(
            "event {at} was already processed (the cursor is at or past it); another mediator replica may be writing to this database"
        )));
    }
    if let Some(topology) = &changes.topology {
        let json = serde_json::to_string(topology.as_ref())
            .map_err(|e| MediatorError::Internal(format!("topology to JSON: {e}")))?;
        sqlx::query(
            "INSERT INTO topology_state (id, serial, state) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET serial = EXCLUDED.serial, state = EXCLUDED.state",
        )
        .bind(topology.serial as i64)
        .bind(json)
        .execute(&mut *tx)
        .await?;
    }
    let decided: BTreeSet<i64> = changes
        .decided
        .iter()
        .map(|(d, _)| d.request.micros())
        .collect();
    let opened: Vec<&PendingRequest> = changes
        .opened
        .iter()
        .filter(|r| !decided.contains(&r.id.micros()))
        .collect();
    if !opened.is_empty() {
        sqlx::query(
            "INSERT INTO pending_requests
                 (request_id, root_hash, submitter, informee_participants, decision_time)
             SELECT r, h, s, ARRAY(SELECT jsonb_array_elements_text(i::jsonb)), d
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                 AS t(r, h, s, i, d)",
        )
        .bind(column(&opened, |r| r.id.micros()))
        .bind(column(&opened, |r| r.root_hash.clone()))
        .bind(column(&opened, |r| r.submitter.to_string()))
        .bind(json_arrays(opened.iter().map(|r| &r.informee_participants)))
        .bind(column(&opened, |r| r.decision_time.micros()))
        .execute(&mut *tx)
        .await?;
        let mut requests = Vec::new();
        let mut parties = Vec::new();
        let mut hosts = Vec::new();
        for r in &opened {
            for (party, answer) in &r.confirming_parties {
                requests.push(r.id.micros());
                parties.push(party.to_string());
                hosts.push(answer.host.to_string());
            }
        }
        sqlx::query(
            "INSERT INTO pending_answers (request_id, party, host)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])",
        )
        .bind(requests)
        .bind(parties)
        .bind(hosts)
        .execute(&mut *tx)
        .await?;
    }
    let (requests, parties): (Vec<i64>, Vec<String>) = changes
        .answered
        .iter()
        .filter(|(request, _)| !decided.contains(&request.micros()))
        .flat_map(|(request, parties)| parties.iter().map(|p| (request.micros(), p.to_string())))
        .unzip();
    if !requests.is_empty() {
        sqlx::query(
            "UPDATE pending_answers a SET answered = true
             FROM unnest($1::bigint[], $2::text[]) AS u(r, p)
             WHERE a.request_id = u.r AND a.party = u.p",
        )
        .bind(requests)
        .bind(parties)
        .execute(&mut *tx)
        .await?;
    }
    if !changes.decided.is_empty() {
        let ids: Vec<i64> = decided.iter().copied().collect();
        sqlx::query(
            "WITH gone AS (DELETE FROM pending_requests WHERE request_id = ANY($1))
             DELETE FROM pending_answers WHERE request_id = ANY($1)",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let (decisions, messages): (Vec<&Decision>, Vec<&OutboxMessage>) =
            changes.decided.iter().map(|(d, m)| (d, m)).unzip();
        let reasons = decisions.iter().map(|d| match &d.outcome {
            VerdictOutcome::Reject { reasons, .. } => reasons.clone(),
            _ => Vec::new(),
        });
        sqlx::query(
            "INSERT INTO verdicts (request_id, root_hash, outcome, reasons, decided_at)
             SELECT r, h, o, ARRAY(SELECT jsonb_array_elements_text(x::jsonb)), d
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
                 AS t(r, h, o, x, d)",
        )
        .bind(column(&decisions, |d| d.request.micros()))
        .bind(column(&decisions, |d| d.root_hash.clone()))
        .bind(column(&decisions, |d| d.outcome_label()))
        .bind(
            reasons
                .map(|r| serde_json::to_string(&r).unwrap_or_else(|_| "[]".into()))
                .collect::<Vec<_>>(),
        )
        .bind(column(&decisions, |d| d.decided_at.micros()))
        .execute(&mut *tx)
        .await?;
        let submissions: Vec<String> =
            ordo_protocol::grouping::by_bytes(messages.iter().copied(), |m| m.payload.len())
                .into_iter()
                .flat_map(|g| std::iter::repeat_n(group_id(&g), g.len()))
                .collect();
        sqlx::query(
            "INSERT INTO outbox (message_id, recipients, payload, created_at, submission)
             SELECT m, ARRAY(SELECT jsonb_array_elements_text(r::jsonb)), p, c, s
             FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::text[])
                 AS t(m, r, p, c, s)",
        )
        .bind(column(&messages, |m| m.message_id.clone()))
        .bind(json_arrays(messages.iter().map(|m| &m.recipients)))
        .bind(column(&messages, |m| m.payload.clone()))
        .bind(column(&decisions, |d| d.decided_at.micros()))
        .bind(&submissions)
        .execute(&mut *tx)
        .await?;
    }
    if !sequenced.is_empty() {
        delete_sequenced(&mut tx, sequenced).await?;
    }
    fenced_commit(tx, replica).await
}

/// Deletes the groups (submission message ids) the sequencer took.
async fn delete_sequenced(
    tx: &mut Transaction<'_, Postgres>,
    message_ids: &[String],
) -> Result<(), MediatorError> {
    sqlx::query("DELETE FROM outbox WHERE coalesce(submission, message_id) = ANY($1)")
        .bind(message_ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves the cursor past the event at `at` and changes nothing else (fenced): the event's
/// changes could not be written.
pub async fn skip(pool: &PgPool, replica: &Replica, at: Timestamp) -> Result<(), MediatorError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE mediator_cursor SET ts = $1 WHERE id = 1 AND ts < $1")
        .bind(at.micros())
        .execute(&mut *tx)
        .await?;
    fenced_commit(tx, replica).await
}

/// Outbox groups still to send, oldest first, each with the messages it was written with.
pub async fn outbox(pool: &PgPool) -> Result<Vec<OutboxGroup>, MediatorError> {
    let rows = sqlx::query(
        "SELECT coalesce(submission, message_id) AS submission, message_id, recipients, payload
         FROM outbox
         WHERE coalesce(submission, message_id) IN (
             SELECT coalesce(submission, message_id) FROM outbox WHERE NOT refused
             ORDER BY created_at, message_id LIMIT 1000)
         ORDER BY created_at, message_id",
    )
    .fetch_all(pool)
    .await?;
    let mut groups: Vec<OutboxGroup> = Vec::new();
    for row in rows {
        let submission: String = row.try_get("submission")?;
        let recipients: Vec<String> = row.try_get("recipients")?;
        let message = OutboxMessage {
            message_id: row.try_get("message_id")?,
            recipients: recipients
                .iter()
                .map(|m| member(m))
                .collect::<Result<_, _>>()?,
            payload: row.try_get("payload")?,
        };
        match groups.iter_mut().find(|g| g.message_id == submission) {
            Some(group) => group.messages.push(message),
            None => groups.push(OutboxGroup {
                message_id: submission,
                messages: vec![message],
            }),
        }
    }
    Ok(groups)
}

/// Messages the sequencer took leave the outbox (fenced by `replica`'s lease).
pub async fn outbox_sequenced(
    pool: &PgPool,
    replica: &Replica,
    message_ids: &[String],
) -> Result<(), MediatorError> {
    let mut tx = pool.begin().await?;
    delete_sequenced(&mut tx, message_ids).await?;
    fenced_commit(tx, replica).await
}

/// A failed attempt of a group; `refused` stops retries (the sequencer's answer was
/// definite).
pub async fn outbox_failed(
    pool: &PgPool,
    replica: &Replica,
    message_id: &str,
    error: &str,
    refused: bool,
) -> Result<(), MediatorError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, refused = $3
         WHERE coalesce(submission, message_id) = $1",
    )
    .bind(message_id)
    .bind(error)
    .bind(refused)
    .execute(&mut *tx)
    .await?;
    fenced_commit(tx, replica).await
}

#[cfg(test)]
mod tests;
