//! Opening a request: what the mediator checks of an informee tree before it waits for
//! anyone, and what it then waits for.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{MemberId, PartyId, Timestamp};
use ordo_protocol::{InformeeTree, MemberRole, RequestId, TopologyState, VerdictOutcome};

use super::Decision;

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
    /// The participants hosting an informee, and those the request has a view for; they
    /// receive the verdict.
    pub informee_participants: BTreeSet<MemberId>,
    /// Sequencer time at which the request times out.
    pub decision_time: Timestamp,
}

/// What the arrival of an informee tree leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Now waiting for responses.
    Pending(PendingRequest),
    /// Rejected at once: the tree is malformed (it does not hash to its root, a confirming
    /// party has no host or no view, …). No honest submitter sends one: the runtime raises
    /// an alarm.
    Decided(Decision),
}

fn is_participant(topology: &TopologyState, member: &MemberId) -> bool {
    topology
        .members
        .get(member)
        .is_some_and(|m| matches!(m.role, MemberRole::Participant { .. }))
}

impl PendingRequest {
    /// The request `tree` describes, sequenced at `id`, with hosts and the response timeout
    /// taken from `topology` as of that timestamp. Its checks, each a reason to reject it
    /// at once:
    /// - the tree hashes to its root (one view per participant, at most one per participant
    ///   of the domain, each view's confirming parties among its informees);
    /// - each view is for a participant that hosts one of the view's informees;
    /// - there is a confirming party, and each is hosted by a participant the request has
    ///   a view for (else nobody could answer for it).
    pub fn open(id: RequestId, tree: &InformeeTree, topology: &TopologyState) -> Opened {
        let mut reasons = Vec::new();
        let participants = topology
            .members
            .values()
            .filter(|m| matches!(m.role, MemberRole::Participant { .. }))
            .count();
        if let Err(e) = tree.check(participants) {
            reasons.push(format!("malformed informee tree: {e}"));
        }
        let with_view: BTreeSet<&MemberId> = tree.views.iter().map(|v| &v.participant).collect();
        for view in &tree.views {
            if !is_participant(topology, &view.participant) {
                reasons.push(format!(
                    "the request has a view for {}, which is not a participant",
                    view.participant
                ));
            } else if !view
                .informees
                .iter()
                .any(|p| topology.host_of(p) == Some(&view.participant))
            {
                reasons.push(format!(
                    "the request has a view for {}, which hosts none of its informees",
                    view.participant
                ));
            }
        }
        let confirming = tree.confirming_parties();
        if confirming.is_empty() {
            reasons.push("the informee tree names no confirming party".to_owned());
        }
        let mut confirming_parties = BTreeMap::new();
        for party in confirming {
            match topology.host_of(&party) {
                Some(host) if with_view.contains(host) => {
                    confirming_parties.insert(
                        party,
                        PartyAnswer {
                            host: host.clone(),
                            answered: false,
                        },
                    );
                }
                Some(host) => reasons.push(format!(
                    "confirming party {party} is hosted by {host}, which the request has no view for"
                )),
                None => reasons.push(format!(
                    "confirming party {party} is not hosted by any participant"
                )),
            }
        }
        // The verdict may go only to members the sequencer knows as participants.
        let informee_participants: BTreeSet<MemberId> = tree
            .informees()
            .iter()
            .filter_map(|p| topology.host_of(p).cloned())
            .chain(
                with_view
                    .into_iter()
                    .filter(|m| is_participant(topology, m))
                    .cloned(),
            )
            .collect();
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
            // A malformed request: no participant's code to pass on.
            Opened::Decided(request.decide(
                VerdictOutcome::Reject {
                    reasons,
                    code: None,
                },
                id,
            ))
        }
    }

    /// Who receives the verdict: every participant hosting an informee or sent a view, and
    /// the submitter.
    pub fn recipients(&self) -> BTreeSet<MemberId> {
        let mut all = self.informee_participants.clone();
        all.insert(self.submitter.clone());
        all
    }

    pub(super) fn all_approved(&self) -> bool {
        self.confirming_parties.values().all(|a| a.answered)
    }

    pub(super) fn decide(&self, outcome: VerdictOutcome, at: Timestamp) -> Decision {
        Decision {
            request: self.id,
            root_hash: self.root_hash.clone(),
            outcome,
            recipients: self.recipients(),
            decided_at: at,
        }
    }
}
