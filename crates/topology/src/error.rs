//! The crate's one error type and its one mapping to `tonic::Status`.

use ordo_node::db::Unprovisioned;
use tonic::{Code, Status};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "database {url} is not provisioned for the topology manager: run `ordo topology init --config FILE` first"
    )]
    NotProvisioned { url: String },
    #[error(
        "database {url} has topology schema version {found}, this node needs {expected}: run `ordo topology init --config FILE` with this version"
    )]
    SchemaVersion {
        url: String,
        found: i32,
        expected: i32,
    },
    #[error(
        "key file {key_file} holds the key of {found}, but database {url} belongs to {expected}: use the key file this database was provisioned with"
    )]
    KeyMismatch {
        key_file: String,
        url: String,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Key(#[from] ordo_core::CoreError),
    /// This replica does not hold the topology lease (any more): it must not write.
    #[error("topology manager replica is not active: {0}")]
    Fenced(#[from] ordo_lease::FenceError),
    #[error("topology manager lease: {0}")]
    Lease(#[from] ordo_lease::LeaseError),
    #[error("topology database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("topology schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("topology manager I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("topology manager gRPC server: {0}")]
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
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    /// This replica is passive (the message names the active one).
    #[error("{0}")]
    Passive(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

impl TopologyError {
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
            Self::InvalidArgument(_)
            | Self::Config(_)
            | Self::Key(_)
            | Self::Lease(ordo_lease::LeaseError::Config(_)) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_)
            | Self::NotProvisioned { .. }
            | Self::SchemaVersion { .. }
            | Self::KeyMismatch { .. } => Code::FailedPrecondition,
            // The database, the sequencer or this node is (maybe briefly) unavailable:
            // retrying is safe, because a change that was proposed is re-sent with the same
            // message id and applied once.
            // So is a deposed replica: the active one finishes (or refuses) the change.
            Self::Database(_)
            | Self::Unavailable(_)
            | Self::Passive(_)
            | Self::Io(_)
            | Self::Fenced(_)
            | Self::Lease(_) => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Migrate(_) | Self::Server(_) | Self::Internal(_) => Code::Internal,
        }
    }
}

impl TopologyError {
    /// The error code clients decide on (docs/errors.md): PASSIVE_REPLICA for a passive
    /// replica, else the code of the gRPC status.
    pub fn error_code(&self) -> ordo_proto::errors::ErrorCode {
        use ordo_proto::errors;
        match self {
            Self::Passive(_) => errors::PASSIVE_REPLICA,
            other => errors::generic(other.code()),
        }
    }
}

impl From<TopologyError> for Status {
    fn from(e: TopologyError) -> Self {
        if matches!(e, TopologyError::Database(_)) {
            tracing::warn!(error = %e, "database error answered as UNAVAILABLE");
        }
        ordo_proto::errors::status(e.error_code(), e.to_string(), None)
    }
}
