use std::collections::BTreeSet;

use ordo_core::PartyId;
use thiserror::Error;

use crate::types::{ContractId, TemplateId};

/// The category of a [`LedgerError`], which the gRPC and HTTP layers map to their status
/// codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Ill-typed values, malformed identifiers or packages, non-conforming views.
    InvalidArgument,
    /// Unknown package, template, choice or contract.
    NotFound,
    /// An action lacks the authorization of some required party.
    PermissionDenied,
    /// The ledger state or the template logic rejects the command: `ensure` false, `abort`,
    /// a contract already consumed, a script failure, a conflicting package.
    FailedPrecondition,
    /// A step, size, depth or node limit was hit.
    ResourceExhausted,
}

/// Every error of the ledger core; each variant names the offending package, template,
/// choice, field or contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    #[error("invalid package {package}: {message}")]
    InvalidPackage { package: String, message: String },
    #[error(
        "package name {name} already bound to {existing}; upload it under a new name to change it"
    )]
    PackageConflict { name: String, existing: String },
    #[error("{path}: {message}")]
    Type { path: String, message: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidIdentifier {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("unknown package {0}")]
    UnknownPackage(String),
    #[error("unknown template {0}")]
    UnknownTemplate(TemplateId),
    #[error("template {template} has no choice {choice}")]
    UnknownChoice {
        template: TemplateId,
        choice: String,
    },
    #[error("contract {0} not found (unknown, or not visible to the submitting parties)")]
    ContractNotFound(ContractId),
    #[error("no active contract of {template} with key {key} (or none the submitting parties see)")]
    ContractKeyNotFound { template: TemplateId, key: String },
    #[error("an active contract of {template} has key {key} already")]
    DuplicateContractKey { template: TemplateId, key: String },
    #[error("contract {contract_id} is of template {actual}, not {expected}")]
    TemplateMismatch {
        contract_id: ContractId,
        expected: Box<TemplateId>,
        actual: Box<TemplateId>,
    },
    #[error(
        "{action} requires the authorization of {} but only {} authorized it",
        parties(.required),
        parties(.authorizers)
    )]
    NotAuthorized {
        action: String,
        required: BTreeSet<PartyId>,
        authorizers: BTreeSet<PartyId>,
    },
    #[error("template {template}: ensure condition is false for the payload")]
    EnsureFailed { template: TemplateId },
    #[error("{context}: aborted: {message}")]
    Aborted { context: String, message: String },
    #[error("contract {0} was already consumed earlier in this transaction")]
    ContractNotActive(ContractId),
    #[error("{context}: script failed: {message}")]
    Script { context: String, message: String },
    #[error("{context}: step limit of {limit} operations exceeded")]
    StepLimit { context: String, limit: u64 },
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded { what: String, limit: u64 },
    #[error("{context}: {message}")]
    ScriptLimit { context: String, message: String },
    #[error("view does not conform: {0}")]
    Conformance(String),
    #[error("malformed view: {0}")]
    MalformedView(String),
}

fn parties(set: &BTreeSet<PartyId>) -> String {
    if set.is_empty() {
        return "nobody".to_owned();
    }
    set.iter()
        .map(PartyId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl LedgerError {
    pub fn kind(&self) -> ErrorKind {
        use LedgerError::*;
        match self {
            InvalidPackage { .. }
            | Type { .. }
            | InvalidIdentifier { .. }
            | TemplateMismatch { .. }
            | Conformance(_)
            | MalformedView(_) => ErrorKind::InvalidArgument,
            UnknownPackage(_)
            | UnknownTemplate(_)
            | UnknownChoice { .. }
            | ContractNotFound(_)
            | ContractKeyNotFound { .. } => ErrorKind::NotFound,
            NotAuthorized { .. } => ErrorKind::PermissionDenied,
            PackageConflict { .. }
            | EnsureFailed { .. }
            | Aborted { .. }
            | ContractNotActive(_)
            | DuplicateContractKey { .. }
            | Script { .. } => ErrorKind::FailedPrecondition,
            StepLimit { .. } | LimitExceeded { .. } | ScriptLimit { .. } => {
                ErrorKind::ResourceExhausted
            }
        }
    }

    pub(crate) fn type_error(path: &str, message: impl Into<String>) -> Self {
        LedgerError::Type {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
