use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Hash, PublicKey};

/// The first 16 bytes of the SHA-256 of a member's public key, as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    pub fn of(key: &PublicKey) -> Self {
        let h = Hash::of(key.as_bytes());
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&h.0[..16]);
        Self(fp)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A domain member's id, `name::fingerprint`: the name is for humans, the fingerprint binds
/// the id to the member's ed25519 key so that an id can never be re-bound to another key.
///
/// It keeps its text form: ids are rendered and compared on every send and delivery, and
/// cloning one is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberId {
    text: Arc<str>,
    fingerprint: Fingerprint,
}

impl MemberId {
    pub fn new(name: &str, key: &PublicKey) -> Result<Self, CoreError> {
        validate_name(name)?;
        let fingerprint = Fingerprint::of(key);
        Ok(Self {
            text: format!("{name}::{fingerprint}").into(),
            fingerprint,
        })
    }

    pub fn name(&self) -> &str {
        self.text.split_once("::").map_or("", |(name, _)| name)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this id was derived from `key`.
    pub fn is_bound_to(&self, key: &PublicKey) -> bool {
        self.fingerprint == Fingerprint::of(key)
    }
}

/// Checks a member (or node) name: 1 to 64 of `[a-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CoreError::InvalidMemberName(name.to_owned()))
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({self})")
    }
}

impl FromStr for MemberId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CoreError::InvalidMemberId(s.to_owned());
        let (name, fp) = s.split_once("::").ok_or_else(bad)?;
        validate_name(name).map_err(|_| bad())?;
        if fp.len() != 32 {
            return Err(bad());
        }
        // Lower-case only: upper-case hex would give two spellings of one id.
        if !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(fp, &mut bytes).map_err(|_| bad())?;
        Ok(Self {
            text: s.into(),
            fingerprint: Fingerprint(bytes),
        })
    }
}

impl TryFrom<String> for MemberId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MemberId> for String {
    fn from(id: MemberId) -> Self {
        id.text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

    #[test]
    fn id_is_bound_to_its_key() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        let id = MemberId::new("alice-node", &a.public()).unwrap();
        assert!(id.is_bound_to(&a.public()));
        assert!(!id.is_bound_to(&b.public()));
        assert_eq!(id.to_string().parse::<MemberId>().unwrap(), id);
        assert_eq!(id.name(), "alice-node");
        assert_eq!(id.as_str(), format!("alice-node::{}", id.fingerprint()));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "noseparator",
            "Upper::00112233445566778899aabbccddeeff",
            "a::0011",
            "a::00112233445566778899AABBCCDDEEFF",
            "a::zz112233445566778899aabbccddeeff",
            "::00112233445566778899aabbccddeeff",
        ] {
            assert!(bad.parse::<MemberId>().is_err(), "{bad:?} should not parse");
        }
        assert!(
            "a.b-c_d::00112233445566778899aabbccddeeff"
                .parse::<MemberId>()
                .is_ok()
        );
    }
}
