use ordo_core::{CoreError, MemberId};
use thiserror::Error;

/// Why a protocol message or topology transaction was refused.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("malformed protocol message: {0}")]
    Malformed(String),
    #[error("protocol message from {signer}: {source}")]
    BadSignature {
        signer: MemberId,
        #[source]
        source: CoreError,
    },
    #[error("protocol message signed by {0}, which topology does not know")]
    UnknownSigner(MemberId),
    #[error("topology transaction {serial}: {reason}")]
    Topology { serial: u64, reason: String },
}
