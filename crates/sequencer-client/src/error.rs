//! What can go wrong talking to the sequencer, and which failures are worth a retry.

use ordo_core::Timestamp;
use ordo_proto::convert::DecodeError;
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no healthy sequencer endpoint among {endpoints:?}: check that the sequencer nodes run \
         and report SERVING on grpc.health.v1"
    )]
    NoHealthyEndpoint { endpoints: Vec<String> },

    /// A definite answer from a node: the request was not carried out (for a send: not
    /// sequenced).
    #[error("sequencer rejected the request ({code:?}): {message}", code = .0.code(), message = .0.message())]
    Rejected(tonic::Status),

    /// Retried until `max_sequencing_time` passed without a definite answer. The submission
    /// may or may not have been sequenced: resend the same message id to learn its timestamp
    /// (a duplicate answer), or observe it on the subscription.
    #[error(
        "submission {message_id} got no definite answer before its max sequencing time \
         {max_sequencing_time}; resend the same message id to learn whether it was sequenced"
    )]
    Expired {
        message_id: String,
        max_sequencing_time: Timestamp,
    },

    /// The node delivered an event whose previous-timestamp does not chain to the last
    /// event this subscription delivered: an event was lost or forged.
    #[error(
        "subscription chain broken at event {at}: it names previous event {got_previous}, \
         but the last delivered event is {expected_previous}"
    )]
    ChainBroken {
        expected_previous: Timestamp,
        got_previous: Timestamp,
        at: Timestamp,
    },

    #[error("malformed message from the sequencer: {0}")]
    Decode(#[from] DecodeError),

    /// An RPC failed without a definite answer, on every endpoint tried.
    #[error("call to sequencer endpoint {endpoint} failed ({code:?}): {message}", code = .status.code(), message = .status.message())]
    Unavailable {
        endpoint: String,
        status: tonic::Status,
    },

    #[error("authentication of {member} at {endpoint} failed ({code:?}): {message}; is the member registered with this key?", code = .status.code(), message = .status.message())]
    Authentication {
        member: String,
        endpoint: String,
        status: tonic::Status,
    },

    #[error("invalid sequencer endpoint {endpoint}: {source}")]
    InvalidEndpoint {
        endpoint: String,
        #[source]
        source: ordo_tls::TlsError,
    },

    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),

    #[error("invalid sequencer client configuration: {0}")]
    InvalidConfig(String),

    #[error("the sequencer client was shut down")]
    Closed,
}

/// What to do about a failed call or a failed item of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// No definite answer (node down, draining, overloaded, timed out): try again,
    /// preferably elsewhere. Safe for sends because they are idempotent per message id.
    Retry,
    /// The token was refused: authenticate again, then retry.
    Reauthenticate,
    /// A definite answer; retrying cannot change it.
    Reject,
}

/// [`classify`] of the status's code, except that a THROTTLED error (the member is over a
/// rate limit, not sending something too large: RESOURCE_EXHAUSTED either way) is retried.
pub fn classify_status(status: &tonic::Status) -> Disposition {
    if ordo_proto::errors::is(status, ordo_proto::errors::THROTTLED) {
        Disposition::Retry
    } else {
        classify(status.code())
    }
}

pub fn classify(code: Code) -> Disposition {
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::Internal => Disposition::Retry,
        Code::Unauthenticated => Disposition::Reauthenticate,
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss => Disposition::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes() {
        for c in [Code::Unavailable, Code::DeadlineExceeded, Code::Unknown] {
            assert_eq!(classify(c), Disposition::Retry, "{c:?}");
        }
        assert_eq!(classify(Code::Unauthenticated), Disposition::Reauthenticate);
        for c in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::PermissionDenied,
        ] {
            assert_eq!(classify(c), Disposition::Reject, "{c:?}");
        }
        let too_big = tonic::Status::resource_exhausted("over max_request_bytes");
        assert_eq!(classify_status(&too_big), Disposition::Reject);
        let throttled = ordo_proto::errors::status(
            ordo_proto::errors::THROTTLED,
            "over the member_sends limit",
            Some(std::time::Duration::from_millis(120)),
        );
        assert_eq!(classify_status(&throttled), Disposition::Retry);
    }

    #[test]
    fn messages_name_the_values() {
        let e = ClientError::ChainBroken {
            expected_previous: Timestamp(5),
            got_previous: Timestamp(3),
            at: Timestamp(9),
        };
        let s = e.to_string();
        assert!(s.contains("Timestamp") || s.contains("1970"), "{s}");
        let e = ClientError::Rejected(tonic::Status::not_found("unknown recipient bob"));
        assert!(e.to_string().contains("unknown recipient bob"));
    }
}
