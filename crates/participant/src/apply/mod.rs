//! The deciding core of a batch (DESIGN §4 steps 4 and 6): pure, over the state the batch
//! read up front (`store::batch::read`, one statement per table), applying the batch's
//! events in sequencing order to that state in memory and collecting what to write
//! ([`Writes`], written once with set-based statements by `store::batch::write`) and what
//! the in-memory watchers learn once it is committed ([`Effects`]).
//!
//! The state read is every row the batch can touch: the active contracts among its views'
//! inputs, which of the contracts they create this shard already knows, the pending
//! requests its verdicts decide or that come due, and the commands of its requests. A
//! later event of the batch sees what an earlier one did (a contract created, archived or
//! locked; a request made pending or decided), exactly as if each event had been written
//! before the next was read.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use ordo_core::{KeyPair, MemberId, PartyId, Submission, Timestamp};
use ordo_proto::errors;
use ordo_protocol::{
    ConfirmationResponse, Message, ResponseOutcome, SignedMessage, TopologyState, Verdict,
    VerdictOutcome, merkle,
};

use crate::alarm::{Alarm, Raised};
use crate::conflict::{self, ContractState, KeyState};
use crate::error::ParticipantError;
use crate::events::StoredContract;
use crate::store::{self, CommandRow, CommandState, CompletionRow, Outcome, PendingRow};
use crate::validation::{CheckedView, Rejection};
use crate::views::{self, CommitContext, ViewPayload};

/// google.rpc.Code values used in completions.
pub const CODE_OK: i32 = 0;

/// What a batch reads before deciding.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The active contracts among the inputs of the batch's views, with their locks.
    pub contracts: HashMap<String, ContractState>,
    /// Of the contracts the batch's views create, those this shard stores or stored.
    pub known: HashSet<String>,
    /// The keys the batch's views assign or find free that this shard stores a holder or
    /// a lock of (by hash); a key absent is free here.
    pub keys: HashMap<String, KeyState>,
    /// The pending requests the batch's verdicts name or whose deadline passes before
    /// its last event, with their deadlines.
    pub pending: Vec<(PendingRow, Timestamp)>,
    /// The commands of the batch's own requests (by message id), of the pending requests
    /// read, and those in flight unsequenced whose max sequencing time passes before the
    /// batch's last event.
    pub commands: Vec<CommandRow>,
}

/// What a batch writes (`store::batch::write` knows the order it needs).
#[derive(Debug, Default)]
pub struct Writes {
    /// Own confirmation requests sequenced: (message id, request).
    pub command_requests: Vec<(String, i64)>,
    /// Requests made pending and not decided within the batch: (row, deadline).
    pub pending_inserted: Vec<(PendingRow, Timestamp)>,
    /// Pending requests read and decided (or timed out).
    pub pending_removed: Vec<i64>,
    /// Contracts archived that were stored before the batch (or may have been):
    /// (contract, archived at).
    pub archived: Vec<(String, i64)>,
    /// Requests decided, whose locks from earlier batches are released.
    pub released: Vec<i64>,
    /// Locks taken in the batch and still held, on contracts stored before it.
    pub locked: Vec<(String, i64)>,
    /// Key locks taken in the batch and still held: (key hash, request).
    pub key_locked: Vec<(String, i64)>,
    /// Contracts created in the batch and still active: (contract, locked by).
    pub created: Vec<(StoredContract, Option<i64>)>,
    /// Contracts created and archived within the batch: only remembered as archived.
    pub created_archived: Vec<(String, i64)>,
    /// Updates appended: (offset, update id, stored transaction).
    pub updates: Vec<(i64, String, Vec<u8>)>,
    /// Commands completed: (message id, completed at, completion).
    pub completions: Vec<(String, i64, CompletionRow)>,
    /// Messages to send.
    pub outbox: Vec<store::OutboxRow>,
}

/// What a committed batch changed that in-memory watchers care about, and the alarms its
/// events raised (counted once the batch is committed).
#[derive(Default)]
pub struct Effects {
    /// The offsets taken so far, written with the cursor.
    pub offsets: store::Offsets,
    /// The current event's alarms.
    pub alarms: Vec<Raised>,
    /// Every event's alarms, with the event.
    pub raised: Vec<(Timestamp, MemberId, Raised)>,
    /// Completions, for the calls waiting on them once committed.
    pub completed: Vec<CompletionRow>,
    /// Approved requests pending here: (request, deadline, the contracts they create).
    pub creating: Vec<(Timestamp, Timestamp, Vec<String>)>,
    /// Requests whose outcome was applied (or timed out).
    pub resolved: Vec<Timestamp>,
}

impl Writes {
    /// The last update offset the batch appended, if any.
    pub fn ledger_end(&self) -> Option<i64> {
        self.updates.last().map(|(offset, _, _)| *offset)
    }
}

impl Effects {
    /// The last completion offset the batch took, if any.
    pub fn completion_end(&self) -> Option<i64> {
        self.completed.last().map(|c| c.completion_offset)
    }
}

/// A contract the batch knows of.
#[derive(Debug)]
struct Slot {
    /// `None`: archived in the batch.
    state: Option<ContractState>,
    /// Created in the batch (index into the created list), or stored before it.
    created: Option<usize>,
    /// Its lock changed in the batch.
    lock_changed: bool,
    archived_at: i64,
}

/// A contract key the batch knows of (one its views assign or find free).
#[derive(Debug)]
struct KeySlot {
    state: KeyState,
    lock_changed: bool,
}

/// What may come due within a batch: pending requests by deadline and in-flight commands
/// not yet sequenced by max sequencing time. Each event takes those due before its own
/// timestamp, in order.
#[derive(Debug, Default)]
struct Due {
    requests: VecDeque<(Timestamp, Timestamp)>,
    commands: VecDeque<(Timestamp, String)>,
}

/// Who decides: this participant, its key and its settings.
pub struct Decider<'a> {
    pub me: &'a MemberId,
    pub key: &'a KeyPair,
    pub mediator_reaction_timeout: std::time::Duration,
}

/// One batch being decided.
pub struct Batch<'a> {
    who: Decider<'a>,
    contracts: HashMap<String, Slot>,
    known: HashSet<String>,
    keys: HashMap<String, KeySlot>,
    pending: HashMap<Timestamp, (PendingRow, Timestamp, bool)>,
    commands: HashMap<String, CommandRow>,
    by_request: HashMap<i64, String>,
    due: Due,
    created: Vec<StoredContract>,
    /// The batch's responses to the mediator: (request, max sequencing time, envelope),
    /// sent as one submission (`finish`).
    responses: Vec<(Timestamp, Timestamp, ordo_core::Envelope)>,
    last: Timestamp,
    pub writes: Writes,
    pub effects: Effects,
}

impl<'a> Batch<'a> {
    /// A batch over `loaded`, whose last event is at `last`, taking offsets from `offsets`.
    pub fn new(who: Decider<'a>, loaded: Loaded, offsets: store::Offsets, last: Timestamp) -> Self {
        let contracts = loaded
            .contracts
            .into_iter()
            .map(|(id, state)| {
                let slot = Slot {
                    state: Some(state),
                    created: None,
                    lock_changed: false,
                    archived_at: 0,
                };
                (id, slot)
            })
            .collect();
        let mut due = Due::default();
        let mut requests: Vec<(Timestamp, Timestamp)> = loaded
            .pending
            .iter()
            .filter(|(_, deadline)| *deadline < last)
            .map(|(row, deadline)| (*deadline, row.request))
            .collect();
        requests.sort();
        due.requests = requests.into();
        let mut unsequenced: Vec<(Timestamp, String)> = loaded
            .commands
            .iter()
            .filter(|c| {
                c.state == CommandState::InFlight
                    && c.request_ts.is_none()
                    && c.max_sequencing_time < last
            })
            .map(|c| (c.max_sequencing_time, c.message_id.clone()))
            .collect();
        unsequenced.sort();
        due.commands = unsequenced.into();
        let pending = loaded
            .pending
            .into_iter()
            .map(|(row, deadline)| (row.request, (row, deadline, true)))
            .collect();
        let by_request = loaded
            .commands
            .iter()
            .filter_map(|c| Some((c.request_ts?, c.message_id.clone())))
            .collect();
        let commands = loaded
            .commands
            .into_iter()
            .map(|c| (c.message_id.clone(), c))
            .collect();
        let keys = loaded
            .keys
            .into_iter()
            .map(|(hash, state)| {
                let slot = KeySlot {
                    state,
                    lock_changed: false,
                };
                (hash, slot)
            })
            .collect();
        Self {
            who,
            contracts,
            known: loaded.known,
            keys,
            pending,
            commands,
            by_request,
            due,
            created: Vec::new(),
            responses: Vec::new(),
            last,
            writes: Writes::default(),
            effects: Effects {
                offsets,
                ..Effects::default()
            },
        }
    }

    /// Starts the event at `ts` sent by `sender` as `message_id`: an own confirmation
    /// request records its sequencing time with its command, and what came due before it
    /// times out.
    pub fn begin_event(&mut self, ts: Timestamp, sender: &MemberId, message_id: &str) {
        if sender == self.who.me
            && let Some(cmd) = self.commands.get_mut(message_id)
            && cmd.state == CommandState::InFlight
        {
            cmd.request_ts = Some(ts.micros());
            self.by_request.insert(ts.micros(), message_id.to_owned());
            self.writes
                .command_requests
                .push((message_id.to_owned(), ts.micros()));
        }
        self.expire(ts);
    }

    /// Ends the event at `ts` sent by `sender`: its alarms are kept with it.
    pub fn end_event(&mut self, ts: Timestamp, sender: &MemberId) {
        let raised = std::mem::take(&mut self.effects.alarms);
        self.effects
            .raised
            .extend(raised.into_iter().map(|r| (ts, sender.clone(), r)));
    }

    /// Requests past their deadline without a verdict time out; commands whose
    /// confirmation request can no longer be sequenced are rejected.
    fn expire(&mut self, now: Timestamp) {
        while let Some(&(deadline, request)) = self.due.requests.front()
            && deadline < now
        {
            self.due.requests.pop_front();
            if let Some(pending) = self.take_pending(request) {
                tracing::info!(
                    request = request.micros(),
                    "no verdict by the deadline; the request timed out"
                );
                self.finish_rejected(&pending, timeout_outcome());
            }
        }
        while let Some((mst, _)) = self.due.commands.front()
            && *mst < now
        {
            let Some((_, message_id)) = self.due.commands.pop_front() else {
                break;
            };
            // Not if its request was sequenced earlier in the batch after all.
            if self
                .commands
                .get(&message_id)
                .is_some_and(|c| c.request_ts.is_none())
            {
                let outcome = Outcome::rejected(
                    errors::NOT_SEQUENCED_TIMEOUT,
                    "the confirmation request was not sequenced before its max sequencing \
                     time; resubmit the command",
                );
                self.complete(&message_id, &outcome, now);
            }
        }
    }

    fn take_pending(&mut self, request: Timestamp) -> Option<PendingRow> {
        let (row, _, stored) = self.pending.remove(&request)?;
        if stored {
            self.writes.pending_removed.push(request.micros());
        }
        Some(row)
    }

    /// The state of contract `id` as far as the batch knows (`None`: not active here).
    fn contract_state(&self, id: &str) -> Option<&ContractState> {
        self.contracts.get(id)?.state.as_ref()
    }

    /// A view addressed to this participant: the checks against the shard's state
    /// (activeness and locks of its inputs, freshness of the contracts it creates), then
    /// the pending request with this participant's own outcome, and the response for the
    /// parties it answers for.
    pub fn on_view(&mut self, topology: &TopologyState, request: Timestamp, view: CheckedView) {
        let hosted = hosted_parties(topology, self.who.me);
        let mut outcome = view.outcome;
        let mut created = Vec::new();
        if let (Ok(()), Some((payload, _))) = (&outcome, &view.payload) {
            created = views::created_ids(&payload.view);
            let known: Vec<String> = created
                .iter()
                .filter(|id| self.known.contains(*id) || self.contracts.contains_key(*id))
                .cloned()
                .collect();
            if let Err(reason) = conflict::check_fresh(&known) {
                self.effects
                    .alarms
                    .push(Raised::new(Alarm::ContractIdReuse, reason.clone()));
                outcome = Err(Rejection::alarm(Alarm::ContractIdReuse, reason));
            }
        }
        if let (Ok(()), Some((payload, _))) = (&outcome, &view.payload) {
            let uses = views::input_uses(&payload.view, &hosted);
            // Every input, not only those with a stakeholder hosted here as the view
            // claims them: a stored contract is checked against the view's copy whatever
            // it claims.
            let checked =
                conflict::check_activeness_in(request, &uses, |id| self.contract_state(id))
                    .and_then(|locks| {
                        let key_uses = views::key_uses(&payload.view, &hosted);
                        let consumed = views::consumed(&payload.view);
                        let keys = conflict::check_keys(request, &key_uses, &consumed, |k| {
                            self.keys.get(k).map(|slot| &slot.state)
                        })?;
                        Ok((locks, keys))
                    });
            match checked {
                Ok((locks, keys)) => {
                    for id in locks.contract_ids {
                        if let Some(slot) = self.contracts.get_mut(&id)
                            && let Some(state) = &mut slot.state
                        {
                            state.locked_by = Some(request);
                            slot.lock_changed = true;
                        }
                    }
                    for hash in keys {
                        let slot = self.keys.entry(hash).or_insert(KeySlot {
                            state: KeyState::default(),
                            lock_changed: false,
                        });
                        slot.state.locked_by = Some(request);
                        slot.lock_changed = true;
                    }
                }
                Err(conflict) => outcome = Err(conflict.into()),
            }
        }
        let params = &topology.parameters;
        let deadline = request
            .plus_micros(params.participant_response_timeout_us)
            .plus(self.who.mediator_reaction_timeout);
        let row = PendingRow {
            request,
            root_hash: view.root_hash.clone(),
            submitter: view.submitter.to_string(),
            view: view
                .payload
                .as_ref()
                .map(|(_, json)| json.get().as_bytes().to_vec())
                .unwrap_or_default(),
            rejection: outcome.as_ref().err().map(|r| r.reason.clone()),
        };
        if self.pending.contains_key(&request) {
            // A second view for the same request: the first one stands.
            return;
        }
        self.pending.insert(request, (row, deadline, false));
        // A request made pending here can time out later in the same batch.
        if deadline < self.last {
            let at = self
                .due
                .requests
                .partition_point(|d| *d <= (deadline, request));
            self.due.requests.insert(at, (deadline, request));
        }
        if outcome.is_ok() && !created.is_empty() {
            self.effects.creating.push((request, deadline, created));
        }

        let answering: BTreeSet<PartyId> = view
            .declared_confirming
            .intersection(&hosted)
            .cloned()
            .collect();
        if answering.is_empty() {
            return;
        }
        let Some(mediator) = topology.mediator() else {
            tracing::warn!(
                request = request.micros(),
                "no mediator in topology; cannot answer the request"
            );
            return;
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
                Err(r) => ResponseOutcome::Reject {
                    reason: r.reason,
                    code: Some(r.code.id.to_owned()),
                },
            },
        };
        let content =
            SignedMessage::encode(self.who.me, self.who.key, &Message::Response(response));
        self.responses.push((
            request,
            request.plus_micros(params.participant_response_timeout_us),
            ordo_core::Envelope {
                recipients: ordo_core::Recipients::members([mediator.clone()]),
                content,
            },
        ));
    }

    /// The batch's responses as one submission (or one per
    /// [`ordo_protocol::grouping::GROUP_BYTES`]), an envelope each: one sequenced event and
    /// one delivery to the mediator for the whole batch instead of one per request. Its id
    /// names the first and last request, unique since each request is answered in one
    /// committed batch only; it must be sequenced before the earliest of its requests'
    /// response timeouts.
    fn send_responses(&mut self) {
        let responses = std::mem::take(&mut self.responses);
        for group in ordo_protocol::grouping::by_bytes(responses, |(_, _, e)| e.content.len()) {
            let (Some(&(first, mst, _)), Some(&(last, ..))) = (group.first(), group.last()) else {
                continue;
            };
            let message_id = format!("resp-{}-{}", first.micros(), last.micros());
            let max_sequencing_time = group.iter().fold(mst, |m, (_, t, _)| m.min(*t));
            self.writes.outbox.push(store::OutboxRow {
                submission: Submission {
                    message_id,
                    max_sequencing_time,
                    envelopes: group.into_iter().map(|(_, _, e)| e).collect(),
                },
                is_command: false,
            });
        }
    }

    /// A verdict: the pending request it decides is committed or rejected.
    pub fn on_verdict(
        &mut self,
        topology: &TopologyState,
        verdict: &Verdict,
    ) -> Result<(), ParticipantError> {
        let Some(pending) = self.take_pending(verdict.request) else {
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
                "the mediator decided request {} with root hash {}, but this participant saw \
                 root hash {}",
                verdict.request.micros(),
                verdict.root_hash,
                pending.root_hash
            );
            self.effects
                .alarms
                .push(Raised::new(Alarm::VerdictRootMismatch, reason.clone()));
            self.finish_rejected(&pending, local_rejection(&reason));
            return Ok(());
        }
        match (&verdict.outcome, &pending.rejection) {
            (VerdictOutcome::Approve, Some(rejection)) => {
                self.effects.alarms.push(Raised::new(
                    Alarm::VerdictContradictsChecks,
                    format!(
                        "the mediator approved request {}, which this participant rejected \
                         ({rejection}); it is not applied here",
                        verdict.request.micros()
                    ),
                ));
                self.finish_rejected(&pending, local_rejection(rejection));
            }
            (VerdictOutcome::Approve, None) => self.commit(topology, &pending)?,
            (VerdictOutcome::Reject { reasons, code }, _) => {
                // The rejecting participant's code; one from an older participant (none,
                // or unknown here) is reported as a failed precondition.
                let code = code
                    .as_deref()
                    .and_then(errors::by_id)
                    .unwrap_or(errors::FAILED_PRECONDITION);
                let outcome = Outcome::rejected(
                    code,
                    format!("the transaction was rejected: {}", reasons.join("; ")),
                );
                self.finish_rejected(&pending, outcome);
            }
            (VerdictOutcome::Timeout, _) => self.finish_rejected(&pending, timeout_outcome()),
        }
        Ok(())
    }

    /// Releases the locks `request` holds, on contracts and keys.
    fn release(&mut self, request: Timestamp) {
        self.effects.resolved.push(request);
        self.writes.released.push(request.micros());
        for slot in self.contracts.values_mut() {
            if let Some(state) = &mut slot.state
                && state.locked_by == Some(request)
            {
                state.locked_by = None;
                slot.lock_changed = true;
            }
        }
        for slot in self.keys.values_mut() {
            if slot.state.locked_by == Some(request) {
                slot.state.locked_by = None;
                slot.lock_changed = true;
            }
        }
    }

    /// The keys the batch knows change holders as a committed view archives and creates
    /// contracts (keys no view of the batch uses are not followed: nothing here asks).
    fn reassign_keys(
        &mut self,
        view: &ordo_ledger::View,
        archived: &[String],
        created: &[StoredContract],
    ) {
        if self.keys.is_empty() {
            return;
        }
        for id in archived {
            let hash = id
                .parse()
                .ok()
                .and_then(|cid| view.inputs.get(&cid))
                .and_then(|c| c.key_hash())
                .map(|h| h.to_hex());
            if let Some(slot) = hash.and_then(|h| self.keys.get_mut(&h))
                && slot.state.holder.as_ref() == Some(id)
            {
                slot.state.holder = None;
            }
        }
        for c in created {
            if let Some(slot) = c.key_hash.as_ref().and_then(|h| self.keys.get_mut(h)) {
                slot.state.holder = Some(c.contract_id.clone());
            }
        }
    }

    fn finish_rejected(&mut self, pending: &PendingRow, outcome: Outcome) {
        self.release(pending.request);
        self.complete_request(pending, &outcome);
    }

    /// Completes the command of `pending` if this participant submitted it.
    fn complete_request(&mut self, pending: &PendingRow, outcome: &Outcome) {
        if pending.submitter != self.who.me.as_str() {
            return;
        }
        if let Some(message_id) = self.by_request.get(&pending.request.micros()).cloned() {
            self.complete(&message_id, outcome, pending.request);
        }
    }

    /// Completes an in-flight command (nothing if it is not in flight).
    fn complete(&mut self, message_id: &str, outcome: &Outcome, at: Timestamp) {
        let Some(cmd) = self.commands.get_mut(message_id) else {
            return;
        };
        if cmd.state != CommandState::InFlight {
            return;
        }
        cmd.state = if outcome.code == CODE_OK {
            CommandState::Succeeded
        } else {
            CommandState::Rejected
        };
        let offset = self.effects.offsets.next_completion();
        let completion = CompletionRow {
            completion_offset: offset,
            application_id: cmd.key.application_id.clone(),
            command_id: cmd.key.command_id.clone(),
            submission_id: cmd.submission_id.clone(),
            act_as: cmd.key.act_as.clone(),
            outcome: outcome.clone(),
            dedup: cmd.dedup,
        };
        self.writes
            .completions
            .push((message_id.to_owned(), at.micros(), completion.clone()));
        self.effects.completed.push(completion);
    }

    fn commit(
        &mut self,
        topology: &TopologyState,
        pending: &PendingRow,
    ) -> Result<(), ParticipantError> {
        let payload: ViewPayload = store::from_json(&pending.view, "pending view")?;
        let hosted = hosted_parties(topology, self.who.me);
        // Only a request whose checks passed gets here, so its root hash was verified.
        let root: ordo_core::Hash = pending.root_hash.parse().map_err(|_| {
            ParticipantError::Internal(format!(
                "pending request {} has root hash {:?}",
                pending.request.micros(),
                pending.root_hash
            ))
        })?;
        let update_id = merkle::update_id(&root, pending.request);
        let mut ctx = CommitContext {
            update_id: &update_id,
            offset: 0,
            effective_at: pending.request.micros(),
            workflow_id: &payload.workflow_id,
            command_id: &payload.command_id,
        };
        // The offset is taken only if there is an update to append (gapless offsets).
        let mut commit = views::commit(&payload.view, &hosted, &ctx);
        let mut offset = 0;
        if commit.update.is_some() {
            offset = self.effects.offsets.next_ledger();
            ctx.offset = offset;
            commit = views::commit(&payload.view, &hosted, &ctx);
        }
        let at = pending.request.micros();
        self.reassign_keys(&payload.view, &commit.archived, &commit.created);
        for id in commit.archived {
            match self.contracts.get_mut(&id) {
                Some(slot) if slot.state.is_some() => {
                    slot.state = None;
                    slot.archived_at = at;
                    if slot.created.is_none() {
                        self.writes.archived.push((id, at));
                    }
                }
                Some(_) => {}
                // Not read by the batch (no view of the batch uses it): archived in the
                // database if it is stored there.
                None => {
                    self.contracts.insert(
                        id.clone(),
                        Slot {
                            state: None,
                            created: None,
                            lock_changed: false,
                            archived_at: at,
                        },
                    );
                    self.writes.archived.push((id, at));
                }
            }
        }
        self.release(pending.request);
        for c in commit.created {
            if self.contracts.contains_key(&c.contract_id) {
                // Known already: the freshness check rejected this; never twice.
                continue;
            }
            let stored = serde_json::from_value(c.instance.clone()).ok();
            self.contracts.insert(
                c.contract_id.clone(),
                Slot {
                    state: Some(ContractState {
                        locked_by: None,
                        stored,
                    }),
                    created: Some(self.created.len()),
                    lock_changed: false,
                    archived_at: 0,
                },
            );
            self.created.push(c);
        }
        if let Some(update) = &commit.update {
            self.writes
                .updates
                .push((offset, update.update_id.clone(), store::to_json(update)));
        }
        let outcome = Outcome::committed(update_id, offset);
        self.complete_request(pending, &outcome);
        Ok(())
    }

    /// The batch's writes and effects, with the final state of the contracts and pending
    /// requests it touched.
    pub fn finish(mut self) -> (Writes, Effects) {
        self.send_responses();
        let mut created: Vec<Option<(StoredContract, Option<i64>)>> =
            self.created.into_iter().map(|c| Some((c, None))).collect();
        for (id, slot) in self.contracts {
            match (slot.created, &slot.state) {
                (Some(i), Some(state)) => {
                    if let Some(Some((_, lock))) = created.get_mut(i) {
                        *lock = state.locked_by.map(Timestamp::micros);
                    }
                }
                (Some(i), None) => {
                    if let Some(entry) = created.get_mut(i) {
                        *entry = None;
                    }
                    self.writes.created_archived.push((id, slot.archived_at));
                }
                (None, Some(state)) if slot.lock_changed => {
                    if let Some(request) = state.locked_by {
                        self.writes.locked.push((id, request.micros()));
                    }
                }
                (None, _) => {}
            }
        }
        self.writes.created = created.into_iter().flatten().collect();
        for (hash, slot) in self.keys {
            if let (true, Some(request)) = (slot.lock_changed, slot.state.locked_by) {
                self.writes.key_locked.push((hash, request.micros()));
            }
        }
        let mut inserted: Vec<(PendingRow, Timestamp)> = self
            .pending
            .into_values()
            .filter(|(_, _, stored)| !stored)
            .map(|(row, deadline, _)| (row, deadline))
            .collect();
        inserted.sort_by_key(|(row, _)| row.request);
        self.writes.pending_inserted = inserted;
        (self.writes, self.effects)
    }
}

/// The outcome of a command whose request this participant did not apply although the
/// mediator approved it.
fn local_rejection(reason: &str) -> Outcome {
    Outcome::rejected(
        errors::FAILED_PRECONDITION,
        format!("the transaction was not applied on this participant: {reason}"),
    )
}

fn timeout_outcome() -> Outcome {
    Outcome::rejected(
        errors::CONFIRMATION_TIMEOUT,
        "the transaction timed out: not every confirming party answered in time",
    )
}

fn hosted_parties(topology: &TopologyState, me: &MemberId) -> BTreeSet<PartyId> {
    topology.parties_of(me).cloned().collect()
}

#[cfg(test)]
mod tests;
