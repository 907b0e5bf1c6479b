//! Sequencer event processing (DESIGN §4 steps 4 and 6), in order and exactly once: every
//! effect of an event (topology, locks, pending requests, the ACS, the update log,
//! completions, outbox rows) commits in one transaction together with the cursor, so a
//! crash neither loses nor repeats anything; the subscription resumes after the cursor.
//!
//! Decoding, signature checks and the checks of a view (`validation`) run on a blocking
//! thread before the transaction; the deciding rules live in `validation`, `conflict` and
//! `views`. No event can stop the shard: a fault of a message is a rejection or an ignored
//! message plus an alarm; only transient failures (database, network) are retried, and a
//! write that Postgres refuses for its data (the same on every retry) skips the event with
//! an alarm.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_core::{MemberId, PartyId, SequencedEvent, Submission, Timestamp};
use ordo_ledger::PackageStore;
use ordo_protocol::{
    ConfirmationResponse, Message, ResponseOutcome, SignedMessage, TopologyState, Verdict,
    VerdictOutcome, merkle,
};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::alarm::{self, Alarm, Raised};
use crate::conflict;
use crate::error::ParticipantError;
use crate::node::{Shared, Snapshot};
use crate::store::{self, Outcome, PendingRow};
use crate::validation::{self, CheckedView, Prepared, PreparedEvent, Rejection};
use crate::views::{self, CommitContext, ViewPayload};

/// google.rpc.Code values used in completions.
pub const CODE_OK: i32 = 0;
pub const CODE_FAILED_PRECONDITION: i32 = 9;
pub const CODE_ABORTED: i32 = 10;

/// The package store of the packages vetted in `topology`. A package that does not parse
/// (or clashes with an earlier one by name) is skipped, the same way on every participant.
pub fn package_store(topology: &TopologyState) -> PackageStore {
    let mut store = PackageStore::new();
    for (id, source) in &topology.packages {
        match ordo_ledger::Package::parse(source.as_bytes()) {
            Ok(p) if p.id.to_string() == *id => {
                if let Err(e) = store.add(p) {
                    tracing::warn!(package = %id, error = %e, "vetted package skipped");
                }
            }
            Ok(p) => {
                tracing::warn!(package = %id, actual = %p.id, "vetted package id does not match its source; skipped");
            }
            Err(e) => {
                tracing::warn!(package = %id, error = %e, "vetted package does not parse; skipped")
            }
        }
    }
    store
}

/// The most events processed and committed as one batch: it bounds a batch's
/// transaction well under the lease's TTL.
const MAX_BATCH: usize = 256;

/// Processes the sequencer's events from the stored cursor on, until `stop`: whatever
/// events are ready (up to [`MAX_BATCH`]) are checked in parallel off the async workers
/// and written in one transaction with the cursor. A write the lease fence refuses ends it
/// with that error: this replica's term is over. Other failures are retried.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) -> Result<(), ParticipantError> {
    let mut last_ack = Instant::now();
    'subscribe: loop {
        let cursor = shared.snapshot().cursor;
        // The subscription lives in its own task, so that a batch can take whatever
        // arrived without cancelling a half-received event.
        let mut batches = shared.sequencer.subscribe(cursor).batches(MAX_BATCH);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                next = batches.next() => next,
            };
            let batch = match next {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "subscription failed; resubscribing from the cursor");
                    shared.replica.error(format!("sequencer subscription: {e}"));
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue 'subscribe;
                }
            };
            let mut backoff = Duration::from_millis(100);
            let handled = loop {
                let processed = match process(&shared, &batch).await {
                    Err(e) if e.is_poison() && batch.len() > 1 => {
                        tracing::warn!(error = %e, events = batch.len(), "a batch's effects were refused; processing its events one at a time");
                        Ok(0)
                    }
                    Err(e) if e.is_poison() => skip(&shared, &batch[0], &e).await.map(|()| 1),
                    other => other,
                };
                match processed {
                    Ok(handled) => break handled,
                    Err(e @ ParticipantError::Fenced(_)) => return Err(e),
                    Err(e) => {
                        let ts = batch[0].timestamp.micros();
                        tracing::warn!(ts, error = %e, "processing events failed; retrying");
                        shared
                            .replica
                            .error(format!("processing the events from {ts}: {e}"));
                        tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            };
            if handled == 0 {
                // Processed again one at a time, to find the event Postgres refuses.
                batches.one_at_a_time(batch.into_iter());
                continue;
            }
            batches.give_back(batch.into_iter().skip(handled));
            let at = shared.snapshot().cursor;
            shared.replica.processed(at);
            if last_ack.elapsed() >= shared.config.acknowledge_interval {
                last_ack = Instant::now();
                let client = shared.sequencer.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.acknowledge(at).await {
                        tracing::info!(error = %e, "acknowledging to the sequencer failed");
                    }
                });
            }
        }
    }
}

/// What a committed batch changed that in-memory watchers care about, and the alarms its
/// events raised (counted once the batch is committed).
#[derive(Default)]
struct Effects {
    /// The offsets taken so far, written with the cursor.
    offsets: store::Offsets,
    ledger_end: Option<i64>,
    completion_end: Option<i64>,
    /// Outbox rows written, for the sender once committed.
    outbox: Vec<store::OutboxRow>,
    /// The current event's alarms.
    alarms: Vec<Raised>,
    /// Every event's alarms, with the event.
    raised: Vec<(Timestamp, MemberId, Raised)>,
    /// Requests made pending in the batch: (deadline, request).
    pending: Vec<(Timestamp, Timestamp)>,
    /// Completions, for the calls waiting on them once committed.
    completed: Vec<store::CompletionRow>,
    /// Approved requests pending here: (request, deadline, the contracts they create).
    creating: Vec<(Timestamp, Timestamp, Vec<String>)>,
    /// Requests whose outcome was applied (or timed out).
    resolved: Vec<Timestamp>,
}

impl Effects {
    fn new(offsets: store::Offsets) -> Self {
        Self {
            offsets,
            ..Self::default()
        }
    }

    fn complete(&mut self, completion: store::CompletionRow) {
        self.completion_end = Some(completion.completion_offset);
        self.completed.push(completion);
    }
}

/// The limits this participant interprets its own clients' commands under: the domain's,
/// with the step budget capped by `limits.max_interpretation_steps` of its configuration.
pub fn submission_limits(shared: &Shared, topology: &TopologyState) -> ordo_ledger::Limits {
    let mut limits = validation::limits(topology);
    limits.max_operations = limits
        .max_operations
        .min(shared.config.limits.max_interpretation_steps);
    limits
}

/// Commits nothing of `event` but the cursor, after a deterministic failure writing its
/// effects: every replica would fail the same way on every retry, so the shard moves on
/// and the operator is alarmed. Its requests time out; a verdict in it is lost here.
async fn skip(
    shared: &Arc<Shared>,
    event: &SequencedEvent,
    failure: &ParticipantError,
) -> Result<(), ParticipantError> {
    let ts = event.timestamp;
    let mut tx = shared.pool.begin().await?;
    let state = store::lock_state(&mut tx).await?;
    if state.cursor >= ts {
        return Ok(());
    }
    store::set_cursor(&mut tx, ts).await?;
    shared.commit(tx).await?;
    shared.reload(store::ProcessingState {
        cursor: ts,
        ..state
    });
    alarm::raise(
        &Raised::new(
            Alarm::PoisonEvent,
            format!("the event's effects could not be written and were skipped: {failure}"),
        ),
        ts,
        &event.sender,
    );
    Ok(())
}

/// Checks `events` (each on a blocking thread, in parallel) and applies them in order in
/// one transaction with the cursor. A batch ends after an event that changes topology,
/// since the events after it must be checked against the new topology: returns how many
/// of `events` it processed (the rest come again in the next batch).
async fn process(
    shared: &Arc<Shared>,
    events: &[SequencedEvent],
) -> Result<usize, ParticipantError> {
    let started = Instant::now();
    let snapshot = shared.snapshot();
    let fresh: Vec<&SequencedEvent> = events
        .iter()
        .filter(|e| e.timestamp > snapshot.cursor)
        .collect();
    if fresh.is_empty() {
        return Ok(events.len());
    }
    let prepared = prepare(shared, &snapshot, &fresh).await?;
    // Up to and including the first event that changes topology.
    let cut = prepared
        .iter()
        .position(|p| {
            p.messages
                .iter()
                .any(|m| matches!(m, Prepared::Topology(_)))
        })
        .map_or(prepared.len(), |i| i + 1);
    let last = fresh[cut - 1].timestamp;

    let mut tx = shared.pool.begin().await?;
    let (cursor, offsets) = store::lock_position(&mut tx).await?;
    if cursor >= last {
        return Ok(events.len());
    }
    if cursor != snapshot.cursor {
        // Only the active replica writes, and a term starts by reloading; should the
        // cache still be stale, it must not be the base of this batch's effects.
        let state = store::load_state(&mut tx).await?;
        shared.reload(state);
        shared.forget_pending_creates();
        return Err(ParticipantError::Internal(format!(
            "the stored cursor {} is not this replica's {}: the state was advanced elsewhere; reloaded it",
            cursor.micros(),
            snapshot.cursor.micros()
        )));
    }
    let mut effects = Effects::new(offsets);
    let mut due = Due::load(&mut tx, last).await?;
    let mut changed: Option<TopologyState> = None;
    for (event, prepared) in fresh.iter().zip(prepared).take(cut) {
        let ts = event.timestamp;
        effects.alarms = prepared.alarms;
        if event.sender == shared.member {
            store::set_command_request(&mut tx, &event.message_id, ts).await?;
        }
        expire(shared, &mut tx, ts, &mut due, &mut effects).await?;
        for message in prepared.messages {
            let topology = changed.as_ref().unwrap_or(&snapshot.topology);
            match message {
                Prepared::Topology(t) => {
                    let next = changed.get_or_insert_with(|| (*snapshot.topology).clone());
                    if let Err(e) = next.apply(&t, ts) {
                        effects
                            .alarms
                            .push(Raised::new(Alarm::TopologyRefused, e.to_string()));
                    }
                }
                Prepared::View(view) => {
                    on_view(shared, &mut tx, topology, ts, *view, &mut effects).await?;
                }
                Prepared::Verdict(v) => {
                    on_verdict(shared, &mut tx, topology, &v, &mut effects).await?
                }
            }
        }
        // A request made pending here can time out later in the same batch.
        for (deadline, request) in effects.pending.drain(..) {
            if deadline < last {
                let at = due.requests.partition_point(|d| *d <= (deadline, request));
                due.requests.insert(at, (deadline, request));
            }
        }
        let raised = std::mem::take(&mut effects.alarms);
        effects
            .raised
            .extend(raised.into_iter().map(|r| (ts, event.sender.clone(), r)));
    }
    if let Some(topology) = &changed {
        store::save_topology(&mut tx, topology).await?;
    }
    store::save_position(&mut tx, last, &effects.offsets).await?;
    let writing = Instant::now();
    shared.commit(tx).await?;
    crate::metrics::batch(cut, started.elapsed(), writing.elapsed());

    let (topology, packages) = match changed {
        Some(t) if t.packages != snapshot.topology.packages => {
            let packages = Arc::new(package_store(&t));
            (Arc::new(t), packages)
        }
        Some(t) => (Arc::new(t), snapshot.packages.clone()),
        None => (snapshot.topology.clone(), snapshot.packages.clone()),
    };
    *shared.snapshot.write() = Arc::new(Snapshot {
        topology,
        packages,
        cursor: last,
    });
    if let Some(end) = effects.ledger_end {
        shared.ledger_end.send_replace(end);
    }
    if let Some(end) = effects.completion_end {
        shared.completion_end.send_replace(end);
    }
    for (request, deadline, contracts) in effects.creating {
        shared.creating(request, deadline, contracts);
    }
    for request in effects.resolved {
        shared.resolved(request);
    }
    shared.hand_over(effects.outbox);
    shared.deliver(effects.completed);
    for (ts, sender, raised) in &effects.raised {
        alarm::raise(raised, *ts, sender);
    }
    shared.processed.send_replace(last);
    Ok(events.len() - (fresh.len() - cut))
}

/// Checks each event off the async workers, in parallel.
async fn prepare(
    shared: &Arc<Shared>,
    snapshot: &Arc<Snapshot>,
    events: &[&SequencedEvent],
) -> Result<Vec<PreparedEvent>, ParticipantError> {
    let tasks = events.iter().map(|event| {
        let snapshot = snapshot.clone();
        let tm = shared.topology_manager.clone();
        let me = shared.member.clone();
        let event = (*event).clone();
        tokio::task::spawn_blocking(move || {
            let ctx = validation::Context {
                me: &me,
                topology_manager: &tm,
                topology: &snapshot.topology,
                packages: &snapshot.packages,
            };
            validation::prepare(&ctx, &event)
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| {
            r.map_err(|e| ParticipantError::Internal(format!("event preparation panicked: {e}")))
        })
        .collect()
}

/// What may come due within a batch, read once for the batch's last timestamp: pending
/// requests by deadline and in-flight commands not yet sequenced by max sequencing time.
/// Each event takes those due before its own timestamp, in order.
struct Due {
    requests: std::collections::VecDeque<(Timestamp, Timestamp)>,
    commands: std::collections::VecDeque<(Timestamp, String)>,
}

impl Due {
    async fn load(tx: &mut PgConnection, until: Timestamp) -> Result<Self, ParticipantError> {
        Ok(Self {
            requests: store::expired_pending(tx, until).await?.into(),
            commands: store::unsequenced_commands_before(tx, until).await?.into(),
        })
    }
}

/// Requests past their deadline without a verdict time out; commands whose confirmation
/// request can no longer be sequenced are rejected.
async fn expire(
    shared: &Shared,
    tx: &mut PgConnection,
    now: Timestamp,
    due: &mut Due,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    while due
        .requests
        .front()
        .is_some_and(|(deadline, _)| *deadline < now)
    {
        let Some((_, request)) = due.requests.pop_front() else {
            break;
        };
        if let Some(pending) = store::take_pending(tx, request).await? {
            tracing::info!(
                request = request.micros(),
                "no verdict by the deadline; the request timed out"
            );
            finish_rejected(shared, tx, &pending, timeout_outcome(), effects).await?;
        }
    }
    while due.commands.front().is_some_and(|(mst, _)| *mst < now) {
        let Some((_, message_id)) = due.commands.pop_front() else {
            break;
        };
        let outcome = Outcome {
            code: CODE_ABORTED,
            message: "the confirmation request was not sequenced before its max sequencing time; resubmit the command".into(),
            update_id: String::new(),
            ledger_offset: 0,
        };
        // Not if its request was sequenced earlier in the batch after all.
        let sequenced = store::command_by_message_id(tx, &message_id)
            .await?
            .is_none_or(|c| c.request_ts.is_some());
        if sequenced {
            continue;
        }
        if let Some(c) =
            store::complete_command(tx, &message_id, &outcome, now, &mut effects.offsets).await?
        {
            effects.complete(c);
        }
    }
    Ok(())
}

/// The outcome of a command whose request this participant did not apply although the
/// mediator approved it.
fn local_rejection(reason: &str) -> Outcome {
    Outcome {
        code: CODE_FAILED_PRECONDITION,
        message: format!("the transaction was not applied on this participant: {reason}"),
        update_id: String::new(),
        ledger_offset: 0,
    }
}

fn timeout_outcome() -> Outcome {
    Outcome {
        code: CODE_ABORTED,
        message: "the transaction timed out: not every confirming party answered in time".into(),
        update_id: String::new(),
        ledger_offset: 0,
    }
}

fn hosted_parties(topology: &TopologyState, me: &MemberId) -> BTreeSet<PartyId> {
    topology.parties_of(me).cloned().collect()
}

/// A view addressed to this participant: the checks that need the database (activeness
/// and locks of its inputs, freshness of the contracts it creates), then the pending request
/// with this participant's own outcome, and the response for the parties it answers for.
async fn on_view(
    shared: &Shared,
    tx: &mut PgConnection,
    topology: &TopologyState,
    request: Timestamp,
    view: CheckedView,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    let hosted = hosted_parties(topology, &shared.member);
    let mut outcome = view.outcome;
    let mut created = Vec::new();
    if let (Ok(()), Some((payload, _))) = (&outcome, &view.payload) {
        created = views::created_ids(&payload.view);
        if !created.is_empty() {
            let known = store::known_contract_ids(tx, &created).await?;
            if let Err(reason) = conflict::check_fresh(&known) {
                effects
                    .alarms
                    .push(Raised::new(Alarm::ContractIdReuse, reason.clone()));
                outcome = Err(Rejection::alarm(Alarm::ContractIdReuse, reason));
            }
        }
    }
    if let (Ok(()), Some((payload, _))) = (&outcome, &view.payload) {
        let uses = views::input_uses(&payload.view, &hosted);
        // Every input, not only those with a stakeholder hosted here as the view claims
        // them: a stored contract is checked against the view's copy whatever it claims.
        let ids: Vec<String> = uses.iter().map(|u| u.contract_id.clone()).collect();
        let states = store::contract_states(tx, &ids).await?;
        match conflict::check_activeness(request, &uses, &states) {
            Ok(locks) => store::lock_contracts(tx, &locks.contract_ids, request).await?,
            Err(reason) => {
                outcome = Err(Rejection {
                    alarm: None,
                    reason,
                })
            }
        }
    }
    let params = &topology.parameters;
    let deadline = request
        .plus_micros(params.participant_response_timeout_us)
        .plus(shared.config.mediator_reaction_timeout);
    store::insert_pending(
        tx,
        &PendingRow {
            request,
            root_hash: view.root_hash.clone(),
            submitter: view.submitter.to_string(),
            view: view
                .payload
                .as_ref()
                .map(|(_, json)| json.get().as_bytes().to_vec())
                .unwrap_or_default(),
            rejection: outcome.as_ref().err().map(|r| r.reason.clone()),
        },
        deadline,
    )
    .await?;
    effects.pending.push((deadline, request));
    if outcome.is_ok() && !created.is_empty() {
        effects.creating.push((request, deadline, created));
    }

    let answering: BTreeSet<PartyId> = view
        .declared_confirming
        .intersection(&hosted)
        .cloned()
        .collect();
    if answering.is_empty() {
        return Ok(());
    }
    let Some(mediator) = topology.mediator() else {
        tracing::warn!(
            request = request.micros(),
            "no mediator in topology; cannot answer the request"
        );
        return Ok(());
    };
    if let Err(r) = &outcome {
        tracing::info!(request = request.micros(), reason = %r.reason, "rejecting a confirmation request");
    }
    let response = ConfirmationResponse {
        request,
        root_hash: view.root_hash,
        parties: answering,
        outcome: match outcome {
            Ok(()) => ResponseOutcome::Approve,
            Err(r) => ResponseOutcome::Reject { reason: r.reason },
        },
    };
    let content = SignedMessage::encode(&shared.member, &shared.key, &Message::Response(response));
    let submission = Submission {
        message_id: format!("resp-{}", request.micros()),
        max_sequencing_time: request.plus_micros(params.participant_response_timeout_us),
        envelopes: vec![ordo_core::Envelope {
            recipients: ordo_core::Recipients::members([mediator.clone()]),
            content,
        }],
    };
    store::insert_outbox(tx, &submission, false).await?;
    effects.outbox.push(store::OutboxRow {
        submission,
        is_command: false,
    });
    Ok(())
}

async fn on_verdict(
    shared: &Shared,
    tx: &mut PgConnection,
    topology: &TopologyState,
    verdict: &Verdict,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    let Some(pending) = store::take_pending(tx, verdict.request).await? else {
        tracing::debug!(
            request = verdict.request.micros(),
            "verdict for no pending request here"
        );
        return Ok(());
    };
    // The request this participant checked is not the one the mediator decided (the
    // submitter sent them different roots): it is over, and nothing of it is applied.
    if verdict.root_hash != pending.root_hash {
        let reason = format!(
            "the mediator decided request {} with root hash {}, but this participant saw root \
             hash {}",
            verdict.request.micros(),
            verdict.root_hash,
            pending.root_hash
        );
        effects
            .alarms
            .push(Raised::new(Alarm::VerdictRootMismatch, reason.clone()));
        return finish_rejected(shared, tx, &pending, local_rejection(&reason), effects).await;
    }
    match (&verdict.outcome, &pending.rejection) {
        (VerdictOutcome::Approve, Some(rejection)) => {
            effects.alarms.push(Raised::new(
                Alarm::VerdictContradictsChecks,
                format!(
                    "the mediator approved request {}, which this participant rejected ({rejection}); \
                     it is not applied here",
                    verdict.request.micros()
                ),
            ));
            finish_rejected(shared, tx, &pending, local_rejection(rejection), effects).await
        }
        (VerdictOutcome::Approve, None) => commit(shared, tx, topology, &pending, effects).await,
        (VerdictOutcome::Reject { reasons }, _) => {
            let code = if reasons.iter().any(|r| r.contains("is locked by")) {
                CODE_ABORTED
            } else {
                CODE_FAILED_PRECONDITION
            };
            let outcome = Outcome {
                code,
                message: format!("the transaction was rejected: {}", reasons.join("; ")),
                update_id: String::new(),
                ledger_offset: 0,
            };
            finish_rejected(shared, tx, &pending, outcome, effects).await
        }
        (VerdictOutcome::Timeout, _) => {
            finish_rejected(shared, tx, &pending, timeout_outcome(), effects).await
        }
    }
}

async fn finish_rejected(
    shared: &Shared,
    tx: &mut PgConnection,
    pending: &PendingRow,
    outcome: Outcome,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    effects.resolved.push(pending.request);
    store::release_locks(tx, pending.request).await?;
    if pending.submitter == shared.member.as_str()
        && let Some(cmd) = store::command_by_request(tx, pending.request).await?
        && let Some(c) =
            store::complete(tx, cmd, &outcome, pending.request, &mut effects.offsets).await?
    {
        effects.complete(c);
    }
    Ok(())
}

async fn commit(
    shared: &Shared,
    tx: &mut PgConnection,
    topology: &TopologyState,
    pending: &PendingRow,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    effects.resolved.push(pending.request);
    let payload: ViewPayload = store::from_json(&pending.view, "pending view")?;
    let hosted = hosted_parties(topology, &shared.member);
    // Only a request whose checks passed gets here, so its root hash was verified.
    let root: ordo_core::Hash = pending.root_hash.parse().map_err(|_| {
        ParticipantError::Internal(format!(
            "pending request {} has root hash {:?}",
            pending.request.micros(),
            pending.root_hash
        ))
    })?;
    let update_id = merkle::update_id(&root, pending.request);
    // The offset is taken only if there is an update to append (gapless offsets).
    let probe = views::commit(
        &payload.view,
        &hosted,
        &CommitContext {
            update_id: &update_id,
            offset: 0,
            effective_at: pending.request.micros(),
            workflow_id: &payload.workflow_id,
            command_id: &payload.command_id,
        },
    );
    let offset = if probe.update.is_some() {
        effects.offsets.next_ledger()
    } else {
        0
    };
    let commit = views::commit(
        &payload.view,
        &hosted,
        &CommitContext {
            update_id: &update_id,
            offset,
            effective_at: pending.request.micros(),
            workflow_id: &payload.workflow_id,
            command_id: &payload.command_id,
        },
    );
    store::archive_contracts(tx, &commit.archived, pending.request).await?;
    store::release_locks(tx, pending.request).await?;
    for c in &commit.created {
        let stakeholders: Vec<String> = c.stakeholders().into_iter().collect();
        store::insert_contract(
            tx,
            &c.contract_id,
            &c.template_id,
            &stakeholders,
            &store::to_json(c),
            offset,
        )
        .await?;
    }
    if let Some(update) = &commit.update {
        store::append_update(tx, offset, &update.update_id, &store::to_json(update)).await?;
        effects.ledger_end = Some(offset);
    }
    if pending.submitter == shared.member.as_str()
        && let Some(cmd) = store::command_by_request(tx, pending.request).await?
    {
        let outcome = Outcome {
            code: CODE_OK,
            message: String::new(),
            update_id,
            ledger_offset: offset,
        };
        if let Some(c) =
            store::complete(tx, cmd, &outcome, pending.request, &mut effects.offsets).await?
        {
            effects.complete(c);
        }
    }
    Ok(())
}

/// Completes a command whose confirmation request the sequencer definitely refused (not
/// sequenced), unless it was sequenced after all.
pub async fn reject_unsequenced(
    shared: &Shared,
    message_id: &str,
    outcome: &Outcome,
) -> Result<(), ParticipantError> {
    let mut tx = shared.pool.begin().await?;
    let state = store::lock_state(&mut tx).await?;
    let Some(cmd) = store::command_by_message_id(&mut tx, message_id).await? else {
        return Ok(());
    };
    if cmd.request_ts.is_some() {
        return Ok(());
    }
    let mut offsets = store::Offsets {
        ledger_end: state.ledger_end,
        completion_end: state.completion_end,
    };
    let at = state.cursor.max(Timestamp(1));
    let completed = store::complete_command(&mut tx, message_id, outcome, at, &mut offsets).await?;
    store::save_position(&mut tx, state.cursor, &offsets).await?;
    shared.commit(tx).await?;
    if let Some(c) = completed {
        shared.completion_end.send_replace(c.completion_offset);
        shared.deliver(vec![c]);
    }
    Ok(())
}
