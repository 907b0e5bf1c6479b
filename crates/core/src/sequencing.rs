//! The sequencer's domain types, shared by the sequencer nodes and their clients.
//! Protobuf conversions live in `ordo-proto` (`ordo_proto::convert`).

use std::collections::BTreeSet;

use crate::{MemberId, Timestamp};

/// Who an envelope is addressed to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Recipients {
    pub members: BTreeSet<MemberId>,
    /// Addressed to every registered member.
    pub broadcast: bool,
}

impl Recipients {
    pub fn members(members: impl IntoIterator<Item = MemberId>) -> Self {
        Self {
            members: members.into_iter().collect(),
            broadcast: false,
        }
    }

    pub fn broadcast() -> Self {
        Self {
            members: BTreeSet::new(),
            broadcast: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.broadcast && self.members.is_empty()
    }

    pub fn includes(&self, member: &MemberId) -> bool {
        self.broadcast || self.members.contains(member)
    }
}

/// End-to-end content for a set of recipients. The sequencer never interprets `content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub recipients: Recipients,
    pub content: Vec<u8>,
}

/// A request to sequence a batch of envelopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Idempotency key: `(sender, message_id)` is sequenced at most once.
    pub message_id: String,
    /// Sequenced with a timestamp at or before this, or never.
    pub max_sequencing_time: Timestamp,
    pub envelopes: Vec<Envelope>,
}

/// The outcome of a successful send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequenced {
    pub timestamp: Timestamp,
    /// The submission had already been sequenced by an earlier call.
    pub duplicate: bool,
}

/// An event as delivered to one member: only the envelopes addressed to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencedEvent {
    pub timestamp: Timestamp,
    /// The previous event delivered to this member, `Timestamp::MIN` when none.
    pub previous_timestamp: Timestamp,
    pub sender: MemberId,
    pub message_id: String,
    pub envelopes: Vec<Envelope>,
}
