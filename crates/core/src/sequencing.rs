//! The sequencer's domain types, shared by the sequencer nodes and their clients, and the
//! bytes a member signs to acknowledge events (both sides build them here, so the format
//! lives in one place). Protobuf conversions live in `ordo-proto` (`ordo_proto::convert`).

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

/// Domain separation of a member's signature over an acknowledgement: no other message
/// signed with a member key (`ordo-sequencer-auth-v1`, `ordo-protocol-v1`) starts with it.
pub const ACK_CONTEXT: &[u8] = b"ordo-sequencer-ack-v1";

/// The bytes a member signs to acknowledge every event up to `timestamp` (microseconds):
/// `"ordo-sequencer-ack-v1" ‖ member id (UTF-8) ‖ timestamp (i64, big endian)`. The context
/// and the timestamp have fixed sizes, so the member id between them is unambiguous.
pub fn ack_message(member: &str, timestamp: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(ACK_CONTEXT.len() + member.len() + 8);
    message.extend_from_slice(ACK_CONTEXT);
    message.extend_from_slice(member.as_bytes());
    message.extend_from_slice(&timestamp.to_be_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_message_is_context_member_then_big_endian_timestamp() {
        let m = ack_message("alice::00ff", 0x0102_0304_0506_0708);
        let mut expected = b"ordo-sequencer-ack-v1alice::00ff".to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m, expected);
        assert_ne!(ack_message("alice::00ff", 1), ack_message("alice::00ff", 2));
        assert_ne!(ack_message("alice::00ff", 1), ack_message("bob::00ff", 1));
    }
}
