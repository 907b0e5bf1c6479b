//! The crate's one error type and its one mapping to `tonic::Status`.

use ordo_node::db::Unprovisioned;
use tonic::{Code, Status};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum MediatorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "database {url} is not provisioned for the mediator: run `ordo mediator init --config FILE` first"
    )]
    NotProvisioned { url: String },
    #[error(
        "database {url} has mediator schema version {found}, this node needs {expected}: run `ordo mediator init --config FILE` with this version"
    )]
    SchemaVersion {
        url: String,
        found: i32,
        expected: i32,
    },
    #[error(
        "database {url} was provisioned for mediator {provisioned}, but key file {key_file} belongs to {configured}: point key_file at the key `init` created"
    )]
    WrongKey {
        url: String,
        key_file: String,
        provisioned: String,
        configured: String,
    },
    #[error("mediator key: {0}")]
    Key(#[from] ordo_core::CoreError),
    #[error("mediator database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("mediator schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("mediator state in the database is corrupt: {0}")]
    Corrupt(String),
    /// This replica does not hold the mediator lease (any more): it must not write.
    #[error("mediator replica is not active: {0}")]
    Fenced(#[from] ordo_lease::FenceError),
    #[error("mediator lease: {0}")]
    Lease(#[from] ordo_lease::LeaseError),
    #[error("mediator sequencer client: {0}")]
    Sequencer(#[from] ordo_sequencer_client::ClientError),
    #[error("mediator I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("mediator gRPC server: {0}")]
    Server(String),
    #[error("mediator internal error: {0}")]
    Internal(String),
}

impl MediatorError {
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

    /// A failure that would repeat on every retry and in every replica (Postgres refusing
    /// an event's data), as opposed to a transient one: the event is skipped.
    pub fn is_poison(&self) -> bool {
        matches!(self, Self::Database(e) if ordo_node::db::is_data_error(e))
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Self::Config(_) => Code::InvalidArgument,
            Self::NotProvisioned { .. } | Self::SchemaVersion { .. } | Self::WrongKey { .. } => {
                Code::FailedPrecondition
            }
            Self::Lease(ordo_lease::LeaseError::Config(_)) => Code::InvalidArgument,
            // Deposed or passive: another replica is (or is about to be) active.
            Self::Database(_)
            | Self::Sequencer(_)
            | Self::Io(_)
            | Self::Fenced(_)
            | Self::Lease(_) => Code::Unavailable,
            Self::Key(_)
            | Self::Migrate(_)
            | Self::Corrupt(_)
            | Self::Server(_)
            | Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<MediatorError> for Status {
    fn from(e: MediatorError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
