//! The crate's one error type. A run that starts and finishes never fails because a
//! command failed (that is counted in the report); these are the reasons a run cannot
//! start, cannot set up, or cannot be trusted.

use std::path::PathBuf;

use ordo_ledger_client::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options do not describe a run (exit code 2 at the command line).
    #[error("{0}")]
    Usage(String),
    /// The network file cannot carry this run (e.g. `--via http` without a gateway).
    #[error("network file {}: {reason}", path.display())]
    Network { path: PathBuf, reason: String },
    /// A Ledger API call of the setup or the cross-check failed.
    #[error("{what}: {source}")]
    Ledger {
        what: String,
        #[source]
        source: LedgerError,
    },
    /// A JSON API call of the setup failed.
    #[error("{what}: {reason}")]
    Gateway { what: String, reason: String },
    /// Setup did not reach the state the run needs in time.
    #[error("setup: {0}")]
    Setup(String),
    /// The report's figures do not add up: a bug of the load generator, never of the
    /// ledger. Nothing is printed from such a run.
    #[error("accounting: {0}")]
    Accounting(String),
    /// The shards' update logs do not hold exactly what the run reports committed.
    #[error("cross-check failed: {0}")]
    CrossCheck(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LoadError {
    /// Whether the command line or the network file is at fault (fix it and run again),
    /// rather than the run.
    pub fn is_usage(&self) -> bool {
        matches!(self, LoadError::Usage(_) | LoadError::Network { .. })
    }

    pub(crate) fn ledger(what: impl Into<String>) -> impl FnOnce(LedgerError) -> Self {
        let what = what.into();
        move |source| LoadError::Ledger { what, source }
    }
}
