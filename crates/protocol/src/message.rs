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
use serde_json::value::RawValue;

use crate::TopologyTransaction;
use crate::merkle::ViewCommitment;

/// A confirmation request is named by its sequencing timestamp, unique in the domain.
pub type RequestId = Timestamp;

/// One protocol message. Its JSON is an object whose `type` names the kind
/// (`{"type": "verdict", …}`); [`Message::from_json`] reads it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Message {
    Topology(TopologyTransaction),
    View(ViewMessage),
    InformeeTree(InformeeTree),
    Response(ConfirmationResponse),
    Verdict(Verdict),
    TimeProof(TimeProof),
}

impl Message {
    /// Reads a message from its JSON. The kind is read first and the message then
    /// decoded straight into its type (serde's derived decoding of a tagged enum would
    /// first copy the whole message into an intermediate tree, and cannot keep a view's raw
    /// bytes): one pass over a large view, which stays raw.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        // Encoders write the tag first (`{"type":"view",…`): read it off the front when
        // it is there, saving a pass over the whole message; otherwise look for it.
        let kind = match json
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split_once('"'))
            .filter(|(kind, _)| kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            Some((kind, _)) => std::borrow::Cow::Borrowed(kind),
            None => serde_json::from_str::<Tag>(json)?.kind,
        };
        Ok(match kind.as_ref() {
            "topology" => Self::Topology(serde_json::from_str(json)?),
            "view" => Self::View(serde_json::from_str(json)?),
            "informee_tree" => Self::InformeeTree(serde_json::from_str(json)?),
            "response" => Self::Response(serde_json::from_str(json)?),
            "verdict" => Self::Verdict(serde_json::from_str(json)?),
            "time_proof" => Self::TimeProof(serde_json::from_str(json)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown message type {:?}",
                    other.chars().take(40).collect::<String>()
                )));
            }
        })
    }
}

/// What one informee participant learns of a transaction: the view of its parties, with
/// what proves the view's place in the request (see [`crate::merkle`]). The schema of `view`
/// belongs to the participants (ordo-participant); the mediator never sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewMessage {
    /// The request's Merkle root: ties the views, the informee tree, the responses and the
    /// verdict to one transaction.
    pub root_hash: String,
    /// This view's leaf as the mediator's informee tree holds it.
    pub commitment: ViewCommitment,
    /// The leaf's position among `leaves`.
    pub position: u32,
    /// The hash of every leaf of the request, in order (this one's included): the other
    /// views stay blinded.
    pub leaves: Vec<String>,
    /// The view's JSON, kept as the bytes that travel: its hash is over them, and the
    /// recipient decodes it only once the message passed the cheap checks.
    pub view: Box<RawValue>,
}

impl PartialEq for ViewMessage {
    fn eq(&self, other: &Self) -> bool {
        self.root_hash == other.root_hash
            && self.commitment == other.commitment
            && self.position == other.position
            && self.leaves == other.leaves
            && self.view.get() == other.view.get()
    }
}

/// What the mediator learns of a transaction: every view's commitment (who it is for, its
/// hash, its informees and confirming parties), no payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformeeTree {
    pub root_hash: String,
    /// The participant that submitted it; it receives the verdict too.
    pub submitter: MemberId,
    /// One commitment per view, the leaves of the request's Merkle tree in order.
    pub views: Vec<ViewCommitment>,
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
    /// Refused, with a reason for the submitter (e.g. `contract 12ab… is not active`) and
    /// its error code (`CONTRACT_NOT_ACTIVE`, docs/errors.md; absent from older
    /// participants).
    Reject {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
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
    /// as the rejecting participants gave them, and the error code of the rejection that
    /// decided it (absent when it gave none).
    Reject {
        reasons: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_carry_their_code_and_read_without_one() {
        let response = ResponseOutcome::Reject {
            reason: "contract c is locked by request 7".into(),
            code: Some("LOCKED_CONTRACTS".into()),
        };
        let text = serde_json::to_string(&response).unwrap();
        assert_eq!(
            serde_json::from_str::<ResponseOutcome>(&text).unwrap(),
            response
        );
        // What a participant of an earlier version sends: no code.
        let older: ResponseOutcome =
            serde_json::from_str(r#"{"outcome": "reject", "reason": "no"}"#).unwrap();
        assert_eq!(
            older,
            ResponseOutcome::Reject {
                reason: "no".into(),
                code: None
            }
        );
        let older: VerdictOutcome =
            serde_json::from_str(r#"{"outcome": "reject", "reasons": ["no"]}"#).unwrap();
        assert_eq!(
            older,
            VerdictOutcome::Reject {
                reasons: vec!["no".into()],
                code: None
            }
        );
        // And a rejection without a code is written as before.
        let none = VerdictOutcome::Reject {
            reasons: vec!["no".into()],
            code: None,
        };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"outcome":"reject","reasons":["no"]}"#
        );
    }
}
