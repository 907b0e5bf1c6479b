//! Sequencer event processing (DESIGN §4 steps 4 and 6), in order and exactly once: every
//! effect of an event (topology, locks, pending requests, the ACS, the update log,
//! completions, outbox rows) commits in one transaction together with the cursor, so a
//! crash neither loses nor repeats anything; the subscription resumes after the cursor.
//!
//! Events come in batches. Decoding, signature checks and the checks of a view
//! (`validation`) run on blocking threads before the transaction; then the batch reads the
//! rows it can touch (`store::batch::read`), decides in memory (`apply`, over the rules of
//! `conflict` and `views`) and writes the outcome set-based (`store::batch::write`) with
//! the cursor. No event can stop the shard: a fault of a message is a rejection or an ignored
//! message plus an alarm; only transient failures (database, network) are retried, and a
//! write that Postgres refuses for its data (the same on every retry) skips the event with
//! an alarm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_core::{SequencedEvent, Timestamp};
use ordo_ledger::PackageStore;
use ordo_protocol::TopologyState;
use tokio_util::sync::CancellationToken;

use crate::alarm::{self, Alarm, Raised};
pub use crate::apply::CODE_OK;
use crate::apply::{Batch, Decider};
use crate::error::ParticipantError;
use crate::node::{Shared, Snapshot};
use crate::store::{self, Outcome};
use crate::validation::{self, Prepared, PreparedEvent};
use crate::views;

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
/// and written in one transaction with the cursor. Batches are pipelined: while one is
/// written, the next is received and checked. A write the lease fence refuses ends it with
/// that error: this replica's term is over. Other failures are retried.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) -> Result<(), ParticipantError> {
    let mut last_ack = Instant::now();
    'subscribe: loop {
        let cursor = shared.snapshot().cursor;
        // The subscription lives in its own task, so that a batch can take whatever
        // arrived without cancelling a half-received event.
        let mut batches = shared.sequencer.subscribe(cursor).batches(MAX_BATCH);
        // The next batch, received and being checked while the current one is written.
        let mut ahead: Option<Ahead> = None;
        // What ended the subscription while a batch was being written.
        let mut ended: Option<ordo_sequencer_client::ClientError> = None;
        loop {
            let (batch, mut checked) = match ahead.take() {
                Some(Ahead { events, checks }) => (events, Some(checks)),
                None => {
                    let next = match ended.take() {
                        Some(e) => Err(e),
                        None => tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            next = batches.next() => next,
                        },
                    };
                    match next {
                        Ok(batch) => (batch, None),
                        Err(e) => {
                            tracing::warn!(error = %e, "subscription failed; resubscribing from the cursor");
                            shared.replica.error(format!("sequencer subscription: {e}"));
                            tokio::select! {
                                () = stop.cancelled() => return Ok(()),
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                            continue 'subscribe;
                        }
                    }
                }
            };
            let mut backoff = Duration::from_millis(100);
            let mut first = true;
            let handled = loop {
                let attempt = process(&shared, &batch, checked.take());
                let processed = if first {
                    first = false;
                    // The next batch is received and its checks started meanwhile.
                    tokio::pin!(attempt);
                    loop {
                        tokio::select! {
                            done = &mut attempt => break done,
                            next = batches.next(), if ahead.is_none() && ended.is_none() => {
                                match next {
                                    Ok(events) => ahead = Some(Ahead::start(&shared, events)),
                                    Err(e) => ended = Some(e),
                                }
                            }
                        }
                    }
                } else {
                    attempt.await
                };
                let processed = match processed {
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
            if handled < batch.len() {
                // What was received ahead comes after what this batch leaves.
                if let Some(a) = ahead.take() {
                    batches.give_back(a.events.into_iter());
                }
            }
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

/// A batch received while the one before it is written, and its checks.
struct Ahead {
    events: Vec<SequencedEvent>,
    checks: Checks,
}

/// The checks of a batch received ahead, under way against the snapshot of that moment.
struct Checks {
    snapshot: Arc<Snapshot>,
    task: tokio::task::JoinHandle<Result<Vec<PreparedEvent>, ParticipantError>>,
}

impl Ahead {
    fn start(shared: &Arc<Shared>, events: Vec<SequencedEvent>) -> Self {
        let snapshot = shared.snapshot();
        let task = {
            let shared = shared.clone();
            let snapshot = snapshot.clone();
            let events = events.clone();
            tokio::spawn(async move {
                let all: Vec<&SequencedEvent> = events.iter().collect();
                prepare(&shared, &snapshot, &all).await
            })
        };
        Self {
            events,
            checks: Checks { snapshot, task },
        }
    }
}

impl Checks {
    /// The checks of `fresh` (the batch's events after the cursor, a suffix of it), if
    /// they were made against the topology and packages of `now`.
    async fn take(
        self,
        now: &Snapshot,
        fresh: usize,
    ) -> Result<Option<Vec<PreparedEvent>>, ParticipantError> {
        let same = Arc::ptr_eq(&self.snapshot.topology, &now.topology)
            && Arc::ptr_eq(&self.snapshot.packages, &now.packages);
        if !same {
            self.task.abort();
            return Ok(None);
        }
        let mut checked = self
            .task
            .await
            .map_err(|e| ParticipantError::Internal(format!("event checks failed: {e}")))??;
        let skip = checked.len().saturating_sub(fresh);
        Ok(Some(checked.split_off(skip)))
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
    checked: Option<Checks>,
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
    let checked = match checked {
        Some(checks) => checks.take(&snapshot, fresh.len()).await?,
        None => None,
    };
    let prepared = match checked {
        Some(prepared) => prepared,
        None => prepare(shared, &snapshot, &fresh).await?,
    };
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
    let wanted = wanted(shared, &fresh[..cut], &prepared[..cut], last);
    let loaded = store::batch::read(&mut tx, &wanted).await?;
    let who = Decider {
        me: &shared.member,
        key: &shared.key,
        mediator_reaction_timeout: shared.config.mediator_reaction_timeout,
    };
    let mut batch = Batch::new(who, loaded, offsets, last);
    let mut changed: Option<TopologyState> = None;
    for (event, prepared) in fresh.iter().zip(prepared).take(cut) {
        let ts = event.timestamp;
        batch.effects.alarms = prepared.alarms;
        batch.begin_event(ts, &event.sender, &event.message_id);
        for message in prepared.messages {
            let topology = changed.as_ref().unwrap_or(&snapshot.topology);
            match message {
                Prepared::Topology(t) => {
                    let next = changed.get_or_insert_with(|| (*snapshot.topology).clone());
                    if let Err(e) = next.apply(&t, ts) {
                        batch
                            .effects
                            .alarms
                            .push(Raised::new(Alarm::TopologyRefused, e.to_string()));
                    }
                }
                Prepared::View(view) => batch.on_view(topology, ts, *view),
                Prepared::Verdict(v) => batch.on_verdict(topology, &v)?,
            }
        }
        batch.end_event(ts, &event.sender);
    }
    let (writes, effects) = batch.finish();
    // Outbox rows the sequencer answered go with this commit (given back if it fails).
    let sent = shared.take_sent();
    let written = async {
        let position = store::batch::Position {
            cursor: last,
            offsets: &effects.offsets,
        };
        store::batch::write(&mut tx, &writes, &sent, position).await?;
        if let Some(topology) = &changed {
            store::save_topology(&mut tx, topology).await?;
        }
        let writing = Instant::now();
        shared.commit(tx).await?;
        Ok::<_, ParticipantError>(writing)
    }
    .await;
    let writing = match written {
        Ok(writing) => writing,
        Err(e) => {
            shared.sent(sent);
            return Err(e);
        }
    };
    crate::metrics::batch(cut, started.elapsed(), writing.elapsed());
    crate::metrics::active_contracts_changed(writes.created.len(), writes.archived.len());

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
    if let Some(end) = writes.ledger_end() {
        shared.ledger_end.send_replace(end);
        crate::metrics::ledger_end_is(end);
    }
    if let Some(end) = effects.completion_end() {
        shared.completion_end.send_replace(end);
    }
    for (request, deadline, contracts) in effects.creating {
        shared.creating(request, deadline, contracts);
    }
    for request in effects.resolved {
        shared.resolved(request);
    }
    shared.hand_over(writes.outbox);
    shared.deliver(effects.completed, &writes.updates);
    for (ts, sender, raised) in &effects.raised {
        alarm::raise(raised, *ts, sender);
    }
    shared.processed.send_replace(last);
    Ok(events.len() - (fresh.len() - cut))
}

/// What the batch of `events` (checked as `prepared`) can touch, for `store::batch::read`.
fn wanted(
    shared: &Shared,
    events: &[&SequencedEvent],
    prepared: &[PreparedEvent],
    last: Timestamp,
) -> store::batch::Wanted {
    let mut wanted = store::batch::Wanted {
        last,
        ..Default::default()
    };
    for (event, prepared) in events.iter().zip(prepared) {
        if event.sender == shared.member {
            wanted.message_ids.push(event.message_id.clone());
        }
        for message in &prepared.messages {
            match message {
                Prepared::View(view) => {
                    if let Some((payload, _)) = &view.payload {
                        wanted
                            .inputs
                            .extend(payload.view.inputs.keys().map(ToString::to_string));
                        wanted.created.extend(views::created_ids(&payload.view));
                        wanted.keys.extend(views::key_hashes(&payload.view));
                    }
                }
                Prepared::Verdict(v) => wanted.decided.push(v.request.micros()),
                Prepared::Topology(_) => {}
            }
        }
    }
    wanted
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
        shared.deliver(vec![c], &[]);
    }
    Ok(())
}
