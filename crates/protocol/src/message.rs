//! The messages of the transaction protocol (DESIGN §4).
//!
//! A submitting participant sends one submission whose envelopes are a [`ViewMessage`] to
//! every informee participant and an [`InformeeTree`] to the mediator. All of them are
//! sequenced at the same timestamp, which identifies the request ([`RequestId`]) for
//! everyone. Confirming participants answer the mediator with a [`ConfirmationResponse`];
//! the mediator sends its [`Verdict`] to every informee participant.

use std::collections::BTreeSet;

use ordo_core::{MemberId, PartyId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::TopologyTransaction;

/// A confirmation request is named by its sequencing timestamp, unique in the domain.
pub type RequestId = Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Message {
    Topology(TopologyTransaction),
    View(ViewMessage),
    InformeeTree(InformeeTree),
    Response(ConfirmationResponse),
    Verdict(Verdict),
    TimeProof(TimeProof),
}

/// What one informee participant learns of a transaction: the views its parties are
/// informees of. The schema of `view` belongs to the participants (ordo-participant);
/// the mediator never sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewMessage {
    /// Ties the views, the informee tree and the responses to one transaction.
    pub root_hash: String,
    pub view: serde_json::Value,
}

/// What the mediator learns of a transaction: who must confirm and who is told, no
/// payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformeeTree {
    pub root_hash: String,
    /// The participant that submitted it; it receives the verdict too.
    pub submitter: MemberId,
    /// Every party whose approval the transaction needs.
    pub confirming_parties: BTreeSet<PartyId>,
    /// Every party that is an informee of some action (the verdict goes to their hosts).
    pub informees: BTreeSet<PartyId>,
}

/// A confirming participant's answer for the confirming parties it hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationResponse {
    pub request: RequestId,
    pub root_hash: String,
    /// The confirming parties of the request that this participant hosts and answers for.
    pub parties: BTreeSet<PartyId>,
    pub outcome: ResponseOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ResponseOutcome {
    Approve,
    /// Refused, with a reason for the submitter (e.g. `contract 12ab… is not active`).
    Reject {
        reason: String,
    },
}

/// The mediator's decision, sent to every informee participant and the submitter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub request: RequestId,
    pub root_hash: String,
    pub outcome: VerdictOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum VerdictOutcome {
    Approve,
    /// At least one confirming party rejected (or the request was malformed); the reasons
    /// as the rejecting participants gave them.
    Reject {
        reasons: Vec<String>,
    },
    /// Not every confirming party answered by the decision time.
    Timeout,
}

/// A message a member sends to itself to learn the sequencer's clock: its sequencing
/// timestamp tells the member that the domain's time has reached it (the mediator uses
/// this to decide timeouts when nothing else is being sequenced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeProof {
    pub nonce: u64,
}
