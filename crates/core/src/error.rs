use thiserror::Error;

/// Errors of the shared domain types. Each names the offending value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    #[error(
        "invalid member id {0:?}: expected `name::fingerprint` with name [a-z0-9._-]{{1,64}} and a 32-hex-digit fingerprint"
    )]
    InvalidMemberId(String),
    #[error("invalid party id {0:?}: use 1 to 64 of [A-Za-z0-9_-]")]
    InvalidPartyId(String),
    #[error("invalid member name {0:?}: use 1 to 64 of [a-z0-9._-]")]
    InvalidMemberName(String),
    #[error("invalid ed25519 public key: {0}")]
    InvalidPublicKey(String),
    #[error("invalid ed25519 signature: {0}")]
    InvalidSignature(String),
    #[error("signature does not verify against the key of {0}")]
    SignatureMismatch(String),
    #[error("invalid hash {0:?}: expected 64 hex digits")]
    InvalidHash(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("cannot encode the key: {0}")]
    KeyEncoding(String),
}
