//! Sequencer event processing (DESIGN §4 steps 4 and 6), in order and exactly once: every
//! effect of an event (topology, locks, pending requests, the ACS, the update log,
//! completions, outbox rows) commits in one transaction together with the cursor, so a
//! crash neither loses nor repeats anything; the subscription resumes after the cursor.
//!
//! Decoding, signature checks and re-interpretation run on a blocking thread before the
//! transaction; the deciding rules live in `conflict` and `views`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_core::{MemberId, PartyId, PublicKey, SequencedEvent, Submission, Timestamp};
use ordo_ledger::PackageStore;
use ordo_protocol::{
    ConfirmationResponse, Message, ResponseOutcome, SignedMessage, TopologyChange, TopologyState,
    TopologyTransaction, Verdict, VerdictOutcome,
};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use crate::conflict;
use crate::error::ParticipantError;
use crate::node::{Shared, Snapshot};
use crate::store::{self, Outcome, PendingRow};
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

/// Processes the sequencer's events from the stored cursor on, until `stop`. A write the
/// lease fence refuses ends it with that error: this replica's term is over. Other
/// failures are retried.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) -> Result<(), ParticipantError> {
    let mut last_ack = Instant::now();
    'subscribe: loop {
        let cursor = shared.snapshot().cursor;
        let mut subscription = shared.sequencer.subscribe(cursor);
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                e = subscription.next() => e,
            };
            let event = match event {
                Ok(e) => e,
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
            loop {
                match process(&shared, &event).await {
                    Ok(()) => break,
                    Err(e @ ParticipantError::Fenced(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(ts = event.timestamp.micros(), error = %e, "processing an event failed; retrying");
                        shared.replica.error(format!(
                            "processing the event at {}: {e}",
                            event.timestamp.micros()
                        ));
                        tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            shared.replica.processed(event.timestamp);
            if last_ack.elapsed() >= shared.config.acknowledge_interval {
                last_ack = Instant::now();
                let client = shared.sequencer.clone();
                let ts = event.timestamp;
                tokio::spawn(async move {
                    if let Err(e) = client.acknowledge(ts).await {
                        tracing::info!(error = %e, "acknowledging to the sequencer failed");
                    }
                });
            }
        }
    }
}

/// A verified message of an event.
enum Prepared {
    Topology(TopologyTransaction),
    View {
        submitter: MemberId,
        root_hash: String,
        payload: Box<ViewPayload>,
        /// The outcome of re-interpretation: `Err` with the reason.
        conformance: Result<(), String>,
    },
    Verdict(Verdict),
}

fn decode_key(hex_key: &str) -> Option<PublicKey> {
    PublicKey::from_bytes(&hex::decode(hex_key).ok()?).ok()
}

/// Decodes and verifies the event's messages and re-interprets its views. Anything
/// malformed or wrongly signed is logged and skipped.
fn prepare(
    snapshot: &Snapshot,
    topology_manager: &MemberId,
    limits: &ordo_ledger::Limits,
    event: &SequencedEvent,
) -> Vec<Prepared> {
    let topology = &snapshot.topology;
    let mut out = Vec::new();
    for envelope in &event.envelopes {
        let signed = match SignedMessage::decode(&envelope.content) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(ts = event.timestamp.micros(), sender = %event.sender, error = %e, "skipping a malformed message");
                continue;
            }
        };
        if signed.signer != event.sender {
            tracing::warn!(signer = %signed.signer, sender = %event.sender, "skipping a message signed by another member than its sender");
            continue;
        }
        let key = match &signed.message {
            Message::Topology(t) if &signed.signer == topology_manager => {
                topology
                    .key_of(topology_manager)
                    .or_else(|| match &t.change {
                        // The manager's own first transaction introduces its key.
                        TopologyChange::AddMember {
                            member, public_key, ..
                        } if t.serial == 1 && member == topology_manager => decode_key(public_key),
                        _ => None,
                    })
            }
            Message::Topology(_) => {
                tracing::warn!(signer = %signed.signer, "skipping a topology transaction not signed by the topology manager");
                continue;
            }
            Message::View(_) => topology.key_of(&signed.signer).filter(|_| {
                topology
                    .shards
                    .values()
                    .any(|s| s.participant == signed.signer)
            }),
            Message::Verdict(_) if topology.mediator() == Some(&signed.signer) => {
                topology.key_of(&signed.signer)
            }
            Message::Verdict(_) => {
                tracing::warn!(signer = %signed.signer, "skipping a verdict not from the domain's mediator");
                continue;
            }
            _ => continue,
        };
        let Some(key) = key else {
            tracing::warn!(signer = %signed.signer, "skipping a message from a member topology does not know");
            continue;
        };
        if let Err(e) = signed.verify(&key) {
            tracing::warn!(error = %e, "skipping a wrongly signed message");
            continue;
        }
        match signed.message {
            Message::Topology(t) => out.push(Prepared::Topology(t)),
            Message::Verdict(v) => out.push(Prepared::Verdict(v)),
            Message::View(v) => {
                let payload: ViewPayload = match serde_json::from_value(v.view) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(submitter = %signed.signer, error = %e, "skipping a malformed view");
                        continue;
                    }
                };
                let conformance =
                    ordo_ledger::reinterpret_view(&snapshot.packages, &payload.view, limits)
                        .map_err(|e| format!("view does not conform: {e}"));
                out.push(Prepared::View {
                    submitter: signed.signer,
                    root_hash: v.root_hash,
                    payload: Box::new(payload),
                    conformance,
                });
            }
            _ => {}
        }
    }
    out
}

/// What a committed event changed that in-memory watchers care about.
#[derive(Default)]
struct Effects {
    ledger_end: Option<i64>,
    completion_end: Option<i64>,
    outbox: bool,
}

pub fn limits(shared: &Shared) -> ordo_ledger::Limits {
    ordo_ledger::Limits {
        max_operations: shared.config.limits.max_interpretation_steps,
        ..Default::default()
    }
}

async fn process(shared: &Arc<Shared>, event: &SequencedEvent) -> Result<(), ParticipantError> {
    let snapshot = shared.snapshot();
    let ts = event.timestamp;
    if ts <= snapshot.cursor {
        return Ok(());
    }
    let prepared = {
        let snapshot = snapshot.clone();
        let tm = shared.topology_manager.clone();
        let limits = limits(shared);
        let event = event.clone();
        tokio::task::spawn_blocking(move || prepare(&snapshot, &tm, &limits, &event))
            .await
            .map_err(|e| ParticipantError::Internal(format!("event preparation panicked: {e}")))?
    };

    let mut tx = shared.pool.begin().await?;
    let state = store::lock_state(&mut tx).await?;
    if state.cursor >= ts {
        return Ok(());
    }
    if state.cursor != snapshot.cursor {
        // Only the active replica writes, and a term starts by reloading; should the
        // cache still be stale, it must not be the base of this event's effects.
        let stored = state.cursor.micros();
        shared.reload(state);
        return Err(ParticipantError::Internal(format!(
            "the stored cursor {stored} is not this replica's {}: the state was advanced elsewhere; reloaded it",
            snapshot.cursor.micros()
        )));
    }
    let mut effects = Effects::default();
    if event.sender == shared.member {
        store::set_command_request(&mut tx, &event.message_id, ts).await?;
    }
    expire(shared, &mut tx, ts, &mut effects).await?;

    let mut topology = snapshot.topology.clone();
    let mut topology_changed = false;
    for message in prepared {
        match message {
            Prepared::Topology(t) => match topology.apply(&t, ts) {
                Ok(()) => topology_changed = true,
                Err(e) => tracing::warn!(error = %e, "topology transaction refused"),
            },
            Prepared::View {
                submitter,
                root_hash,
                payload,
                conformance,
            } => {
                on_view(
                    shared,
                    &mut tx,
                    &topology,
                    ts,
                    &submitter,
                    &root_hash,
                    &payload,
                    conformance,
                    &mut effects,
                )
                .await?;
            }
            Prepared::Verdict(v) => {
                on_verdict(shared, &mut tx, &topology, &v, &mut effects).await?
            }
        }
    }
    if topology_changed {
        store::save_topology(&mut tx, &topology).await?;
    }
    store::set_cursor(&mut tx, ts).await?;
    shared.commit(tx).await?;

    let packages = if topology_changed && topology.packages != snapshot.topology.packages {
        Arc::new(package_store(&topology))
    } else {
        snapshot.packages.clone()
    };
    *shared.snapshot.write() = Arc::new(Snapshot {
        topology: if topology_changed {
            topology
        } else {
            snapshot.topology.clone()
        },
        packages,
        cursor: ts,
    });
    if let Some(end) = effects.ledger_end {
        shared.ledger_end.send_replace(end);
    }
    if let Some(end) = effects.completion_end {
        shared.completion_end.send_replace(end);
    }
    if effects.outbox {
        shared.outbox_wake.notify_one();
    }
    shared.processed.send_replace(ts);
    Ok(())
}

/// Requests past their deadline without a verdict time out; commands whose confirmation
/// request can no longer be sequenced are rejected.
async fn expire(
    shared: &Shared,
    tx: &mut PgConnection,
    now: Timestamp,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    for request in store::expired_pending(tx, now).await? {
        if let Some(pending) = store::take_pending(tx, request, None).await? {
            tracing::info!(
                request = request.micros(),
                "no verdict by the deadline; the request timed out"
            );
            finish_rejected(shared, tx, &pending, timeout_outcome(), effects).await?;
        }
    }
    for message_id in store::unsequenced_commands_before(tx, now).await? {
        let outcome = Outcome {
            code: CODE_ABORTED,
            message: "the confirmation request was not sequenced before its max sequencing time; resubmit the command".into(),
            update_id: String::new(),
            ledger_offset: 0,
        };
        if let Some(offset) = store::complete_command(tx, &message_id, &outcome, now).await? {
            effects.completion_end = Some(offset);
        }
    }
    Ok(())
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

#[allow(clippy::too_many_arguments)]
async fn on_view(
    shared: &Shared,
    tx: &mut PgConnection,
    topology: &TopologyState,
    request: Timestamp,
    submitter: &MemberId,
    root_hash: &str,
    payload: &ViewPayload,
    conformance: Result<(), String>,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    let hosted = hosted_parties(topology, &shared.member);
    let view = &payload.view;
    // Authorization: the submitting participant may act only for parties it hosts, and
    // a transaction root carries exactly the submitters' authority.
    let authorized = || -> Result<(), String> {
        for party in &view.submitters {
            if topology.host_of(party) != Some(submitter) {
                return Err(format!(
                    "participant {submitter} submitted for party {party}, which it does not host"
                ));
            }
        }
        for root in view.roots.iter().filter(|r| r.parent.is_none()) {
            if root.authorizers != view.submitters {
                return Err(format!(
                    "node {} claims authorizers other than the submitters",
                    root.node
                ));
            }
        }
        Ok(())
    };
    let mut outcome = conformance.and_then(|()| authorized());
    if outcome.is_ok() {
        let uses = views::input_uses(view, &hosted);
        // Every input, not only those with a stakeholder hosted here as the view claims
        // them: a stored contract is checked against the view's copy whatever it claims.
        let ids: Vec<String> = uses.iter().map(|u| u.contract_id.clone()).collect();
        let states = store::contract_states(tx, &ids).await?;
        match conflict::check_activeness(request, &uses, &states) {
            Ok(locks) => store::lock_contracts(tx, &locks.contract_ids, request).await?,
            Err(reason) => outcome = Err(reason),
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
            root_hash: root_hash.to_owned(),
            submitter: submitter.to_string(),
            view: store::to_json(payload),
        },
        deadline,
    )
    .await?;

    let confirming = views::hosted_confirming(view, &hosted);
    if confirming.is_empty() {
        return Ok(());
    }
    let Some(mediator) = topology.mediator() else {
        tracing::warn!(
            request = request.micros(),
            "no mediator in topology; cannot answer the request"
        );
        return Ok(());
    };
    if let Err(reason) = &outcome {
        tracing::info!(request = request.micros(), %reason, "rejecting a confirmation request");
    }
    let response = ConfirmationResponse {
        request,
        root_hash: root_hash.to_owned(),
        parties: confirming,
        outcome: match outcome {
            Ok(()) => ResponseOutcome::Approve,
            Err(reason) => ResponseOutcome::Reject { reason },
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
    effects.outbox = true;
    Ok(())
}

async fn on_verdict(
    shared: &Shared,
    tx: &mut PgConnection,
    topology: &TopologyState,
    verdict: &Verdict,
    effects: &mut Effects,
) -> Result<(), ParticipantError> {
    let Some(pending) = store::take_pending(tx, verdict.request, Some(&verdict.root_hash)).await?
    else {
        tracing::debug!(
            request = verdict.request.micros(),
            "verdict for no pending request here"
        );
        return Ok(());
    };
    match &verdict.outcome {
        VerdictOutcome::Approve => commit(shared, tx, topology, &pending, effects).await,
        VerdictOutcome::Reject { reasons } => {
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
        VerdictOutcome::Timeout => {
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
    store::release_locks(tx, pending.request).await?;
    if pending.submitter == shared.member.as_str()
        && let Some(cmd) = store::command_by_request(tx, pending.request).await?
        && let Some(offset) =
            store::complete_command(tx, &cmd.message_id, &outcome, pending.request).await?
    {
        effects.completion_end = Some(offset);
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
    let payload: ViewPayload = store::from_json(&pending.view, "pending view")?;
    let hosted = hosted_parties(topology, &shared.member);
    // The offset is taken only if there is an update to append (gapless offsets).
    let probe = views::commit(
        &payload.view,
        &hosted,
        &CommitContext {
            update_id: &pending.root_hash,
            offset: 0,
            effective_at: pending.request.micros(),
            workflow_id: &payload.workflow_id,
            command_id: &payload.command_id,
        },
    );
    let offset = if probe.update.is_some() {
        store::next_ledger_offset(tx).await?
    } else {
        0
    };
    let commit = views::commit(
        &payload.view,
        &hosted,
        &CommitContext {
            update_id: &pending.root_hash,
            offset,
            effective_at: pending.request.micros(),
            workflow_id: &payload.workflow_id,
            command_id: &payload.command_id,
        },
    );
    store::archive_contracts(tx, &commit.archived).await?;
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
            update_id: pending.root_hash.clone(),
            ledger_offset: offset,
        };
        if let Some(c) =
            store::complete_command(tx, &cmd.message_id, &outcome, pending.request).await?
        {
            effects.completion_end = Some(c);
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
    let offset =
        store::complete_command(&mut tx, message_id, outcome, state.cursor.max(Timestamp(1)))
            .await?;
    shared.commit(tx).await?;
    if let Some(offset) = offset {
        shared.completion_end.send_replace(offset);
    }
    Ok(())
}
