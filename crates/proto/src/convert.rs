//! Protobuf ⇄ domain conversions for the sequencer API, in one place for the nodes and
//! their clients. Decoding validates and names the offending field.

use ordo_core::{Envelope, MemberId, Recipients, Sequenced, SequencedEvent, Submission, Timestamp};

use crate::sequencer::v1 as pb;

/// A protobuf message that does not decode to a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct DecodeError {
    pub field: String,
    pub reason: String,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<DecodeError> for tonic::Status {
    fn from(e: DecodeError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

pub fn member(field: &str, s: &str) -> Result<MemberId, DecodeError> {
    s.parse()
        .map_err(|e: ordo_core::CoreError| DecodeError::new(field, e.to_string()))
}

pub fn recipients_to_pb(r: &Recipients) -> pb::Recipients {
    pb::Recipients {
        members: r.members.iter().map(ToString::to_string).collect(),
        broadcast: r.broadcast,
    }
}

pub fn recipients_from_pb(
    field: &str,
    r: Option<&pb::Recipients>,
) -> Result<Recipients, DecodeError> {
    let r = r.ok_or_else(|| DecodeError::new(field, "missing"))?;
    let members = r
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| member(&format!("{field}.members[{i}]"), m))
        .collect::<Result<_, _>>()?;
    Ok(Recipients {
        members,
        broadcast: r.broadcast,
    })
}

pub fn envelope_to_pb(e: &Envelope) -> pb::Envelope {
    pb::Envelope {
        recipients: Some(recipients_to_pb(&e.recipients)),
        content: e.content.clone(),
    }
}

pub fn envelope_from_pb(field: &str, e: pb::Envelope) -> Result<Envelope, DecodeError> {
    Ok(Envelope {
        recipients: recipients_from_pb(&format!("{field}.recipients"), e.recipients.as_ref())?,
        content: e.content,
    })
}

pub fn submission_to_pb(sender: &MemberId, s: &Submission) -> pb::SubmissionRequest {
    pb::SubmissionRequest {
        sender: sender.to_string(),
        message_id: s.message_id.clone(),
        max_sequencing_time: s.max_sequencing_time.micros(),
        envelopes: s.envelopes.iter().map(envelope_to_pb).collect(),
    }
}

/// Decodes a submission; returns the claimed sender (empty = the authenticated member).
pub fn submission_from_pb(
    r: pb::SubmissionRequest,
) -> Result<(Option<MemberId>, Submission), DecodeError> {
    let sender = if r.sender.is_empty() {
        None
    } else {
        Some(member("sender", &r.sender)?)
    };
    let envelopes = r
        .envelopes
        .into_iter()
        .enumerate()
        .map(|(i, e)| envelope_from_pb(&format!("envelopes[{i}]"), e))
        .collect::<Result<_, _>>()?;
    Ok((
        sender,
        Submission {
            message_id: r.message_id,
            max_sequencing_time: Timestamp(r.max_sequencing_time),
            envelopes,
        },
    ))
}

pub fn sequenced_to_pb(s: Sequenced) -> pb::SendResponse {
    pb::SendResponse {
        timestamp: s.timestamp.micros(),
        duplicate: s.duplicate,
    }
}

pub fn sequenced_from_pb(s: &pb::SendResponse) -> Sequenced {
    Sequenced {
        timestamp: Timestamp(s.timestamp),
        duplicate: s.duplicate,
    }
}

pub fn event_to_pb(e: &SequencedEvent) -> pb::SequencedEvent {
    pb::SequencedEvent {
        timestamp: e.timestamp.micros(),
        previous_timestamp: e.previous_timestamp.micros(),
        sender: e.sender.to_string(),
        message_id: e.message_id.clone(),
        envelopes: e.envelopes.iter().map(envelope_to_pb).collect(),
        heartbeat: None,
    }
}

/// A subscription heartbeat (not an event): every event for the member up to
/// `caught_up_to` was sent before it.
pub fn heartbeat_to_pb(caught_up_to: i64) -> pb::SequencedEvent {
    pb::SequencedEvent {
        heartbeat: Some(pb::SubscriptionHeartbeat { caught_up_to }),
        ..Default::default()
    }
}

/// Decodes an event; a heartbeat is no event (check `heartbeat` first).
pub fn event_from_pb(e: pb::SequencedEvent) -> Result<SequencedEvent, DecodeError> {
    if e.heartbeat.is_some() {
        return Err(DecodeError::new(
            "heartbeat",
            "a subscription heartbeat is not an event",
        ));
    }
    Ok(SequencedEvent {
        timestamp: Timestamp(e.timestamp),
        previous_timestamp: Timestamp(e.previous_timestamp),
        sender: member("sender", &e.sender)?,
        message_id: e.message_id,
        envelopes: e
            .envelopes
            .into_iter()
            .enumerate()
            .map(|(i, env)| envelope_from_pb(&format!("envelopes[{i}]"), env))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_core::KeyPair;

    #[test]
    fn submission_round_trip() {
        let a = MemberId::new("a", &KeyPair::generate().public()).unwrap();
        let b = MemberId::new("b", &KeyPair::generate().public()).unwrap();
        let s = Submission {
            message_id: "m-1".into(),
            max_sequencing_time: Timestamp(42),
            envelopes: vec![
                Envelope {
                    recipients: Recipients::members([b.clone()]),
                    content: vec![1, 2, 3],
                },
                Envelope {
                    recipients: Recipients::broadcast(),
                    content: vec![],
                },
            ],
        };
        let (sender, back) = submission_from_pb(submission_to_pb(&a, &s)).unwrap();
        assert_eq!(sender, Some(a));
        assert_eq!(back, s);
    }

    #[test]
    fn names_the_bad_field() {
        let mut pb = submission_to_pb(
            &MemberId::new("a", &KeyPair::generate().public()).unwrap(),
            &Submission {
                message_id: "m".into(),
                max_sequencing_time: Timestamp(1),
                envelopes: vec![],
            },
        );
        pb.envelopes.push(pb::Envelope {
            recipients: Some(pb::Recipients {
                members: vec!["not-a-member".into()],
                broadcast: false,
            }),
            content: vec![],
        });
        let err = submission_from_pb(pb).unwrap_err();
        assert_eq!(err.field, "envelopes[0].recipients.members[0]");
    }

    #[test]
    fn a_heartbeat_is_no_event() {
        let beat = heartbeat_to_pb(17);
        assert_eq!(
            beat.heartbeat,
            Some(pb::SubscriptionHeartbeat { caught_up_to: 17 })
        );
        assert_eq!((beat.timestamp, beat.previous_timestamp), (0, 0));
        assert_eq!(event_from_pb(beat).unwrap_err().field, "heartbeat");
        let event = SequencedEvent {
            timestamp: Timestamp(5),
            previous_timestamp: Timestamp(2),
            sender: MemberId::new("a", &KeyPair::generate().public()).unwrap(),
            message_id: "m".into(),
            envelopes: vec![],
        };
        assert_eq!(event_to_pb(&event).heartbeat, None);
        assert_eq!(event_from_pb(event_to_pb(&event)).unwrap(), event);
    }
}
