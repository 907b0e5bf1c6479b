//! The wire form of a signed protocol message:
//! `b"ordo1" ‖ body length (u32, big endian) ‖ body ‖ ed25519 signature (64 bytes)`,
//! where the body is the JSON of [`Body`] and the signature covers
//! `b"ordo-protocol-v1" ‖ body`. Signing the exact bytes that travel means no canonical
//! encoding is needed: a recipient verifies the bytes it got, then parses them.

use ordo_core::{KeyPair, MemberId, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Message, ProtocolError};

const MAGIC: &[u8] = b"ordo1";
const CONTEXT: &[u8] = b"ordo-protocol-v1";

/// The body as received: the message stays raw until [`Message::from_json`] reads it.
#[derive(Deserialize)]
struct Body<'a> {
    signer: MemberId,
    #[serde(borrow)]
    message: &'a RawValue,
}

/// A decoded message whose signature has not been checked yet: call [`verify`] with the
/// signer's key from topology before trusting it.
///
/// [`verify`]: SignedMessage::verify
#[derive(Debug, Clone)]
pub struct SignedMessage {
    pub signer: MemberId,
    pub message: Message,
    body: Vec<u8>,
    signature: Signature,
}

impl SignedMessage {
    /// Signs `message` as `signer` and returns the envelope content.
    pub fn encode(signer: &MemberId, key: &KeyPair, message: &Message) -> Vec<u8> {
        #[derive(Serialize)]
        struct BodyRef<'a> {
            signer: &'a MemberId,
            message: &'a Message,
        }
        // Serialising plain data to a Vec cannot fail.
        let body = serde_json::to_vec(&BodyRef { signer, message }).unwrap_or_default();
        let signature = key.sign(&signed_bytes(&body));
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + body.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&signature.to_bytes());
        out
    }

    /// Parses envelope content. The signature is not checked yet.
    pub fn decode(content: &[u8]) -> Result<Self, ProtocolError> {
        let bad = |what: &str| ProtocolError::Malformed(what.to_owned());
        let rest = content
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not an ordo protocol message (bad magic)"))?;
        if rest.len() < 4 {
            return Err(bad("truncated before the body length"));
        }
        let (len, rest) = rest.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if rest.len() != len + 64 {
            return Err(bad("body length does not match the message size"));
        }
        let (body, sig) = rest.split_at(len);
        let signature = Signature::from_bytes(sig).map_err(|e| bad(&e.to_string()))?;
        let parsed: Body = serde_json::from_slice(body)
            .map_err(|e| ProtocolError::Malformed(format!("body: {e}")))?;
        let message = Message::from_json(parsed.message.get())
            .map_err(|e| ProtocolError::Malformed(format!("message: {e}")))?;
        Ok(Self {
            signer: parsed.signer,
            message,
            body: body.to_vec(),
            signature,
        })
    }

    /// Checks the signature against `key`, which must be the signer's key from topology.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProtocolError> {
        if !self.signer.is_bound_to(key) {
            return Err(ProtocolError::BadSignature {
                signer: self.signer.clone(),
                source: ordo_core::CoreError::SignatureMismatch(format!(
                    "{} is not derived from the key given",
                    self.signer
                )),
            });
        }
        key.verify(&signed_bytes(&self.body), &self.signature)
            .map_err(|source| ProtocolError::BadSignature {
                signer: self.signer.clone(),
                source,
            })
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + body.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TimeProof;

    fn member(key: &KeyPair) -> MemberId {
        MemberId::new("p1", &key.public()).unwrap()
    }

    #[test]
    fn round_trip_and_verify() {
        let key = KeyPair::generate();
        let id = member(&key);
        let msg = Message::TimeProof(TimeProof { nonce: 7 });
        let bytes = SignedMessage::encode(&id, &key, &msg);
        let decoded = SignedMessage::decode(&bytes).unwrap();
        assert_eq!(decoded.signer, id);
        assert!(matches!(
            decoded.message,
            Message::TimeProof(TimeProof { nonce: 7 })
        ));
        decoded.verify(&key.public()).unwrap();
    }

    #[test]
    fn tampering_and_wrong_keys_are_detected() {
        let key = KeyPair::generate();
        let other = KeyPair::generate();
        let id = member(&key);
        let bytes = SignedMessage::encode(&id, &key, &Message::TimeProof(TimeProof { nonce: 1 }));

        let decoded = SignedMessage::decode(&bytes).unwrap();
        assert!(decoded.verify(&other.public()).is_err());

        // Flip the nonce digit inside the body: it still parses but no longer verifies.
        let mut tampered = bytes.clone();
        let pos = tampered.iter().rposition(|b| *b == b'1').unwrap();
        tampered[pos] = b'2';
        let decoded = SignedMessage::decode(&tampered).unwrap();
        assert!(decoded.verify(&key.public()).is_err());

        // A message signed by `other` but claiming to be from `id`.
        let forged =
            SignedMessage::encode(&id, &other, &Message::TimeProof(TimeProof { nonce: 1 }));
        let decoded = SignedMessage::decode(&forged).unwrap();
        assert!(decoded.verify(&key.public()).is_err());
    }

    #[test]
    fn malformed_frames_are_refused() {
        for bad in [&b""[..], b"ordo", b"ordo1\0\0\0\x05abc", b"xxxx1\0\0\0\0"] {
            assert!(SignedMessage::decode(bad).is_err(), "{bad:?}");
        }
    }
}
