//! The one error type of the crate. A failed call keeps the server's gRPC code and message
//! untouched, so that a gateway can map it to an HTTP status; failures on this side of the
//! wire get the code that describes them best (`LedgerError::code`).

use std::path::PathBuf;

use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The server answered with an error status: its gRPC code, message and, when it
    /// carries one, ordo's error code id (docs/errors.md), which clients decide on.
    #[error("{}: {message}", code_name(*code))]
    Status {
        code: Code,
        message: String,
        error_code: Option<String>,
    },
    /// No connection to the endpoint could be made.
    #[error(
        "cannot connect to {endpoint}: {reason} (is the network running? `ordo up` starts one)"
    )]
    Connect { endpoint: String, reason: String },
    /// Input rejected on this side before anything was sent (e.g. a payload that is not
    /// JSON).
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },
    /// The server's answer could not be understood.
    #[error("unexpected answer from the ledger: {0}")]
    Protocol(String),
    /// The network file is missing or malformed.
    #[error("network file {}: {reason}", path.display())]
    NetworkFile { path: PathBuf, reason: String },
    /// A party or shard the network does not know.
    #[error("{0}")]
    NotFound(String),
    /// Tokens cannot be minted from the network's auth section.
    #[error("cannot mint a Ledger API token: {0}")]
    Auth(String),
}

impl LedgerError {
    /// The gRPC code of the failure: the server's for `Status`, the closest one otherwise.
    pub fn code(&self) -> Code {
        match self {
            LedgerError::Status { code, .. } => *code,
            LedgerError::Connect { .. } => Code::Unavailable,
            LedgerError::InvalidInput { .. } => Code::InvalidArgument,
            LedgerError::Protocol(_) => Code::Internal,
            LedgerError::NetworkFile { .. } => Code::FailedPrecondition,
            LedgerError::NotFound(_) => Code::NotFound,
            LedgerError::Auth(_) => Code::Unauthenticated,
        }
    }

    /// The server's error code id (docs/errors.md), when it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            LedgerError::Status { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// Whether the server answered with `code`.
    pub fn is(&self, code: ordo_proto::errors::ErrorCode) -> bool {
        self.error_code() == Some(code.id)
    }

    /// The server's message for `Status`, the whole description otherwise.
    pub fn message(&self) -> String {
        match self {
            LedgerError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> Self {
        LedgerError::InvalidInput {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<tonic::Status> for LedgerError {
    fn from(s: tonic::Status) -> Self {
        LedgerError::Status {
            code: s.code(),
            message: s.message().to_owned(),
            error_code: ordo_proto::errors::code_of(&s),
        }
    }
}

/// The canonical upper-case name of a gRPC code (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_servers_code_and_message() {
        let e = LedgerError::from(tonic::Status::failed_precondition(
            "contract 12ab is not active",
        ));
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert_eq!(e.message(), "contract 12ab is not active");
        assert_eq!(
            e.to_string(),
            "FAILED_PRECONDITION: contract 12ab is not active"
        );
        let c = LedgerError::Connect {
            endpoint: "http://127.0.0.1:1".into(),
            reason: "refused".into(),
        };
        assert_eq!(c.code(), Code::Unavailable);
        assert!(c.to_string().contains("ordo up"));
    }
}
