//! The crate's one error type and its one mapping to `tonic::Status`.

use ordo_node::db::Unprovisioned;
use tonic::{Code, Status};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "database {url} is not provisioned for the sequencer: run `ordo sequencer init --config FILE` first"
    )]
    NotProvisioned { url: String },
    #[error(
        "database {url} has sequencer schema version {found}, this node needs {expected}: run `ordo sequencer init --config FILE` with this version"
    )]
    SchemaVersion {
        url: String,
        found: i32,
        expected: i32,
    },
    #[error("sequencer database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("sequencer schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("sequencer I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("sequencer gRPC server: {0}")]
    Server(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ordo_proto::convert::DecodeError> for SequencerError {
    fn from(e: ordo_proto::convert::DecodeError) -> Self {
        Self::InvalidArgument(e.to_string())
    }
}

impl SequencerError {
    /// Why this node must not run on the database at `url`.
    pub(crate) fn unprovisioned(url: &str, why: Unprovisioned) -> Self {
        let url = ordo_node::db::redact_url(url);
        match why {
            Unprovisioned::Missing => Self::NotProvisioned { url },
            Unprovisioned::SchemaVersion { found, expected } => Self::SchemaVersion {
                url,
                found,
                expected,
            },
        }
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::InvalidArgument(_) | Self::Config(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::FailedPrecondition(_)
            | Self::NotProvisioned { .. }
            | Self::SchemaVersion { .. } => Code::FailedPrecondition,
            // The database or this node is (maybe briefly) unavailable: clients retry,
            // which is safe because sends are idempotent.
            Self::Database(_) | Self::Unavailable(_) | Self::Io(_) => Code::Unavailable,
            Self::Migrate(_) | Self::Server(_) | Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<SequencerError> for Status {
    fn from(e: SequencerError) -> Self {
        if matches!(e, SequencerError::Database(_)) {
            tracing::warn!(error = %e, "database error answered as UNAVAILABLE");
        }
        // Every error with its code (docs/errors.md), by its gRPC status.
        ordo_proto::errors::status(ordo_proto::errors::generic(e.code()), e.to_string(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_carries_its_error_code() {
        let s = Status::from(SequencerError::NotFound("member x".into()));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "member x");
        assert_eq!(
            ordo_proto::errors::code_of(&s).as_deref(),
            Some("NOT_FOUND")
        );
        let s = Status::from(SequencerError::InvalidArgument("bad".into()));
        assert_eq!(
            ordo_proto::errors::code_of(&s).as_deref(),
            Some("INVALID_ARGUMENT")
        );
    }
}
