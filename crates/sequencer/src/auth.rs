//! Stateless member authentication: challenges and tokens are HMAC-signed with the domain's
//! secret (kept in the sequencer database), so any node verifies what another issued.
//! Acknowledgements are signed by the member's own key, so a stolen token cannot move the
//! pruning bound. Pure code over bytes and times; the gRPC adapter supplies the clock and
//! the nonce, and runs the signature checks off the async workers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ordo_core::{PublicKey, Signature};
use sha2::Sha256;

use crate::error::SequencerError;

type HmacSha256 = Hmac<Sha256>;

/// What a member signs: this context followed by the challenge bytes.
pub const SIGNING_CONTEXT: &[u8] = b"ordo-sequencer-auth-v1";
const MAC_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const CHALLENGE_TAG: &[u8] = b"ordo-challenge\0";
const TOKEN_TAG: &[u8] = b"ordo-token\0";

/// The bytes a member signs to answer `challenge`.
pub fn signed_message(challenge: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, challenge].concat()
}

/// The bytes a member signs to acknowledge: defined in `ordo-core`, which the sequencer
/// client shares, so the two sides cannot disagree on the format.
pub use ordo_core::sequencing::{ACK_CONTEXT, ack_message};

/// Checks that `signature` is `member`'s signature, by its registered `public_key`, over
/// [`ack_message`]`(member, timestamp)`. Every refusal is UNAUTHENTICATED.
pub fn verify_ack(
    public_key: &[u8],
    member: &str,
    timestamp: i64,
    signature: &[u8],
) -> Result<(), SequencerError> {
    if signature.is_empty() {
        return Err(unauthenticated(format!(
            "the acknowledgement of {timestamp} by {member} is not signed: sign \
             \"{}\" || member || timestamp (i64 big endian) with the member's registered key",
            String::from_utf8_lossy(ACK_CONTEXT)
        )));
    }
    let key = PublicKey::from_bytes(public_key)
        .map_err(|e| SequencerError::Internal(format!("registered key of {member}: {e}")))?;
    let signature = Signature::from_bytes(signature).map_err(|e| {
        unauthenticated(format!(
            "the acknowledgement of {timestamp} by {member} has an {e}"
        ))
    })?;
    key.verify(&ack_message(member, timestamp), &signature)
        .map_err(|_| {
            unauthenticated(format!(
                "the signature of the acknowledgement of {timestamp} by {member} does not verify \
                 with the member's registered key: it must sign this member and this timestamp"
            ))
        })
}

/// Issues and verifies challenges and tokens with the domain's secret.
#[derive(Clone)]
pub struct Authenticator {
    secret: Vec<u8>,
}

fn unauthenticated(msg: impl Into<String>) -> SequencerError {
    SequencerError::Unauthenticated(msg.into())
}

impl Authenticator {
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret }
    }

    fn mac(&self, tag: &[u8], body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(tag);
        mac.update(body);
        mac
    }

    /// `nonce ‖ expires_at (i64 BE) ‖ member ‖ HMAC`.
    pub fn challenge(&self, member: &str, nonce: [u8; NONCE_LEN], expires_at: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(NONCE_LEN + 8 + member.len() + MAC_LEN);
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&expires_at.to_be_bytes());
        body.extend_from_slice(member.as_bytes());
        let tag = self.mac(CHALLENGE_TAG, &body).finalize().into_bytes();
        body.extend_from_slice(&tag);
        body
    }

    /// Checks that `challenge` was issued by this domain for `member` and is not stale.
    pub fn verify_challenge(
        &self,
        member: &str,
        challenge: &[u8],
        now: i64,
    ) -> Result<(), SequencerError> {
        let bad = || unauthenticated(format!("invalid challenge for member {member}"));
        if challenge.len() < NONCE_LEN + 8 + MAC_LEN {
            return Err(bad());
        }
        let (body, tag) = challenge.split_at(challenge.len() - MAC_LEN);
        self.mac(CHALLENGE_TAG, body)
            .verify_slice(tag)
            .map_err(|_| bad())?;
        let expires_at = read_i64(&body[NONCE_LEN..NONCE_LEN + 8]);
        if &body[NONCE_LEN + 8..] != member.as_bytes() {
            return Err(bad());
        }
        if now > expires_at {
            return Err(unauthenticated(format!(
                "challenge for member {member} expired at {expires_at}: request a new one"
            )));
        }
        Ok(())
    }

    /// `base64url(expires_at (i64 BE) ‖ member ‖ HMAC)`.
    pub fn token(&self, member: &str, expires_at: i64) -> String {
        let mut body = Vec::with_capacity(8 + member.len() + MAC_LEN);
        body.extend_from_slice(&expires_at.to_be_bytes());
        body.extend_from_slice(member.as_bytes());
        let tag = self.mac(TOKEN_TAG, &body).finalize().into_bytes();
        body.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The member a valid, unexpired token was issued to.
    /// The member a token was issued to, and when it expires (microseconds).
    pub fn verify_token(&self, token: &str, now: i64) -> Result<(String, i64), SequencerError> {
        let bad = || unauthenticated("invalid token: authenticate again");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        if raw.len() < 8 + MAC_LEN + 1 {
            return Err(bad());
        }
        let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
        self.mac(TOKEN_TAG, body)
            .verify_slice(tag)
            .map_err(|_| bad())?;
        let expires_at = read_i64(&body[..8]);
        let member = String::from_utf8(body[8..].to_vec()).map_err(|_| bad())?;
        if now > expires_at {
            return Err(unauthenticated(format!(
                "token of {member} expired at {expires_at}: authenticate again"
            )));
        }
        Ok((member, expires_at))
    }
}

fn read_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    i64::from_be_bytes(a)
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, SequencerError> {
    let h = header.ok_or_else(|| {
        unauthenticated("missing `authorization: Bearer <token>` metadata: authenticate first")
    })?;
    h.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("authorization metadata must be `Bearer <token>`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "alice::00112233445566778899aabbccddeeff";

    #[test]
    fn challenge_verifies_on_another_node_with_the_same_secret() {
        let a = Authenticator::new(b"secret".to_vec());
        let b = Authenticator::new(b"secret".to_vec());
        let ch = a.challenge(M, [7; 16], 1000);
        assert!(b.verify_challenge(M, &ch, 999).is_ok());
        assert!(b.verify_challenge(M, &ch, 1000).is_ok());
    }

    #[test]
    fn challenge_rejects_expiry_other_member_tampering_and_other_secret() {
        let a = Authenticator::new(b"secret".to_vec());
        let ch = a.challenge(M, [7; 16], 1000);
        let err = a.verify_challenge(M, &ch, 1001).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(
            a.verify_challenge("bob::00112233445566778899aabbccddeeff", &ch, 0)
                .is_err()
        );
        let mut t = ch.clone();
        t[17] ^= 1;
        assert!(a.verify_challenge(M, &t, 0).is_err());
        assert!(a.verify_challenge(M, &ch[..10], 0).is_err());
        let other = Authenticator::new(b"other".to_vec());
        assert!(other.verify_challenge(M, &ch, 0).is_err());
    }

    #[test]
    fn token_round_trip_and_expiry() {
        let a = Authenticator::new(b"k".to_vec());
        let t = a.token(M, 50);
        assert_eq!(a.verify_token(&t, 50).unwrap(), (M.to_owned(), 50));
        assert!(a.verify_token(&t, 51).is_err());
        assert!(
            Authenticator::new(b"j".to_vec())
                .verify_token(&t, 0)
                .is_err()
        );
        assert!(a.verify_token("not base64!", 0).is_err());
        assert!(a.verify_token("", 0).is_err());
    }

    #[test]
    fn a_challenge_is_not_a_token() {
        // Domain separation: HMAC tags differ, so one can never stand in for the other.
        let a = Authenticator::new(b"k".to_vec());
        let ch = a.challenge(M, [0; 16], i64::MAX);
        assert!(a.verify_token(&URL_SAFE_NO_PAD.encode(&ch), 0).is_err());
        let tok = URL_SAFE_NO_PAD.decode(a.token(M, i64::MAX)).unwrap();
        assert!(a.verify_challenge(M, &tok, 0).is_err());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert!(bearer(None).is_err());
        assert!(bearer(Some("Basic abc")).is_err());
        assert!(bearer(Some("Bearer ")).is_err());
    }

    #[test]
    fn acknowledgements_verify_only_with_the_members_key_member_and_timestamp() {
        use ordo_core::KeyPair;
        let key = KeyPair::generate();
        let public = key.public().as_bytes().to_vec();
        let sig = |m: &str, t: i64| key.sign(&ack_message(m, t)).to_bytes().to_vec();
        assert!(verify_ack(&public, M, 42, &sig(M, 42)).is_ok());

        let refused = |signature: &[u8], needle: &str| {
            let err = verify_ack(&public, M, 42, signature).unwrap_err();
            assert!(matches!(err, SequencerError::Unauthenticated(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
            assert!(err.to_string().contains(M), "{err} names no member");
        };
        refused(&[], "not signed");
        refused(&[1; 10], "expected 64 bytes");
        refused(&sig(M, 41), "does not verify");
        refused(
            &sig("bob::00112233445566778899aabbccddeeff", 42),
            "does not verify",
        );
        let other = KeyPair::generate().sign(&ack_message(M, 42));
        refused(&other.to_bytes(), "does not verify");
        // The challenge context cannot stand in for the acknowledgement's.
        let mut auth = signed_message(M.as_bytes());
        auth.extend_from_slice(&42i64.to_be_bytes());
        refused(&key.sign(&auth).to_bytes(), "does not verify");
    }

    #[test]
    fn signed_message_prefixes_context() {
        assert_eq!(signed_message(b"xy"), b"ordo-sequencer-auth-v1xy".to_vec());
    }
}
