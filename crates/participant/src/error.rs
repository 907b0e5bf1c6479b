//! The crate's one error type and its one mapping to `tonic::Status`.

use tonic::{Code, Status};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "database {url} is not provisioned for a participant: run `ordo participant init --config FILE` first"
    )]
    NotProvisioned { url: String },
    #[error(
        "database {url} has participant schema version {found}, this node needs {expected}: run `ordo participant init --config FILE` with this version"
    )]
    SchemaVersion {
        url: String,
        found: i32,
        expected: i32,
    },
    #[error(
        "database {url} belongs to participant {found}, not {expected}: each shard needs its own database and key"
    )]
    WrongDatabase {
        url: String,
        found: String,
        expected: String,
    },
    #[error("participant database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("participant schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("participant key: {0}")]
    Key(#[from] ordo_core::CoreError),
    #[error("participant I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("sequencer: {0}")]
    Sequencer(#[from] ordo_sequencer_client::ClientError),
    /// A write refused by the lease fence: this replica is not (or no longer) the active
    /// one; its term is over.
    #[error("this participant replica may not write: {0}")]
    Fenced(#[from] ordo_lease::FenceError),
    #[error("participant replica lease: {0}")]
    Lease(#[from] ordo_lease::LeaseError),
    #[error("participant gRPC server: {0}")]
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
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    /// This replica is passive (the message names the active one).
    #[error("{0}")]
    Passive(String),
    /// The command was submitted already.
    #[error("{0}")]
    Duplicate(String),
    /// A read from before the pruned offset (the message names it).
    #[error("{0}")]
    Pruned(String),
    /// A failure with a specific error code (`CONTRACT_NOT_FOUND`, …), answered with the
    /// code's gRPC status.
    #[error("{1}")]
    Coded(ordo_proto::errors::ErrorCode, String),
    #[error("{0}")]
    Internal(String),
}

impl ParticipantError {
    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Self::Coded(code, _) => code.grpc,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::InvalidArgument(_) | Self::Config(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) | Self::Duplicate(_) => Code::AlreadyExists,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::FailedPrecondition(_)
            | Self::Pruned(_)
            | Self::NotProvisioned { .. }
            | Self::SchemaVersion { .. }
            | Self::WrongDatabase { .. } => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Database(_)
            | Self::Unavailable(_)
            | Self::Passive(_)
            | Self::Io(_)
            | Self::Sequencer(_)
            | Self::Fenced(_)
            | Self::Lease(_) => Code::Unavailable,
            Self::Migrate(_) | Self::Server(_) | Self::Internal(_) | Self::Key(_) => Code::Internal,
        }
    }

    /// The error code clients decide on (docs/errors.md).
    pub fn error_code(&self) -> ordo_proto::errors::ErrorCode {
        use ordo_proto::errors;
        match self {
            Self::Passive(_) => errors::PASSIVE_REPLICA,
            Self::Duplicate(_) => errors::DUPLICATE_COMMAND,
            Self::Pruned(_) => errors::PARTICIPANT_PRUNED_DATA_ACCESSED,
            Self::Coded(code, _) => *code,
            other => errors::generic(other.code()),
        }
    }

    /// A failure that would repeat on every retry and on every replica of the shard
    /// (Postgres refusing an event's data), as opposed to a transient one (a lost
    /// connection, a timeout): the event processor skips the event instead of retrying it
    /// forever.
    pub fn is_poison(&self) -> bool {
        matches!(self, Self::Database(e) if ordo_node::db::is_data_error(e))
    }

    /// Maps a ledger-core error by its kind, keeping its message (which names the
    /// offending template, choice, contract or party).
    pub fn from_ledger(e: &ordo_ledger::LedgerError) -> Self {
        use ordo_ledger::{ErrorKind as K, LedgerError as L};
        use ordo_proto::errors;
        let m = e.to_string();
        let specific = match e {
            L::ContractNotFound(_) => Some(errors::CONTRACT_NOT_FOUND),
            L::ContractNotActive(_) => Some(errors::CONTRACT_NOT_ACTIVE),
            L::UnknownPackage(_) => Some(errors::PACKAGE_NOT_FOUND),
            L::ContractKeyNotFound { .. } => Some(errors::CONTRACT_KEY_NOT_FOUND),
            L::DuplicateContractKey { .. } => Some(errors::DUPLICATE_CONTRACT_KEY),
            _ => None,
        };
        if let Some(code) = specific {
            return Self::Coded(code, m);
        }
        match e.kind() {
            K::InvalidArgument => Self::InvalidArgument(m),
            K::NotFound => Self::NotFound(m),
            K::PermissionDenied => Self::PermissionDenied(m),
            K::FailedPrecondition => Self::FailedPrecondition(m),
            K::ResourceExhausted => Self::ResourceExhausted(m),
        }
    }
}

impl From<ParticipantError> for Status {
    fn from(e: ParticipantError) -> Self {
        if matches!(
            e,
            ParticipantError::Database(_) | ParticipantError::Internal(_)
        ) {
            tracing::warn!(error = %e, "internal error answered to a Ledger API client");
        }
        ordo_proto::errors::status(e.error_code(), e.to_string(), None)
    }
}
