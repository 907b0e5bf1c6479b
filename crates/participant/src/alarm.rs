//! Alarms: what an honest member never sends, seen by this participant (DESIGN §4, *Trust*
//! and *Poison events*). Each is logged at error level with the event and the sender, and
//! counted in `ordo_participant_alarms_total{kind}`; processing goes on with the next
//! message. docs/security.md lists the kinds and what each means for an operator.

use ordo_core::{MemberId, Timestamp};

/// What was wrong. [`Alarm::kind`] is the stable label operators alert on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alarm {
    /// An envelope that is no signed protocol message.
    MalformedMessage,
    /// An envelope larger than the domain's `max_request_bytes`: refused undecoded.
    OversizedMessage,
    /// A message signed by another member than the one that sent it.
    SignerNotSender,
    /// A message from a member topology does not know (in the role it claims).
    UnknownSigner,
    /// A signature that does not verify.
    BadSignature,
    /// A message of a kind no participant is sent (a response, an informee tree, …).
    UnexpectedMessage,
    /// A verdict signed by a member that is not the domain's mediator.
    VerdictNotFromMediator,
    /// A second view for this participant in one request.
    DuplicateView,
    /// A view that does not decode, or is not a well-formed part of a transaction.
    MalformedView,
    /// A view that does not hash to the request's root.
    RootHashMismatch,
    /// Any other fault in how the view is bound to its request.
    MalformedRequest,
    /// The informee tree declares other informees or confirming parties for the view than
    /// its actions require.
    ConfirmationPolicy,
    /// A view submitted for parties its sender does not host.
    UnauthorizedSubmitter,
    /// A view whose re-interpretation differs from it, or that is not authorized.
    Conformance,
    /// A view whose re-interpretation exceeds the domain's step budget.
    StepBudget,
    /// A view that creates a contract id this shard already knows (a replay).
    ContractIdReuse,
    /// A verdict naming another root hash than the request this participant saw.
    VerdictRootMismatch,
    /// An Approve for a request this participant rejected: it is not applied here.
    VerdictContradictsChecks,
    /// A topology transaction of the topology manager that the fold refuses.
    TopologyRefused,
    /// A deterministic failure while writing an event's effects: the event was skipped.
    PoisonEvent,
    /// The checks of a view panicked (a defect): the view is rejected.
    CheckPanicked,
}

impl Alarm {
    /// Every kind, for the counter's series registered at 0 (`metrics::describe`).
    pub const ALL: [Alarm; 21] = [
        Self::MalformedMessage,
        Self::OversizedMessage,
        Self::SignerNotSender,
        Self::UnknownSigner,
        Self::BadSignature,
        Self::UnexpectedMessage,
        Self::VerdictNotFromMediator,
        Self::DuplicateView,
        Self::MalformedView,
        Self::RootHashMismatch,
        Self::MalformedRequest,
        Self::ConfirmationPolicy,
        Self::UnauthorizedSubmitter,
        Self::Conformance,
        Self::StepBudget,
        Self::ContractIdReuse,
        Self::VerdictRootMismatch,
        Self::VerdictContradictsChecks,
        Self::TopologyRefused,
        Self::PoisonEvent,
        Self::CheckPanicked,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            Self::MalformedMessage => "malformed_message",
            Self::OversizedMessage => "oversized_message",
            Self::SignerNotSender => "signer_not_sender",
            Self::UnknownSigner => "unknown_signer",
            Self::BadSignature => "bad_signature",
            Self::UnexpectedMessage => "unexpected_message",
            Self::VerdictNotFromMediator => "verdict_not_from_mediator",
            Self::DuplicateView => "duplicate_view",
            Self::MalformedView => "malformed_view",
            Self::RootHashMismatch => "root_hash_mismatch",
            Self::MalformedRequest => "malformed_request",
            Self::ConfirmationPolicy => "confirmation_policy",
            Self::UnauthorizedSubmitter => "unauthorized_submitter",
            Self::Conformance => "conformance",
            Self::StepBudget => "step_budget",
            Self::ContractIdReuse => "contract_id_reuse",
            Self::VerdictRootMismatch => "verdict_root_mismatch",
            Self::VerdictContradictsChecks => "verdict_contradicts_checks",
            Self::TopologyRefused => "topology_refused",
            Self::PoisonEvent => "poison_event",
            Self::CheckPanicked => "check_panicked",
        }
    }
}

/// An alarm of one event, raised once the event's effects are committed (so that a
/// retried event does not count twice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raised {
    pub alarm: Alarm,
    pub details: String,
}

impl Raised {
    pub fn new(alarm: Alarm, details: impl Into<String>) -> Self {
        Self {
            alarm,
            details: details.into(),
        }
    }
}

/// Logs and counts `raised`, found in the event at `at` sent by `sender`.
pub fn raise(raised: &Raised, at: Timestamp, sender: &MemberId) {
    ordo_node::alarm::raise(
        "ordo_participant_alarms_total",
        raised.alarm.kind(),
        at,
        sender,
        &raised.details,
    );
}
