//! The mediator's deciding core (DESIGN §4 step 5): plain code over plain data, no I/O.
//!
//! A confirmation request becomes a [`PendingRequest`] when its informee tree arrives: who
//! must confirm, which participant hosts each of them (as of the request's timestamp), who
//! is told the verdict, and the decision time. Responses and the passing of sequencer time
//! then decide it:
//! - a Reject from any confirming party → Reject, with the reasons given;
//! - every confirming party approved → Approve;
//! - the decision time (request timestamp + participant response timeout) reached first →
//!   Timeout.
//!
//! A decision is final: the request leaves the pending set, so a late response can never
//! change it. Anything that does not fit (a response after the decision time, from a
//! participant that does not host the parties it claims, for an unknown request, with a
//! wrong root hash, or answering twice) is [`Ignored`] with a reason and changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{MemberId, PartyId, Timestamp};
use ordo_protocol::{
    ConfirmationResponse, InformeeTree, MemberRole, RequestId, ResponseOutcome, TopologyState,
    Verdict, VerdictOutcome,
};

/// One confirming party of a pending request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyAnswer {
    /// The participant that hosted the party at the request's timestamp: the only one that
    /// may answer for it.
    pub host: MemberId,
    /// It approved (a rejection decides the request at once, so it is never recorded).
    pub answered: bool,
}

/// A confirmation request waiting for responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// The request's sequencing timestamp.
    pub id: RequestId,
    pub root_hash: String,
    pub submitter: MemberId,
    pub confirming_parties: BTreeMap<PartyId, PartyAnswer>,
    /// The participants hosting an informee; they receive the verdict.
    pub informee_participants: BTreeSet<MemberId>,
    /// Sequencer time at which the request times out.
    pub decision_time: Timestamp,
}

/// What the arrival of an informee tree leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Now waiting for responses.
    Pending(PendingRequest),
    /// Decided at once (a confirming party without a host, no confirming party at all).
    Decided(Decision),
}

impl PendingRequest {
    /// The request `tree` describes, sequenced at `id`, with hosts and the response timeout
    /// taken from `topology` as of that timestamp.
    pub fn open(id: RequestId, tree: &InformeeTree, topology: &TopologyState) -> Opened {
        let informee_participants: BTreeSet<MemberId> = tree
            .informees
            .iter()
            .chain(&tree.confirming_parties)
            .filter_map(|p| topology.host_of(p).cloned())
            .collect();
        let mut confirming_parties = BTreeMap::new();
        let mut reasons = Vec::new();
        for party in &tree.confirming_parties {
            match topology.host_of(party) {
                Some(host) => {
                    confirming_parties.insert(
                        party.clone(),
                        PartyAnswer {
                            host: host.clone(),
                            answered: false,
                        },
                    );
                }
                None => reasons.push(format!(
                    "confirming party {party} is not hosted by any participant"
                )),
            }
        }
        if tree.confirming_parties.is_empty() {
            reasons.push("the informee tree names no confirming party".to_owned());
        }
        let request = PendingRequest {
            id,
            root_hash: tree.root_hash.clone(),
            submitter: tree.submitter.clone(),
            confirming_parties,
            informee_participants,
            decision_time: id.plus_micros(topology.parameters.participant_response_timeout_us),
        };
        if reasons.is_empty() {
            Opened::Pending(request)
        } else {
            Opened::Decided(request.decide(VerdictOutcome::Reject { reasons }, id))
        }
    }

    /// Who receives the verdict: every participant hosting an informee, and the submitter.
    pub fn recipients(&self) -> BTreeSet<MemberId> {
        let mut all = self.informee_participants.clone();
        all.insert(self.submitter.clone());
        all
    }

    fn all_approved(&self) -> bool {
        self.confirming_parties.values().all(|a| a.answered)
    }

    fn decide(&self, outcome: VerdictOutcome, at: Timestamp) -> Decision {
        Decision {
            request: self.id,
            root_hash: self.root_hash.clone(),
            outcome,
            recipients: self.recipients(),
            decided_at: at,
        }
    }
}

/// A final verdict and who is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub request: RequestId,
    pub root_hash: String,
    pub outcome: VerdictOutcome,
    pub recipients: BTreeSet<MemberId>,
    /// The sequencing timestamp of the event that decided it.
    pub decided_at: Timestamp,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        Verdict {
            request: self.request,
            root_hash: self.root_hash.clone(),
            outcome: self.outcome.clone(),
        }
    }

    /// `approve`, `reject` or `timeout` (metrics labels, the `verdicts` table).
    pub fn outcome_label(&self) -> &'static str {
        outcome_label(&self.outcome)
    }
}

pub fn outcome_label(outcome: &VerdictOutcome) -> &'static str {
    match outcome {
        VerdictOutcome::Approve => "approve",
        VerdictOutcome::Reject { .. } => "reject",
        VerdictOutcome::Timeout => "timeout",
    }
}

/// What an accepted response did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Approvals recorded for these parties; the request still waits for others.
    Recorded {
        request: RequestId,
        parties: Vec<PartyId>,
    },
    Decided(Decision),
}

/// Why a message was ignored. It changed nothing; the runtime logs the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("informee tree signed by {signer}, but it names {submitter} as its submitter")]
    NotSubmitter {
        signer: MemberId,
        submitter: MemberId,
    },
    #[error("informee tree signed by {0}, which is not a participant in topology")]
    NotAParticipant(MemberId),
    #[error("request {0} is already pending (a second informee tree for it)")]
    DuplicateRequest(RequestId),
    #[error("response for request {0}, which is not pending (unknown or already decided)")]
    UnknownRequest(RequestId),
    #[error("response for request {request} has root hash {got}, the request's is {expected}")]
    RootHashMismatch {
        request: RequestId,
        expected: String,
        got: String,
    },
    #[error(
        "response for request {request} sequenced at {at}, after its decision time {decision_time}"
    )]
    Late {
        request: RequestId,
        at: Timestamp,
        decision_time: Timestamp,
    },
    #[error("response from {signer} for request {request} answers for no party")]
    NoParties {
        request: RequestId,
        signer: MemberId,
    },
    #[error(
        "response from {signer} answers for {party}, which is not a confirming party of request {request}"
    )]
    NotConfirming {
        request: RequestId,
        signer: MemberId,
        party: PartyId,
    },
    #[error(
        "response from {signer} answers for {party} of request {request}, but {host} hosts that party"
    )]
    NotHost {
        request: RequestId,
        signer: MemberId,
        party: PartyId,
        host: MemberId,
    },
    #[error("response from {signer} answers again for {party} of request {request}")]
    Duplicate {
        request: RequestId,
        signer: MemberId,
        party: PartyId,
    },
}

impl Ignored {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotSubmitter { .. } => "not_submitter",
            Self::NotAParticipant(_) => "not_a_participant",
            Self::DuplicateRequest(_) => "duplicate_request",
            Self::UnknownRequest(_) => "unknown_request",
            Self::RootHashMismatch { .. } => "root_hash_mismatch",
            Self::Late { .. } => "late",
            Self::NoParties { .. } => "no_parties",
            Self::NotConfirming { .. } => "not_confirming",
            Self::NotHost { .. } => "not_host",
            Self::Duplicate { .. } => "duplicate",
        }
    }
}

/// The set of pending requests and the rules that decide them.
#[derive(Clone, Debug, Default)]
pub struct Aggregator {
    pending: BTreeMap<RequestId, PendingRequest>,
}

impl Aggregator {
    /// Resumes with the pending requests a previous run left (from the database).
    pub fn new(pending: impl IntoIterator<Item = PendingRequest>) -> Self {
        Self {
            pending: pending.into_iter().map(|r| (r.id, r)).collect(),
        }
    }

    pub fn pending(&self) -> impl Iterator<Item = &PendingRequest> {
        self.pending.values()
    }

    pub fn get(&self, id: RequestId) -> Option<&PendingRequest> {
        self.pending.get(&id)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The earliest decision time among pending requests.
    pub fn next_decision_time(&self) -> Option<Timestamp> {
        self.pending.values().map(|r| r.decision_time).min()
    }

    /// An informee tree sequenced at `id`, signed by `signer`. The signer must be the
    /// tree's submitter and a participant in `topology` (as of `id`).
    pub fn on_request(
        &mut self,
        id: RequestId,
        tree: &InformeeTree,
        signer: &MemberId,
        topology: &TopologyState,
    ) -> Result<Opened, Ignored> {
        if *signer != tree.submitter {
            return Err(Ignored::NotSubmitter {
                signer: signer.clone(),
                submitter: tree.submitter.clone(),
            });
        }
        let is_participant = topology
            .members
            .get(signer)
            .is_some_and(|m| matches!(m.role, MemberRole::Participant { .. }));
        if !is_participant {
            return Err(Ignored::NotAParticipant(signer.clone()));
        }
        if self.pending.contains_key(&id) {
            return Err(Ignored::DuplicateRequest(id));
        }
        let opened = PendingRequest::open(id, tree, topology);
        if let Opened::Pending(request) = &opened {
            self.pending.insert(id, request.clone());
        }
        Ok(opened)
    }

    /// A confirmation response signed by `signer` and sequenced at `at`. It is checked
    /// whole before anything is recorded: one bad party claim ignores the response.
    pub fn on_response(
        &mut self,
        response: &ConfirmationResponse,
        signer: &MemberId,
        at: Timestamp,
    ) -> Result<Answered, Ignored> {
        let id = response.request;
        let request = self
            .pending
            .get_mut(&id)
            .ok_or(Ignored::UnknownRequest(id))?;
        if response.root_hash != request.root_hash {
            return Err(Ignored::RootHashMismatch {
                request: id,
                expected: request.root_hash.clone(),
                got: response.root_hash.clone(),
            });
        }
        if at > request.decision_time {
            return Err(Ignored::Late {
                request: id,
                at,
                decision_time: request.decision_time,
            });
        }
        if response.parties.is_empty() {
            return Err(Ignored::NoParties {
                request: id,
                signer: signer.clone(),
            });
        }
        for party in &response.parties {
            let Some(answer) = request.confirming_parties.get(party) else {
                return Err(Ignored::NotConfirming {
                    request: id,
                    signer: signer.clone(),
                    party: party.clone(),
                });
            };
            if answer.host != *signer {
                return Err(Ignored::NotHost {
                    request: id,
                    signer: signer.clone(),
                    party: party.clone(),
                    host: answer.host.clone(),
                });
            }
            if answer.answered {
                return Err(Ignored::Duplicate {
                    request: id,
                    signer: signer.clone(),
                    party: party.clone(),
                });
            }
        }
        match &response.outcome {
            ResponseOutcome::Reject { reason } => {
                let decision = request.decide(
                    VerdictOutcome::Reject {
                        reasons: vec![reason.clone()],
                    },
                    at,
                );
                self.pending.remove(&id);
                Ok(Answered::Decided(decision))
            }
            ResponseOutcome::Approve => {
                for party in &response.parties {
                    if let Some(answer) = request.confirming_parties.get_mut(party) {
                        answer.answered = true;
                    }
                }
                if request.all_approved() {
                    let decision = request.decide(VerdictOutcome::Approve, at);
                    self.pending.remove(&id);
                    Ok(Answered::Decided(decision))
                } else {
                    Ok(Answered::Recorded {
                        request: id,
                        parties: response.parties.iter().cloned().collect(),
                    })
                }
            }
        }
    }

    /// Sequencer time has reached `at`: every pending request whose decision time is at or
    /// before it times out, in request order.
    pub fn on_time(&mut self, at: Timestamp) -> Vec<Decision> {
        let due: Vec<RequestId> = self
            .pending
            .values()
            .filter(|r| r.decision_time <= at)
            .map(|r| r.id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .map(|r| r.decide(VerdictOutcome::Timeout, at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ordo_core::KeyPair;
    use ordo_protocol::{DomainParameters, TopologyChange, TopologyTransaction, topology};

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

    /// alice and bob confirm; carol is an informee only.
    fn tree(w: &World) -> InformeeTree {
        InformeeTree {
            root_hash: "root".into(),
            submitter: w.p1.clone(),
            confirming_parties: [party("alice"), party("bob")].into(),
            informees: [party("alice"), party("bob"), party("carol")].into(),
        }
    }

    fn approve(parties: &[&str]) -> ConfirmationResponse {
        ConfirmationResponse {
            request: REQ,
            root_hash: "root".into(),
            parties: parties.iter().map(|p| party(p)).collect(),
            outcome: ResponseOutcome::Approve,
        }
    }

    fn reject(parties: &[&str], reason: &str) -> ConfirmationResponse {
        ConfirmationResponse {
            outcome: ResponseOutcome::Reject {
                reason: reason.into(),
            },
            ..approve(parties)
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
            .on_response(&approve(&["alice"]), &w.p1, at(10))
            .unwrap();
        assert_eq!(
            first,
            Answered::Recorded {
                request: REQ,
                parties: vec![party("alice")]
            }
        );
        let d = decided(agg.on_response(&approve(&["bob"]), &w.p2, at(20)).unwrap());
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
                root_hash: "root".into(),
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
        let mut agg = Aggregator::default();
        agg.on_request(REQ, &tree(&w), &w.p1, &t).unwrap();
        let d = decided(
            agg.on_response(&approve(&["alice", "bob"]), &w.p1, at(5))
                .unwrap(),
        );
        assert_eq!(d.outcome, VerdictOutcome::Approve);
    }

    #[test]
    fn any_reject_gives_reject_with_its_reason() {
        let w = world();
        let mut agg = opened(&w);
        agg.on_response(&approve(&["alice"]), &w.p1, at(10))
            .unwrap();
        let d = decided(
            agg.on_response(
                &reject(&["bob"], "contract 12ab is not active"),
                &w.p2,
                at(20),
            )
            .unwrap(),
        );
        assert_eq!(
            d.outcome,
            VerdictOutcome::Reject {
                reasons: vec!["contract 12ab is not active".into()]
            }
        );
        assert!(agg.is_empty());
    }

    #[test]
    fn a_reject_decides_before_the_others_answer() {
        let w = world();
        let mut agg = opened(&w);
        let d = decided(
            agg.on_response(&reject(&["alice"], "no"), &w.p1, at(1))
                .unwrap(),
        );
        assert_eq!(d.outcome_label(), "reject");
        // The decision is final: bob's later approval finds nothing pending.
        assert_eq!(
            agg.on_response(&approve(&["bob"]), &w.p2, at(2)),
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
        agg.on_response(&approve(&["alice"]), &w.p1, at(10))
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
        agg.on_response(&approve(&["alice"]), &w.p1, at(10))
            .unwrap();
        // At exactly the decision time a response still counts.
        let d = decided(
            agg.on_response(&approve(&["bob"]), &w.p2, at(TIMEOUT))
                .unwrap(),
        );
        assert_eq!(d.outcome, VerdictOutcome::Approve);

        let mut agg = opened(&w);
        agg.on_response(&approve(&["alice"]), &w.p1, at(10))
            .unwrap();
        assert_eq!(
            agg.on_response(&approve(&["bob"]), &w.p2, at(TIMEOUT + 1)),
            Err(Ignored::Late {
                request: REQ,
                at: at(TIMEOUT + 1),
                decision_time: at(TIMEOUT)
            })
        );
        let due = agg.on_time(at(TIMEOUT + 1));
        assert_eq!(due[0].outcome, VerdictOutcome::Timeout);
        assert_eq!(
            agg.on_response(&approve(&["bob"]), &w.p2, at(TIMEOUT + 2)),
            Err(Ignored::UnknownRequest(REQ))
        );
    }

    #[test]
    fn a_participant_may_answer_only_for_parties_it_hosts() {
        let w = world();
        let mut agg = opened(&w);
        // p2 claims alice (hosted by p1).
        let err = agg
            .on_response(&approve(&["alice"]), &w.p2, at(1))
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
            agg.on_response(&reject(&["alice"], "x"), &w.p3, at(2)),
            Err(Ignored::NotHost { .. })
        ));
        // Mixing a hosted and a foreign party: the whole response is ignored.
        assert!(matches!(
            agg.on_response(&approve(&["bob", "alice"]), &w.p2, at(3)),
            Err(Ignored::NotHost { .. })
        ));
        // carol is an informee, not a confirming party.
        assert!(matches!(
            agg.on_response(&approve(&["carol"]), &w.p3, at(4)),
            Err(Ignored::NotConfirming { .. })
        ));
        assert!(matches!(
            agg.on_response(&approve(&[]), &w.p1, at(5)),
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
        let mut r = approve(&["alice"]);
        r.request = REQ.plus_micros(1);
        assert_eq!(
            agg.on_response(&r, &w.p1, at(1)),
            Err(Ignored::UnknownRequest(REQ.plus_micros(1)))
        );
        let mut r = approve(&["alice"]);
        r.root_hash = "other".into();
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
        agg.on_response(&approve(&["alice"]), &w.p1, at(1)).unwrap();
        let err = agg
            .on_response(&approve(&["alice"]), &w.p1, at(2))
            .unwrap_err();
        assert_eq!(err.label(), "duplicate");
        // A rejection after an approval for the same party does not overturn it.
        assert!(matches!(
            agg.on_response(&reject(&["alice"], "changed my mind"), &w.p1, at(3)),
            Err(Ignored::Duplicate { .. })
        ));
        assert_eq!(agg.len(), 1);
    }

    #[test]
    fn a_confirming_party_without_host_is_rejected_at_once() {
        let w = world();
        let mut agg = Aggregator::default();
        let mut t = tree(&w);
        t.confirming_parties.insert(party("dave"));
        let Opened::Decided(d) = agg.on_request(REQ, &t, &w.p1, &w.topology).unwrap() else {
            panic!("expected an immediate decision");
        };
        match &d.outcome {
            VerdictOutcome::Reject { reasons } => {
                assert_eq!(reasons.len(), 1);
                assert!(reasons[0].contains("dave"), "{reasons:?}");
            }
            other => panic!("expected Reject, got {other:?}"),
        }
        assert_eq!(d.decided_at, REQ);
        assert_eq!(
            d.recipients,
            [w.p1.clone(), w.p2.clone(), w.p3.clone()].into()
        );
        assert!(agg.is_empty());

        let mut t = tree(&w);
        t.confirming_parties.clear();
        assert!(matches!(
            agg.on_request(REQ, &t, &w.p1, &w.topology).unwrap(),
            Opened::Decided(Decision {
                outcome: VerdictOutcome::Reject { .. },
                ..
            })
        ));
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
        agg.on_response(&approve(&["alice"]), &w.p1, at(1)).unwrap();
        let saved: Vec<PendingRequest> = agg.pending().cloned().collect();
        let mut resumed = Aggregator::new(saved);
        assert!(matches!(
            resumed.on_response(&approve(&["alice"]), &w.p1, at(2)),
            Err(Ignored::Duplicate { .. })
        ));
        let d = decided(
            resumed
                .on_response(&approve(&["bob"]), &w.p2, at(3))
                .unwrap(),
        );
        assert_eq!(d.outcome, VerdictOutcome::Approve);
    }
}
