//! What ordo's members say to each other through the sequencer (DESIGN §3–§6).
//!
//! Every envelope's content is one [`SignedMessage`]: a JSON body naming its signer, and
//! the signer's ed25519 signature over it. The sequencer never looks inside; recipients
//! verify the signature against the signer's key from topology before acting on it.
//!
//! - [`topology`]: topology transactions, signed by the topology manager and broadcast;
//!   every member folds them, in sequencing order, into a [`TopologyState`].
//! - [`merkle`]: what binds a request's views and informee tree to one root hash.
//! - [`message`]: the two-phase commit: a confirmation request (views to the informee
//!   participants, the informee tree to the mediator), confirmation responses, verdicts,
//!   and time proofs.

pub mod error;
pub mod frame;
pub mod grouping;
pub mod merkle;
pub mod message;
pub mod topology;

pub use error::ProtocolError;
pub use frame::SignedMessage;
pub use merkle::{BindingError, ViewCommitment};
pub use message::{
    ConfirmationResponse, InformeeTree, Message, RequestId, ResponseOutcome, TimeProof, Verdict,
    VerdictOutcome, ViewMessage,
};
pub use topology::{
    DomainParameters, MemberRole, TopologyChange, TopologyState, TopologyTransaction, User,
    UserRight,
};
