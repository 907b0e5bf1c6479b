//! The batch core against hand-made state: a later event sees what an earlier one did, and
//! what is written is the batch's final state.

use ordo_core::{KeyPair, MemberId, Timestamp};
use ordo_protocol::{TopologyState, Verdict, VerdictOutcome};

use super::*;
use crate::store::{CommandKey, CommandRow, CommandState, Offsets};
use crate::testkit::{create_iou, packages, topology, transfer_iou};
use crate::views::{self, RequestPlan};

struct World {
    topology: TopologyState,
    p1: MemberId,
    key: KeyPair,
}

fn world() -> World {
    let (topology, p1, _) = topology();
    World {
        topology,
        p1,
        key: KeyPair::generate(),
    }
}

impl World {
    fn batch(&self, loaded: Loaded, last: i64) -> Batch<'_> {
        let who = Decider {
            me: &self.p1,
            key: &self.key,
            mediator_reaction_timeout: std::time::Duration::from_secs(1),
        };
        let offsets = Offsets {
            ledger_end: 7,
            completion_end: 3,
        };
        Batch::new(who, loaded, offsets, Timestamp(last))
    }

    /// p1's view of `plan`, checked, as submitted by p1.
    fn view(&self, plan: &RequestPlan) -> CheckedView {
        let payload = plan.views[&self.p1].clone();
        let json = views::view_json(&payload);
        CheckedView {
            submitter: self.p1.clone(),
            root_hash: plan.root_hash.clone(),
            payload: Some((payload, json)),
            declared_confirming: plan.informee_tree.confirming_parties(),
            outcome: Ok(()),
        }
    }
}

fn approve(request: i64, plan: &RequestPlan) -> Verdict {
    Verdict {
        request: Timestamp(request),
        root_hash: plan.root_hash.clone(),
        outcome: VerdictOutcome::Approve,
    }
}

fn in_flight(message_id: &str, mst: i64, request: Option<i64>) -> CommandRow {
    CommandRow {
        key: CommandKey {
            application_id: "app".into(),
            command_id: format!("cmd-{message_id}"),
            act_as: vec!["alice".into()],
        },
        submission_id: String::new(),
        dedup: Default::default(),
        state: CommandState::InFlight,
        message_id: message_id.into(),
        max_sequencing_time: Timestamp(mst),
        request_ts: request,
        completed_at: None,
        completion_offset: None,
    }
}

/// Within one batch: an Iou is created and approved, then transferred, then spent again.
/// The transfer sees the Iou the batch created; the second spend sees the transfer's lock.
#[test]
fn a_later_event_sees_what_an_earlier_one_did() {
    let w = world();
    let store = packages();
    let create = create_iou(&store, "alice");
    let (cid, instance) = create.created().into_iter().next().unwrap();
    let create = views::plan_request(&create, &w.topology, &w.p1, "", "c1").unwrap();
    let transfer = transfer_iou(&store, cid, instance.clone(), "bob", b"t1");
    let transfer = views::plan_request(&transfer, &w.topology, &w.p1, "", "c2").unwrap();
    let again = transfer_iou(&store, cid, instance, "alice", b"t2");
    let again = views::plan_request(&again, &w.topology, &w.p1, "", "c3").unwrap();

    let loaded = Loaded {
        commands: vec![in_flight("m-create", 1_000, None)],
        ..Loaded::default()
    };
    let mut batch = w.batch(loaded, 40);
    batch.begin_event(Timestamp(10), &w.p1, "m-create");
    batch.on_view(&w.topology, Timestamp(10), w.view(&create));
    batch.begin_event(Timestamp(20), &w.p1, "verdict");
    batch
        .on_verdict(&w.topology, &approve(10, &create))
        .unwrap();
    batch.begin_event(Timestamp(30), &w.p1, "m-transfer");
    batch.on_view(&w.topology, Timestamp(30), w.view(&transfer));
    batch.begin_event(Timestamp(40), &w.p1, "m-again");
    batch.on_view(&w.topology, Timestamp(40), w.view(&again));
    let (writes, effects) = batch.finish();

    // The created Iou is written once, locked by the transfer still pending.
    assert_eq!(writes.created.len(), 1);
    assert_eq!(writes.created[0].0.contract_id, cid.to_string());
    assert_eq!(writes.created[0].1, Some(30));
    assert!(writes.locked.is_empty() && writes.archived.is_empty());
    // The create's request was decided within the batch: never written as pending.
    let pending: Vec<(i64, Option<&str>)> = writes
        .pending_inserted
        .iter()
        .map(|(r, _)| (r.request.micros(), r.rejection.as_deref()))
        .collect();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0], (30, None));
    let second = pending[1].1.unwrap_or_default();
    assert_eq!(pending[1].0, 40);
    assert!(second.contains("is locked by request 30"), "{second}");
    assert!(writes.pending_removed.is_empty());
    // Its command learnt its request and succeeded at the next offsets.
    assert_eq!(writes.command_requests, vec![("m-create".to_owned(), 10)]);
    assert_eq!(writes.updates.len(), 1);
    assert_eq!(writes.updates[0].0, 8);
    assert_eq!(writes.completions.len(), 1);
    let (message_id, at, completion) = &writes.completions[0];
    assert_eq!((message_id.as_str(), *at), ("m-create", 10));
    assert_eq!(completion.completion_offset, 4);
    assert_eq!(completion.outcome.code, CODE_OK);
    assert_eq!(completion.outcome.ledger_offset, 8);
    assert_eq!(effects.offsets.ledger_end, 8);
    assert_eq!(effects.completion_end(), Some(4));
    // bank (hosted on p1) answers all three requests, in one submission.
    assert_eq!(writes.outbox.len(), 1);
    let responses = &writes.outbox[0].submission;
    assert_eq!(responses.message_id, "resp-10-40");
    assert_eq!(responses.envelopes.len(), 3);
    assert_eq!(effects.resolved, vec![Timestamp(10)]);
}

/// State from earlier batches: a stored lock is released by its request's rejection and
/// the contract locked again; a pending request past its deadline times out; an
/// unsequenced command past its max sequencing time is aborted.
#[test]
fn stored_state_is_released_relocked_and_timed_out() {
    let w = world();
    let store = packages();
    let create = create_iou(&store, "alice");
    let (cid, instance) = create.created().into_iter().next().unwrap();
    let transfer = transfer_iou(&store, cid, instance.clone(), "bob", b"t1");
    let transfer = views::plan_request(&transfer, &w.topology, &w.p1, "", "c2").unwrap();
    let stale = PendingRow {
        request: Timestamp(5),
        root_hash: transfer.root_hash.clone(),
        submitter: w.p1.to_string(),
        view: Vec::new(),
        rejection: None,
    };
    let locker = PendingRow {
        request: Timestamp(6),
        ..stale.clone()
    };
    let mut contracts = HashMap::new();
    contracts.insert(
        cid.to_string(),
        ContractState {
            locked_by: Some(Timestamp(6)),
            stored: Some(instance),
        },
    );
    let loaded = Loaded {
        contracts,
        known: HashSet::new(),
        keys: Default::default(),
        pending: vec![(stale, Timestamp(15)), (locker, Timestamp(1_000))],
        commands: vec![
            in_flight("m-stale", 0, Some(5)),
            in_flight("m-locker", 0, Some(6)),
            in_flight("m-lost", 12, None),
        ],
    };
    let mut batch = w.batch(loaded, 30);
    // The locker is rejected, so the transfer may lock the Iou.
    batch.begin_event(Timestamp(10), &w.p1, "v");
    let reject = Verdict {
        request: Timestamp(6),
        root_hash: transfer.root_hash.clone(),
        // From an older participant: no code.
        outcome: VerdictOutcome::Reject {
            reasons: vec!["no".into()],
            code: None,
        },
    };
    batch.on_verdict(&w.topology, &reject).unwrap();
    batch.begin_event(Timestamp(20), &w.p1, "m-transfer");
    batch.on_view(&w.topology, Timestamp(20), w.view(&transfer));
    let (writes, effects) = batch.finish();

    assert_eq!(writes.released, vec![6, 5]);
    assert_eq!(writes.locked, vec![(cid.to_string(), 20)]);
    assert_eq!(writes.pending_removed, vec![6, 5]);
    assert_eq!(writes.pending_inserted.len(), 1);
    assert_eq!(writes.pending_inserted[0].0.rejection, None);
    let outcomes: Vec<(&str, &str, i32)> = writes
        .completions
        .iter()
        .map(|(m, _, c)| (m.as_str(), c.outcome.error_code.as_str(), c.outcome.code))
        .collect();
    use tonic::Code;
    assert_eq!(
        outcomes,
        vec![
            (
                "m-locker",
                "FAILED_PRECONDITION",
                Code::FailedPrecondition as i32
            ),
            ("m-stale", "CONFIRMATION_TIMEOUT", Code::Aborted as i32),
            ("m-lost", "NOT_SEQUENCED_TIMEOUT", Code::Aborted as i32),
        ]
    );
    assert_eq!(effects.completion_end(), Some(6));
    assert!(writes.updates.is_empty() && writes.created.is_empty());
}

/// A contract created and archived within the batch is only remembered as archived, and
/// a request creating an id the shard knows is rejected with an alarm.
#[test]
fn created_then_archived_is_remembered_and_known_ids_are_not_created_again() {
    let w = world();
    let store = packages();
    let create = create_iou(&store, "alice");
    let (cid, instance) = create.created().into_iter().next().unwrap();
    let create = views::plan_request(&create, &w.topology, &w.p1, "", "c1").unwrap();
    let transfer = transfer_iou(&store, cid, instance, "bob", b"t1");
    let transfer = views::plan_request(&transfer, &w.topology, &w.p1, "", "c2").unwrap();

    let mut batch = w.batch(Loaded::default(), 40);
    batch.begin_event(Timestamp(10), &w.p1, "a");
    batch.on_view(&w.topology, Timestamp(10), w.view(&create));
    batch
        .on_verdict(&w.topology, &approve(10, &create))
        .unwrap();
    batch.begin_event(Timestamp(20), &w.p1, "b");
    batch.on_view(&w.topology, Timestamp(20), w.view(&transfer));
    batch
        .on_verdict(&w.topology, &approve(20, &transfer))
        .unwrap();
    // The same create again (a replay): its contract id is known now.
    batch.begin_event(Timestamp(30), &w.p1, "c");
    batch.on_view(&w.topology, Timestamp(30), w.view(&create));
    batch.end_event(Timestamp(30), &w.p1);
    let (writes, effects) = batch.finish();

    assert_eq!(writes.created_archived, vec![(cid.to_string(), 20)]);
    // The transfer's new Iou (bank, bob) stays; the first one is gone.
    assert_eq!(writes.created.len(), 1);
    assert_ne!(writes.created[0].0.contract_id, cid.to_string());
    assert_eq!(writes.updates.len(), 2);
    let replay = &writes.pending_inserted[0].0;
    assert_eq!(replay.request, Timestamp(30));
    assert!(
        replay
            .rejection
            .as_deref()
            .is_some_and(|r| r.contains("already exists")),
        "{replay:?}"
    );
    assert!(
        effects
            .raised
            .iter()
            .any(|(ts, _, r)| *ts == Timestamp(30) && r.alarm == Alarm::ContractIdReuse)
    );
}
