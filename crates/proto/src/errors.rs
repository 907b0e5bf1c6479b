//! Error codes clients decide on, never message text (Daml's error codes, adapted). Every
//! error a node answers carries `google.rpc.ErrorInfo` in the status details — `reason`
//! the code id (`PASSIVE_REPLICA`), `domain` [`DOMAIN`], `metadata.category` the code's
//! category — and, where a retry can succeed, `google.rpc.RetryInfo` with the delay.
//! docs/errors.md lists every code.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of ordo's errors.
pub const DOMAIN: &str = "ordo";

/// What kind of failure a code is, and so what a client should do (Daml's categories).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// The request is wrong whatever the ledger's state: fix it.
    InvalidIndependentOfSystemState,
    /// The request does not fit the ledger's current state (a contract no longer active):
    /// retrying as is will fail again.
    InvalidGivenCurrentSystemState,
    /// The request found the resource already there (a duplicate command).
    ResourceExists,
    /// The request names something that is not there.
    ResourceMissing,
    /// Contention (locked contracts, a rate limit): a later retry can succeed.
    ContentionOnSharedResources,
    /// The server cannot serve now (a passive replica, a failover, an overloaded node):
    /// retry, on another replica if there is one.
    TransientServerFailure,
    /// The outcome is unknown (a timeout): retry with the same command id, deduplication
    /// makes it safe.
    DeadlineExceededRequestStateUnknown,
    /// Missing or invalid credentials.
    InvalidAuthenticationCredentials,
    /// Valid credentials without the right.
    InsufficientPermission,
    /// A bug or corruption: report it.
    SystemInternalAssumptionViolated,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidIndependentOfSystemState => "InvalidIndependentOfSystemState",
            Self::InvalidGivenCurrentSystemState => "InvalidGivenCurrentSystemStateOther",
            Self::ResourceExists => "InvalidGivenCurrentSystemStateResourceExists",
            Self::ResourceMissing => "InvalidGivenCurrentSystemStateResourceMissing",
            Self::ContentionOnSharedResources => "ContentionOnSharedResources",
            Self::TransientServerFailure => "TransientServerFailure",
            Self::DeadlineExceededRequestStateUnknown => "DeadlineExceededRequestStateUnknown",
            Self::InvalidAuthenticationCredentials => {
                "AuthInterceptorInvalidAuthenticationCredentials"
            }
            Self::InsufficientPermission => "InsufficientPermission",
            Self::SystemInternalAssumptionViolated => "SystemInternalAssumptionViolated",
        }
    }

    /// Whether a retry of the same request can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::ContentionOnSharedResources
                | Self::TransientServerFailure
                | Self::DeadlineExceededRequestStateUnknown
        )
    }
}

/// An error code: its stable id, category and gRPC status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    pub id: &'static str,
    pub category: Category,
    pub grpc: Code,
}

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $category:ident, $grpc:ident;)*) => {
        $(
            $(#[$doc])*
            pub const $name: ErrorCode = ErrorCode {
                id: stringify!($name),
                category: Category::$category,
                grpc: Code::$grpc,
            };
        )*
        /// Every code, for docs and tests.
        pub const ALL: &[ErrorCode] = &[$($name),*];
    };
}

codes! {
    /// No token, or one that does not verify (expired, not yet valid, wrong audience,
    /// issuer or signature).
    UNAUTHENTICATED = InvalidAuthenticationCredentials, Unauthenticated;
    /// The token does not allow the call (a party it does not cover, no `admin`).
    PERMISSION_DENIED = InsufficientPermission, PermissionDenied;
    /// A malformed request (a bad field, an unknown template or choice, a wrong value).
    INVALID_ARGUMENT = InvalidIndependentOfSystemState, InvalidArgument;
    /// Something the request names does not exist (a template, a choice, a shard).
    NOT_FOUND = ResourceMissing, NotFound;
    /// A contract the command uses is unknown, or not visible to the submitting parties.
    CONTRACT_NOT_FOUND = ResourceMissing, NotFound;
    /// A contract the command uses is no longer active (archived, or consumed earlier in
    /// the same transaction).
    CONTRACT_NOT_ACTIVE = InvalidGivenCurrentSystemState, FailedPrecondition;
    /// No active contract visible to the submitting parties has the key the command or a
    /// choice body fetches or exercises by.
    CONTRACT_KEY_NOT_FOUND = ResourceMissing, NotFound;
    /// The transaction creates a contract whose key an active contract of the template
    /// has already (or a transaction in flight is assigning).
    DUPLICATE_CONTRACT_KEY = ResourceExists, AlreadyExists;
    /// A key lookup's result no longer holds: the key was assigned or freed meanwhile.
    INCONSISTENT_CONTRACT_KEY = InvalidGivenCurrentSystemState, FailedPrecondition;
    /// The user the request names (or the user token's `sub`) does not exist.
    USER_NOT_FOUND = ResourceMissing, NotFound;
    /// A user with the id exists already.
    USER_ALREADY_EXISTS = ResourceExists, AlreadyExists;
    /// A package the command names is not known (not uploaded or not vetted).
    PACKAGE_NOT_FOUND = ResourceMissing, NotFound;
    /// A party the request names is not allocated in the domain.
    PARTY_NOT_KNOWN_ON_LEDGER = ResourceMissing, NotFound;
    /// The same command (application, command id, parties) was submitted already.
    DUPLICATE_COMMAND = ResourceExists, AlreadyExists;
    /// What the request would create exists already (a party, a package).
    ALREADY_EXISTS = ResourceExists, AlreadyExists;
    /// The request does not fit the ledger's state (a contract no longer active, a
    /// precondition of the choice).
    FAILED_PRECONDITION = InvalidGivenCurrentSystemState, FailedPrecondition;
    /// A read from before the offset a participant pruned its logs up to (the message
    /// names it; GetLatestPrunedOffsets gives it): read from that offset on, or take a new
    /// snapshot of the active contracts.
    PARTICIPANT_PRUNED_DATA_ACCESSED = InvalidGivenCurrentSystemState, FailedPrecondition;
    /// The request is over a size or step limit.
    LIMIT_EXCEEDED = InvalidIndependentOfSystemState, ResourceExhausted;
    /// The caller is over its rate limit; retry after the RetryInfo delay.
    THROTTLED = ContentionOnSharedResources, ResourceExhausted;
    /// Contracts of the command are locked by another request in flight.
    LOCKED_CONTRACTS = ContentionOnSharedResources, Aborted;
    /// The confirmation request was not sequenced before its max sequencing time (the
    /// sequencers were unreachable or overloaded): nothing was committed; resubmit.
    NOT_SEQUENCED_TIMEOUT = ContentionOnSharedResources, Aborted;
    /// Not every confirming party answered before the decision time: nothing was
    /// committed; resubmit.
    CONFIRMATION_TIMEOUT = ContentionOnSharedResources, Aborted;
    /// This replica is passive; the message names the active one. Retry on another
    /// replica.
    PASSIVE_REPLICA = TransientServerFailure, Unavailable;
    /// The node cannot serve now (its database or the sequencer unreachable).
    UNAVAILABLE = TransientServerFailure, Unavailable;
    /// No outcome within the deadline; resubmit with the same command id.
    REQUEST_TIMEOUT = DeadlineExceededRequestStateUnknown, DeadlineExceeded;
    /// An internal error.
    INTERNAL = SystemInternalAssumptionViolated, Internal;
}

/// The code with id `id`, if ordo has one.
pub fn by_id(id: &str) -> Option<ErrorCode> {
    ALL.iter().copied().find(|c| c.id == id)
}

/// The code of a failure known only by its gRPC code (a rejection recorded in a
/// completion, a status from elsewhere).
pub fn generic(code: Code) -> ErrorCode {
    match code {
        Code::Unauthenticated => UNAUTHENTICATED,
        Code::PermissionDenied => PERMISSION_DENIED,
        Code::InvalidArgument | Code::OutOfRange => INVALID_ARGUMENT,
        Code::NotFound => NOT_FOUND,
        Code::AlreadyExists => ALREADY_EXISTS,
        Code::FailedPrecondition => FAILED_PRECONDITION,
        Code::ResourceExhausted => LIMIT_EXCEEDED,
        Code::Aborted => LOCKED_CONTRACTS,
        Code::Unavailable | Code::Cancelled => UNAVAILABLE,
        Code::DeadlineExceeded => REQUEST_TIMEOUT,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented => {
            INTERNAL
        }
    }
}

/// A status answering with `code`, `message`, its ErrorInfo and, when `retry_after` is
/// given, RetryInfo.
pub fn status(
    code: ErrorCode,
    message: impl Into<String>,
    retry_after: Option<Duration>,
) -> Status {
    let metadata: HashMap<String, String> =
        [("category".to_owned(), code.category.name().to_owned())].into();
    let mut details = ErrorDetails::with_error_info(code.id, DOMAIN, metadata);
    if retry_after.is_some() {
        details.set_retry_info(retry_after);
    }
    Status::with_error_details(code.grpc, message, details)
}

/// The ordo error code id a status carries (its ErrorInfo `reason`), if any.
pub fn code_of(status: &Status) -> Option<String> {
    status
        .get_details_error_info()
        .filter(|info| info.domain == DOMAIN)
        .map(|info| info.reason)
}

/// Whether `status` carries `code`.
pub fn is(status: &Status, code: ErrorCode) -> bool {
    code_of(status).as_deref() == Some(code.id)
}

/// The delay of the status's RetryInfo, if any.
pub fn retry_after(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_carries_its_code_category_and_retry_delay() {
        let s = status(
            THROTTLED,
            "over its limit",
            Some(Duration::from_millis(250)),
        );
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "over its limit");
        assert_eq!(code_of(&s).as_deref(), Some("THROTTLED"));
        assert!(is(&s, THROTTLED) && !is(&s, LIMIT_EXCEEDED));
        assert_eq!(retry_after(&s), Some(Duration::from_millis(250)));
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.metadata["category"], "ContentionOnSharedResources");
        // A status without details has no code.
        assert_eq!(code_of(&Status::unavailable("x")), None);
        let ids: std::collections::BTreeSet<_> = ALL.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), ALL.len(), "ids are unique");
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    /// docs/errors.md lists every code with its gRPC status and category.
    #[test]
    fn the_error_page_lists_every_code() {
        let page = include_str!("../../../docs/errors.md");
        for code in ALL {
            let grpc = format!("{:?}", code.grpc);
            let row = page
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", code.id)))
                .unwrap_or_else(|| panic!("docs/errors.md has no row for {}", code.id));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(
                cells[2].replace('_', "").to_lowercase(),
                grpc.to_lowercase(),
                "{}: {row}",
                code.id
            );
            assert_eq!(cells[3], code.category.name(), "{}: {row}", code.id);
        }
    }
}
