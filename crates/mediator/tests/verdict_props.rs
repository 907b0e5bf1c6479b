//! The mediator's verdict core on random sequences of informee trees (well formed,
//! malformed, repeated in one event), responses (from hosts and from others, approving
//! and rejecting, repeated, with wrong roots) and the passing of sequencer time:
//! - each request is decided at most once;
//! - Approve only when every confirming party of the request approved, by its host, with
//!   the request's root, by the decision time;
//! - Timeout only at or after the decision time; nothing decided for a request never
//!   opened.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{Hash, KeyPair, MemberId, PartyId, Timestamp};
use ordo_mediator::verdict::{Aggregator, Answered, Decision, Opened};
use ordo_protocol::{
    ConfirmationResponse, DomainParameters, InformeeTree, MemberRole, ResponseOutcome,
    TopologyChange, TopologyState, TopologyTransaction, VerdictOutcome, ViewCommitment, merkle,
    topology,
};
use proptest::prelude::*;

const TIMEOUT: i64 = 1_000;
const PARTIES: [&str; 4] = ["alice", "bob", "carol", "dave"];

struct World {
    topology: TopologyState,
    /// p0 hosts alice, p1 bob, p2 carol and dave.
    participants: Vec<MemberId>,
}

fn party(i: usize) -> PartyId {
    PartyId::new(PARTIES[i % PARTIES.len()]).unwrap()
}

fn world() -> World {
    let mut t = TopologyState::default();
    let mut apply = |change| {
        let tx = TopologyTransaction {
            serial: t.serial + 1,
            change,
        };
        t.apply(&tx, Timestamp(t.serial as i64 + 1)).unwrap();
    };
    let mut participants = Vec::new();
    for i in 0..3 {
        let key = KeyPair::generate();
        let id = MemberId::new(&format!("p{i}"), &key.public()).unwrap();
        apply(TopologyChange::AddMember {
            member: id.clone(),
            public_key: topology::encode_key(&key.public()),
            role: MemberRole::Participant {
                shard: format!("shard-{i}"),
            },
        });
        participants.push(id);
    }
    for (p, shard) in [(0, 0), (1, 1), (2, 2), (3, 2)] {
        apply(TopologyChange::AllocateParty {
            party: party(p),
            shard: format!("shard-{shard}"),
        });
    }
    apply(TopologyChange::SetParameters {
        parameters: DomainParameters {
            participant_response_timeout_us: TIMEOUT,
            ..Default::default()
        },
    });
    World {
        topology: t,
        participants,
    }
}

/// The host of party `i`.
fn host(w: &World, i: usize) -> &MemberId {
    &w.participants[[0, 1, 2, 2][i % PARTIES.len()]]
}

#[derive(Clone, Debug)]
enum Op {
    /// A request submitted by participant `submitter` whose views, one per participant in
    /// `views`, declare the parties with the bits of `confirming` / `informed`; `broken`
    /// keeps the root of other commitments; `twice` sends the tree twice in the event.
    Open {
        submitter: usize,
        confirming: u8,
        informed: u8,
        broken: bool,
        twice: bool,
    },
    /// A response to the `request`th request opened so far, signed by participant
    /// `signer`, for the parties in `parties` (bits).
    Respond {
        request: usize,
        signer: usize,
        parties: u8,
        approve: bool,
        wrong_root: bool,
    },
    /// Sequencer time passes.
    Wait { micros: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0usize..3, 1u8..16, 0u8..16, prop::bool::weighted(0.15), prop::bool::weighted(0.15))
            .prop_map(|(submitter, confirming, informed, broken, twice)| Op::Open {
                submitter,
                confirming,
                informed,
                broken,
                twice
            }),
        4 => (0usize..8, 0usize..3, 0u8..16, prop::bool::weighted(0.85), prop::bool::weighted(0.1))
            .prop_map(|(request, signer, parties, approve, wrong_root)| Op::Respond {
                request,
                signer,
                parties,
                approve,
                wrong_root
            }),
        1 => (1i64..600).prop_map(|micros| Op::Wait { micros }),
    ]
}

fn bits(b: u8) -> BTreeSet<usize> {
    (0..PARTIES.len()).filter(|i| b & (1 << i) != 0).collect()
}

/// The informee tree of an Open op: one view per participant hosting one of the parties.
fn tree(w: &World, submitter: usize, confirming: u8, informed: u8, broken: bool) -> InformeeTree {
    let confirming = bits(confirming);
    let informees: BTreeSet<usize> = confirming.union(&bits(informed)).copied().collect();
    let mut views: BTreeMap<&MemberId, (BTreeSet<PartyId>, BTreeSet<PartyId>)> = BTreeMap::new();
    for &i in &informees {
        let entry = views.entry(host(w, i)).or_default();
        entry.0.insert(party(i));
        if confirming.contains(&i) {
            entry.1.insert(party(i));
        }
    }
    let submitter = w.participants[submitter].clone();
    let commitments: Vec<ViewCommitment> = views
        .into_iter()
        .map(|(m, (informees, confirming))| {
            ViewCommitment::new(
                m.clone(),
                &Hash::of(m.as_str().as_bytes()),
                informees,
                confirming,
            )
        })
        .collect();
    let (_, root) = merkle::build(&submitter, &commitments).unwrap();
    InformeeTree {
        root_hash: if broken {
            Hash::of(b"some other root").to_hex()
        } else {
            root.to_hex()
        },
        submitter,
        views: commitments,
    }
}

fn record(d: Decision, decisions: &mut BTreeMap<Timestamp, Vec<Decision>>) {
    decisions.entry(d.request).or_default().push(d);
}

/// What the test knows of a request the mediator accepted.
struct Known {
    tree: InformeeTree,
    decision_time: Timestamp,
    /// Parties approved by their host with the right root by the decision time.
    approved: BTreeSet<PartyId>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn at_most_one_verdict_and_approve_only_when_every_confirming_party_approved(
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let w = world();
        let mut agg = Aggregator::new([], Timestamp(0));
        let mut now = Timestamp(1_000_000);
        let mut opened: Vec<Timestamp> = Vec::new();
        let mut known: BTreeMap<Timestamp, Known> = BTreeMap::new();
        let mut decisions: BTreeMap<Timestamp, Vec<Decision>> = BTreeMap::new();
        for op in ops {
            now = now.plus_micros(1);
            match op {
                Op::Open { submitter, confirming, informed, broken, twice } => {
                    let tree = tree(&w, submitter, confirming, informed, broken);
                    let signer = w.participants[submitter].clone();
                    for copy in 0..if twice { 2 } else { 1 } {
                        match agg.on_request(now, &tree, &signer, &w.topology) {
                            Ok(Opened::Pending(r)) => {
                                prop_assert_eq!(copy, 0, "a second tree for one request opened it again");
                                prop_assert!(!broken, "a tree that does not hash to its root was opened");
                                known.insert(now, Known {
                                    tree: tree.clone(),
                                    decision_time: r.decision_time,
                                    approved: BTreeSet::new(),
                                });
                                opened.push(now);
                            }
                            Ok(Opened::Decided(d)) => {
                                prop_assert_eq!(copy, 0);
                                let rejected = matches!(d.outcome, VerdictOutcome::Reject { .. });
                                prop_assert!(rejected, "a malformed tree decided {:?}", d.outcome);
                                opened.push(now);
                                record(d, &mut decisions);
                            }
                            Err(_) => prop_assert!(copy == 1 || opened.contains(&now)),
                        }
                    }
                }
                Op::Respond { request, signer, parties, approve, wrong_root } => {
                    let Some(&id) = opened.get(request % opened.len().max(1)) else { continue };
                    let signer = &w.participants[signer];
                    let root = match known.get(&id) {
                        Some(k) if !wrong_root => k.tree.root_hash.clone(),
                        _ => Hash::of(b"wrong").to_hex(),
                    };
                    let parties: BTreeSet<PartyId> = bits(parties).into_iter().map(party).collect();
                    let response = ConfirmationResponse {
                        request: id,
                        root_hash: root.clone(),
                        parties: parties.clone(),
                        outcome: if approve {
                            ResponseOutcome::Approve
                        } else {
                            ResponseOutcome::Reject { reason: "no".into(), code: None }
                        },
                    };
                    let answered = agg.on_response(&response, signer, now);
                    if let (Ok(_), Some(k)) = (&answered, known.get_mut(&id)) {
                        // Accepted: right root, in time, each party confirming and hosted
                        // by the signer.
                        prop_assert_eq!(&root, &k.tree.root_hash);
                        prop_assert!(now <= k.decision_time);
                        let confirming = k.tree.confirming_parties();
                        for p in &parties {
                            prop_assert!(confirming.contains(p));
                            prop_assert_eq!(w.topology.host_of(p), Some(signer));
                        }
                        if approve {
                            k.approved.extend(parties);
                        }
                    }
                    match answered {
                        Ok(Answered::Decided(d)) => record(d, &mut decisions),
                        Ok(Answered::Recorded { .. }) | Err(_) => {}
                    }
                }
                Op::Wait { micros } => now = now.plus_micros(micros),
            }
            for d in agg.on_time(now) {
                record(d, &mut decisions);
            }
        }
        for d in agg.on_time(now.plus_micros(10 * TIMEOUT)) {
            record(d, &mut decisions);
        }
        for (id, ds) in &decisions {
            prop_assert_eq!(ds.len(), 1, "request {} decided {} times", id, ds.len());
            prop_assert!(opened.contains(id), "a verdict for a request never opened");
            let d = &ds[0];
            if let Some(k) = known.get(id) {
                match &d.outcome {
                    VerdictOutcome::Approve => {
                        prop_assert_eq!(&k.approved, &k.tree.confirming_parties());
                        prop_assert!(d.decided_at <= k.decision_time);
                    }
                    VerdictOutcome::Timeout => prop_assert!(d.decided_at >= k.decision_time),
                    VerdictOutcome::Reject { .. } => prop_assert!(d.decided_at <= k.decision_time),
                }
            }
        }
        // Every opened request is decided in the end.
        for id in &opened {
            prop_assert!(decisions.contains_key(id), "request {} never decided", id);
        }
    }
}
