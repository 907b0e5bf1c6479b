//! Minting Ledger API tokens: for the operator's tools (`ordo token`, the ledger client's
//! network file) and tests. No node signs tokens; nodes only verify them.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::LedgerClaims;

/// A key tokens are signed with, and the header naming it.
pub struct TokenSigner {
    header: Header,
    key: EncodingKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("alg", &self.header.alg)
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// HS256 with a shared secret (only where every verifier may also mint).
    pub fn hs256(secret: &str) -> Self {
        Self {
            header: Header::new(Algorithm::HS256),
            key: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// EdDSA with a PKCS#8 PEM Ed25519 private key.
    pub fn ed25519_pem(pem: &str) -> Result<Self, String> {
        Ok(Self {
            header: Header::new(Algorithm::EdDSA),
            key: EncodingKey::from_ed_pem(pem.as_bytes())
                .map_err(|e| format!("not a PKCS#8 PEM Ed25519 private key: {e}"))?,
        })
    }

    /// RS256 with a PEM RSA private key.
    pub fn rs256_pem(pem: &str) -> Result<Self, String> {
        Ok(Self {
            header: Header::new(Algorithm::RS256),
            key: EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("not a PEM RSA private key: {e}"))?,
        })
    }

    /// The private key in `path` for `algorithm` (`EdDSA` or `RS256`); a file its group
    /// or others may read is refused.
    pub fn from_file(path: &Path, algorithm: &str) -> Result<Self, String> {
        ordo_node::tls::check_private(path).map_err(|e| e.to_string())?;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let signer = match algorithm {
            "EdDSA" => Self::ed25519_pem(&pem),
            "RS256" => Self::rs256_pem(&pem),
            other => Err(format!("{other:?} tokens are not signed with a key file")),
        };
        signer.map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Names the key in the tokens' header (`kid`), for verifiers holding several keys.
    pub fn with_key_id(mut self, kid: impl Into<String>) -> Self {
        self.header.kid = Some(kid.into());
        self
    }

    /// A token with `claims`, expiring at `exp` (seconds since the epoch).
    pub fn mint(&self, claims: &LedgerClaims, exp: u64) -> Result<String, String> {
        #[derive(Serialize)]
        struct WithExp<'a> {
            #[serde(flatten)]
            claims: &'a LedgerClaims,
            exp: u64,
        }
        jsonwebtoken::encode(&self.header, &WithExp { claims, exp }, &self.key)
            .map_err(|e| format!("signing the token failed: {e}"))
    }

    /// A token of arbitrary `claims` (tests of what verifiers refuse; tokens with other
    /// registered claims such as `aud`, `iss`, `nbf`).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
            .map_err(|e| format!("signing the token failed: {e}"))
    }

    /// A token with `claims` valid for `lifetime` from now, and its `exp`.
    pub fn mint_for(
        &self,
        claims: &LedgerClaims,
        lifetime: Duration,
    ) -> Result<(String, u64), String> {
        let exp = expiry_in(lifetime);
        Ok((self.mint(claims, exp)?, exp))
    }
}

/// `exp` for a token valid for `lifetime` from now.
pub fn expiry_in(lifetime: Duration) -> u64 {
    (SystemTime::now() + lifetime)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// An HS256 token with `claims` expiring at `exp`: for tests.
pub fn mint_hs256(secret: &str, claims: &LedgerClaims, exp: u64) -> String {
    TokenSigner::hs256(secret)
        .mint(claims, exp)
        .unwrap_or_default()
}
