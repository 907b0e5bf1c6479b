use ordo_core::{Hash, KeyPair};
use ordo_protocol::{
    DomainParameters, TopologyChange, TopologyTransaction, ViewCommitment, merkle, topology,
};

use super::*;

const TIMEOUT: i64 = 2_000_000;
const REQ: Timestamp = Timestamp(1_000_000);

struct World {
    topology: TopologyState,
    p1: MemberId,
    p2: MemberId,
    p3: MemberId,
    mediator: MemberId,
}

fn party(name: &str) -> PartyId {
    PartyId::new(name).unwrap()
}

fn member(name: &str) -> (MemberId, String) {
    let key = KeyPair::generate();
    (
        MemberId::new(name, &key.public()).unwrap(),
        topology::encode_key(&key.public()),
    )
}

/// p1 (shard-1) hosts alice, p2 (shard-2) hosts bob, p3 (shard-3) hosts carol.
fn world() -> World {
    let mut t = TopologyState::default();
    let apply = |t: &mut TopologyState, change| {
        let tx = TopologyTransaction {
            serial: t.serial + 1,
            change,
        };
        t.apply(&tx, Timestamp(t.serial as i64 + 1)).unwrap();
    };
    let mut ids = Vec::new();
    for (name, shard) in [("p1", "shard-1"), ("p2", "shard-2"), ("p3", "shard-3")] {
        let (id, key) = member(name);
        apply(
            &mut t,
            TopologyChange::AddMember {
                member: id.clone(),
                public_key: key,
                role: MemberRole::Participant {
                    shard: shard.into(),
                },
            },
        );
        ids.push(id);
    }
    let (mediator, key) = member("mediator");
    apply(
        &mut t,
        TopologyChange::AddMember {
            member: mediator.clone(),
            public_key: key,
            role: MemberRole::Mediator,
        },
    );
    for (p, shard) in [
        ("alice", "shard-1"),
        ("bob", "shard-2"),
        ("carol", "shard-3"),
    ] {
        apply(
            &mut t,
            TopologyChange::AllocateParty {
                party: party(p),
                shard: shard.into(),
            },
        );
    }
    apply(
        &mut t,
        TopologyChange::SetParameters {
            parameters: DomainParameters {
                participant_response_timeout_us: TIMEOUT,
                ..Default::default()
            },
        },
    );
    World {
        topology: t,
        p1: ids[0].clone(),
        p2: ids[1].clone(),
        p3: ids[2].clone(),
        mediator,
    }
}

fn parties(names: &[&str]) -> BTreeSet<PartyId> {
    names.iter().map(|p| party(p)).collect()
}

/// The commitment of a view for `participant` (its hash stands for some view).
fn view(participant: &MemberId, informees: &[&str], confirming: &[&str]) -> ViewCommitment {
    ViewCommitment::new(
        participant.clone(),
        &Hash::of(participant.as_str().as_bytes()),
        parties(informees),
        parties(confirming),
    )
}

/// The tree of `views` submitted by `submitter`, with its root.
fn tree_of(submitter: &MemberId, views: Vec<ViewCommitment>) -> InformeeTree {
    let (_, root) = merkle::build(submitter, &views).unwrap();
    InformeeTree {
        root_hash: root.to_hex(),
        submitter: submitter.clone(),
        views,
    }
}

/// Recomputes the root after a change to the views.
fn reroot(t: &mut InformeeTree) {
    *t = tree_of(&t.submitter, std::mem::take(&mut t.views));
}

/// alice (on p1) and bob (on p2) confirm; carol (on p3) is an informee only.
fn tree(w: &World) -> InformeeTree {
    tree_of(
        &w.p1,
        vec![
            view(&w.p1, &["alice"], &["alice"]),
            view(&w.p2, &["bob"], &["bob"]),
            view(&w.p3, &["carol"], &[]),
        ],
    )
}

fn approve(w: &World, parties: &[&str]) -> ConfirmationResponse {
    ConfirmationResponse {
        request: REQ,
        root_hash: tree(w).root_hash,
        parties: parties.iter().map(|p| party(p)).collect(),
        outcome: ResponseOutcome::Approve,
    }
}

fn reject(w: &World, parties: &[&str], reason: &str) -> ConfirmationResponse {
    ConfirmationResponse {
        outcome: ResponseOutcome::Reject {
            reason: reason.into(),
            code: Some("CONTRACT_NOT_ACTIVE".into()),
        },
        ..approve(w, parties)
    }
}

fn opened(w: &World) -> Aggregator {
    let mut agg = Aggregator::default();
    let o = agg.on_request(REQ, &tree(w), &w.p1, &w.topology).unwrap();
    assert!(matches!(o, Opened::Pending(_)));
    agg
}

fn at(us: i64) -> Timestamp {
    REQ.plus_micros(us)
}

fn decided(a: Answered) -> Decision {
    match a {
        Answered::Decided(d) => d,
        other => panic!("expected a decision, got {other:?}"),
    }
}

#[test]
fn a_request_records_hosts_recipients_and_decision_time() {
    let w = world();
    let agg = opened(&w);
    let r = agg.get(REQ).unwrap();
    assert_eq!(r.decision_time, Timestamp(REQ.0 + TIMEOUT));
    assert_eq!(r.confirming_parties[&party("alice")].host, w.p1);
    assert_eq!(r.confirming_parties[&party("bob")].host, w.p2);
    assert!(r.confirming_parties.values().all(|a| !a.answered));
    assert_eq!(
        r.recipients(),
        [w.p1.clone(), w.p2.clone(), w.p3.clone()].into()
    );
    assert_eq!(agg.next_decision_time(), Some(r.decision_time));
}

#[test]
fn all_confirming_parties_approving_gives_approve() {
    let w = world();
    let mut agg = opened(&w);
    let first = agg
        .on_response(&approve(&w, &["alice"]), &w.p1, at(10))
        .unwrap();
    assert_eq!(
        first,
        Answered::Recorded {
            request: REQ,
            parties: vec![party("alice")]
        }
    );
    let d = decided(
        agg.on_response(&approve(&w, &["bob"]), &w.p2, at(20))
            .unwrap(),
    );
    assert_eq!(d.outcome, VerdictOutcome::Approve);
    assert_eq!(d.request, REQ);
    assert_eq!(d.decided_at, at(20));
    assert_eq!(
        d.recipients,
        [w.p1.clone(), w.p2.clone(), w.p3.clone()].into()
    );
    assert_eq!(
        d.verdict(),
        Verdict {
            request: REQ,
            root_hash: tree(&w).root_hash,
            outcome: VerdictOutcome::Approve
        }
    );
    assert!(agg.is_empty());
}

#[test]
fn one_response_may_answer_for_several_parties_of_its_host() {
    let w = world();
    // Move bob next to alice: a topology where p1 hosts both.
    let mut t = w.topology.clone();
    t.parties.insert(party("bob"), "shard-1".into());
    let both = tree_of(
        &w.p1,
        vec![view(&w.p1, &["alice", "bob"], &["alice", "bob"])],
    );
    let mut agg = Aggregator::default();
    agg.on_request(REQ, &both, &w.p1, &t).unwrap();
    let response = ConfirmationResponse {
        root_hash: both.root_hash.clone(),
        ..approve(&w, &["alice", "bob"])
    };
    let d = decided(agg.on_response(&response, &w.p1, at(5)).unwrap());
    assert_eq!(d.outcome, VerdictOutcome::Approve);
}

#[test]
fn any_reject_gives_reject_with_its_reason() {
    let w = world();
    let mut agg = opened(&w);
    agg.on_response(&approve(&w, &["alice"]), &w.p1, at(10))
        .unwrap();
    let d = decided(
        agg.on_response(
            &reject(&w, &["bob"], "contract 12ab is not active"),
            &w.p2,
            at(20),
        )
        .unwrap(),
    );
    assert_eq!(
        d.outcome,
        VerdictOutcome::Reject {
            reasons: vec!["contract 12ab is not active".into()],
            code: Some("CONTRACT_NOT_ACTIVE".into()),
        }
    );
    assert!(agg.is_empty());
}

#[test]
fn a_reject_decides_before_the_others_answer() {
    let w = world();
    let mut agg = opened(&w);
    let d = decided(
        agg.on_response(&reject(&w, &["alice"], "no"), &w.p1, at(1))
            .unwrap(),
    );
    assert_eq!(d.outcome_label(), "reject");
    // The decision is final: bob's later approval finds nothing pending.
    assert_eq!(
        agg.on_response(&approve(&w, &["bob"]), &w.p2, at(2)),
        Err(Ignored::UnknownRequest(REQ))
    );
    assert!(agg.on_time(at(TIMEOUT)).is_empty());
}

#[test]
fn decision_time_reached_gives_timeout_for_every_due_request() {
    let w = world();
    let mut agg = opened(&w);
    let later = REQ.plus_micros(500);
    agg.on_request(later, &tree(&w), &w.p1, &w.topology)
        .unwrap();
    agg.on_response(&approve(&w, &["alice"]), &w.p1, at(10))
        .unwrap();
    assert!(agg.on_time(at(TIMEOUT - 1)).is_empty());
    let due = agg.on_time(at(TIMEOUT));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].request, REQ);
    assert_eq!(due[0].outcome, VerdictOutcome::Timeout);
    assert_eq!(due[0].decided_at, at(TIMEOUT));
    assert_eq!(agg.len(), 1);
    let due = agg.on_time(at(TIMEOUT + 10_000));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].request, later);
    assert!(agg.is_empty());
    assert_eq!(agg.next_decision_time(), None);
}

#[test]
fn a_late_response_is_ignored_and_never_changes_the_timeout() {
    let w = world();
    let mut agg = opened(&w);
    agg.on_response(&approve(&w, &["alice"]), &w.p1, at(10))
        .unwrap();
    // At exactly the decision time a response still counts.
    let d = decided(
        agg.on_response(&approve(&w, &["bob"]), &w.p2, at(TIMEOUT))
            .unwrap(),
    );
    assert_eq!(d.outcome, VerdictOutcome::Approve);

    let mut agg = opened(&w);
    agg.on_response(&approve(&w, &["alice"]), &w.p1, at(10))
        .unwrap();
    assert_eq!(
        agg.on_response(&approve(&w, &["bob"]), &w.p2, at(TIMEOUT + 1)),
        Err(Ignored::Late {
            request: REQ,
            at: at(TIMEOUT + 1),
            decision_time: at(TIMEOUT)
        })
    );
    let due = agg.on_time(at(TIMEOUT + 1));
    assert_eq!(due[0].outcome, VerdictOutcome::Timeout);
    assert_eq!(
        agg.on_response(&approve(&w, &["bob"]), &w.p2, at(TIMEOUT + 2)),
        Err(Ignored::UnknownRequest(REQ))
    );
}

#[test]
fn a_participant_may_answer_only_for_parties_it_hosts() {
    let w = world();
    let mut agg = opened(&w);
    // p2 claims alice (hosted by p1).
    let err = agg
        .on_response(&approve(&w, &["alice"]), &w.p2, at(1))
        .unwrap_err();
    assert_eq!(
        err,
        Ignored::NotHost {
            request: REQ,
            signer: w.p2.clone(),
            party: party("alice"),
            host: w.p1.clone()
        }
    );
    // A rejection from the wrong host is ignored just the same.
    assert!(matches!(
        agg.on_response(&reject(&w, &["alice"], "x"), &w.p3, at(2)),
        Err(Ignored::NotHost { .. })
    ));
    // Mixing a hosted and a foreign party: the whole response is ignored.
    assert!(matches!(
        agg.on_response(&approve(&w, &["bob", "alice"]), &w.p2, at(3)),
        Err(Ignored::NotHost { .. })
    ));
    // carol is an informee, not a confirming party.
    assert!(matches!(
        agg.on_response(&approve(&w, &["carol"]), &w.p3, at(4)),
        Err(Ignored::NotConfirming { .. })
    ));
    assert!(matches!(
        agg.on_response(&approve(&w, &[]), &w.p1, at(5)),
        Err(Ignored::NoParties { .. })
    ));
    assert!(
        agg.get(REQ)
            .unwrap()
            .confirming_parties
            .values()
            .all(|a| !a.answered)
    );
}

#[test]
fn unknown_requests_and_wrong_root_hashes_are_ignored() {
    let w = world();
    let mut agg = opened(&w);
    let mut r = approve(&w, &["alice"]);
    r.request = REQ.plus_micros(1);
    assert_eq!(
        agg.on_response(&r, &w.p1, at(1)),
        Err(Ignored::UnknownRequest(REQ.plus_micros(1)))
    );
    let mut r = approve(&w, &["alice"]);
    r.root_hash = Hash::of(b"other").to_hex();
    assert!(matches!(
        agg.on_response(&r, &w.p1, at(1)),
        Err(Ignored::RootHashMismatch { .. })
    ));
    assert!(!agg.get(REQ).unwrap().confirming_parties[&party("alice")].answered);
}

#[test]
fn duplicate_responses_are_ignored() {
    let w = world();
    let mut agg = opened(&w);
    agg.on_response(&approve(&w, &["alice"]), &w.p1, at(1))
        .unwrap();
    let err = agg
        .on_response(&approve(&w, &["alice"]), &w.p1, at(2))
        .unwrap_err();
    assert_eq!(err.label(), "duplicate");
    // A rejection after an approval for the same party does not overturn it.
    assert!(matches!(
        agg.on_response(&reject(&w, &["alice"], "changed my mind"), &w.p1, at(3)),
        Err(Ignored::Duplicate { .. })
    ));
    assert_eq!(agg.len(), 1);
}

/// The reasons of a tree rejected at once.
fn rejected_at_once(w: &World, id: Timestamp, t: &InformeeTree) -> Vec<String> {
    let mut agg = Aggregator::default();
    let Opened::Decided(d) = agg.on_request(id, t, &w.p1, &w.topology).unwrap() else {
        panic!("expected an immediate decision for {t:?}");
    };
    assert_eq!(d.decided_at, id);
    assert!(agg.is_empty());
    match d.outcome {
        VerdictOutcome::Reject { reasons, .. } => reasons,
        other => panic!("expected Reject, got {other:?}"),
    }
}

#[test]
fn a_confirming_party_without_host_is_rejected_at_once() {
    let w = world();
    let mut t = tree(&w);
    t.views[0].informees.insert(party("dave"));
    t.views[0].confirming_parties.insert(party("dave"));
    reroot(&mut t);
    let reasons = rejected_at_once(&w, REQ, &t);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("dave"), "{reasons:?}");

    // The verdict still reaches every participant of the request.
    let mut agg = Aggregator::default();
    let Opened::Decided(d) = agg.on_request(REQ, &t, &w.p1, &w.topology).unwrap() else {
        panic!("expected an immediate decision");
    };
    assert_eq!(
        d.recipients,
        [w.p1.clone(), w.p2.clone(), w.p3.clone()].into()
    );

    let mut t = tree(&w);
    for v in &mut t.views {
        v.confirming_parties.clear();
    }
    reroot(&mut t);
    let reasons = rejected_at_once(&w, REQ, &t);
    assert!(reasons[0].contains("no confirming party"), "{reasons:?}");
}

#[test]
fn a_tree_that_does_not_hash_to_its_root_is_rejected_at_once() {
    let w = world();
    // bob left out of the confirming parties, the root kept: the narrowed tree.
    let mut t = tree(&w);
    t.views[1].confirming_parties.clear();
    let reasons = rejected_at_once(&w, REQ, &t);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("malformed informee tree")),
        "{reasons:?}"
    );
    let mut dup = tree(&w);
    dup.views[2] = dup.views[0].clone();
    reroot(&mut dup);
    let reasons = rejected_at_once(&w, REQ, &dup);
    assert!(reasons[0].contains("more than one view"), "{reasons:?}");
}

#[test]
fn every_confirming_party_needs_a_view_at_its_host_and_every_view_a_hosted_informee() {
    let w = world();
    // bob confirms in p1's view, but p2 gets no view: nobody could answer for bob.
    let t = tree_of(
        &w.p1,
        vec![view(&w.p1, &["alice", "bob"], &["alice", "bob"])],
    );
    let reasons = rejected_at_once(&w, REQ, &t);
    assert!(
        reasons[0].contains("bob") && reasons[0].contains("no view"),
        "{reasons:?}"
    );
    // A view for p3 that shows p3 none of its parties, and one for the mediator.
    let mut t = tree(&w);
    t.views[2].informees = parties(&["alice"]);
    t.views.push(view(&w.mediator, &["alice"], &[]));
    reroot(&mut t);
    let reasons = rejected_at_once(&w, REQ, &t);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("hosts none of its informees")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a participant")),
        "{reasons:?}"
    );
}

#[test]
fn a_request_is_opened_at_most_once_even_when_decided_at_once() {
    let w = world();
    let mut agg = Aggregator::default();
    let mut bad = tree(&w);
    bad.views[1].confirming_parties.clear();
    assert!(matches!(
        agg.on_request(REQ, &bad, &w.p1, &w.topology).unwrap(),
        Opened::Decided(_)
    ));
    // A second tree in the same event (same request id), malformed or not: ignored, so
    // there is never a second verdict for the request.
    assert_eq!(
        agg.on_request(REQ, &bad, &w.p1, &w.topology),
        Err(Ignored::DuplicateRequest(REQ))
    );
    assert_eq!(
        agg.on_request(REQ, &tree(&w), &w.p1, &w.topology),
        Err(Ignored::DuplicateRequest(REQ))
    );
    assert!(agg.is_empty());
    // After a restart, nothing at or before the cursor opens again.
    let mut resumed = Aggregator::new([], at(10));
    assert_eq!(
        resumed.on_request(at(10), &tree(&w), &w.p1, &w.topology),
        Err(Ignored::DuplicateRequest(at(10)))
    );
    assert!(
        resumed
            .on_request(at(11), &tree(&w), &w.p1, &w.topology)
            .is_ok()
    );
}

#[test]
fn only_what_no_honest_member_sends_is_an_alarm() {
    assert!(!Ignored::UnknownRequest(REQ).is_alarm());
    assert!(
        !Ignored::Late {
            request: REQ,
            at: REQ,
            decision_time: REQ
        }
        .is_alarm()
    );
    assert!(Ignored::DuplicateRequest(REQ).is_alarm());
    let w = world();
    assert!(
        Ignored::Duplicate {
            request: REQ,
            signer: w.p1.clone(),
            party: party("alice")
        }
        .is_alarm()
    );
}

#[test]
fn informee_trees_must_come_from_their_submitting_participant() {
    let w = world();
    let mut agg = Aggregator::default();
    assert!(matches!(
        agg.on_request(REQ, &tree(&w), &w.p2, &w.topology),
        Err(Ignored::NotSubmitter { .. })
    ));
    let mut t = tree(&w);
    t.submitter = w.mediator.clone();
    assert_eq!(
        agg.on_request(REQ, &t, &w.mediator, &w.topology),
        Err(Ignored::NotAParticipant(w.mediator.clone()))
    );
    let (stranger, _) = member("stranger");
    t.submitter = stranger.clone();
    assert_eq!(
        agg.on_request(REQ, &t, &stranger, &w.topology),
        Err(Ignored::NotAParticipant(stranger))
    );
    agg.on_request(REQ, &tree(&w), &w.p1, &w.topology).unwrap();
    assert_eq!(
        agg.on_request(REQ, &tree(&w), &w.p1, &w.topology),
        Err(Ignored::DuplicateRequest(REQ))
    );
}

#[test]
fn resumes_from_persisted_pending_requests() {
    let w = world();
    let mut agg = opened(&w);
    agg.on_response(&approve(&w, &["alice"]), &w.p1, at(1))
        .unwrap();
    let saved: Vec<PendingRequest> = agg.pending().cloned().collect();
    let mut resumed = Aggregator::new(saved, at(1));
    assert!(matches!(
        resumed.on_response(&approve(&w, &["alice"]), &w.p1, at(2)),
        Err(Ignored::Duplicate { .. })
    ));
    let d = decided(
        resumed
            .on_response(&approve(&w, &["bob"]), &w.p2, at(3))
            .unwrap(),
    );
    assert_eq!(d.outcome, VerdictOutcome::Approve);
}
