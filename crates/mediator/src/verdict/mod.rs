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
//! change it, and each request is decided at most once: request ids are sequencing
//! timestamps, so a second informee tree for an id the mediator has already opened (in the
//! same event, or replayed) is a duplicate. Anything that does not fit (a response after
//! the decision time, from a participant that does not host the parties it claims, for an
//! unknown request, with a wrong root hash, or answering twice) is [`Ignored`] with a reason
//! and changes nothing; [`Ignored::is_alarm`] tells what no honest member sends.
//!
//! - `request`: opening a request from its informee tree (the tree's checks).

mod request;

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{MemberId, PartyId, Timestamp};
use ordo_protocol::{
    ConfirmationResponse, InformeeTree, MemberRole, RequestId, ResponseOutcome, TopologyState,
    Verdict, VerdictOutcome,
};

pub use request::{Opened, PartyAnswer, PendingRequest};

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
    #[error("request {0} was already opened (a second informee tree for it)")]
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
    /// Whether no honest member sends this: an informee tree not signed by its submitter
    /// or not by a participant, a second tree for one request, a response that names
    /// another root than its request's, answers for no party, for a party that is not
    /// confirming or not hosted by its signer, or answers twice. An unknown request or a
    /// late response is what an honest participant that answers after the decision meets.
    pub fn is_alarm(&self) -> bool {
        !matches!(self, Self::UnknownRequest(_) | Self::Late { .. })
    }

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
    /// The latest request id opened (or refused at once), or the cursor resumed from: an
    /// informee tree for an id at or before it is a duplicate.
    opened_up_to: Timestamp,
}

impl Aggregator {
    /// Resumes with the pending requests a previous run left (from the database) and the
    /// timestamp of the last event it processed.
    pub fn new(pending: impl IntoIterator<Item = PendingRequest>, cursor: Timestamp) -> Self {
        Self {
            pending: pending.into_iter().map(|r| (r.id, r)).collect(),
            opened_up_to: cursor,
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
        if id <= self.opened_up_to || self.pending.contains_key(&id) {
            return Err(Ignored::DuplicateRequest(id));
        }
        self.opened_up_to = id;
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
            ResponseOutcome::Reject { reason, code } => {
                let decision = request.decide(
                    VerdictOutcome::Reject {
                        reasons: vec![reason.clone()],
                        code: code.clone(),
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
mod tests;
