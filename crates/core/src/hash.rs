use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::CoreError;

/// A SHA-256 content hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Hash of several parts, each length-prefixed so that part boundaries matter.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| CoreError::InvalidHash(s.to_owned()))?;
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(
            Hash::of_parts([b"ab".as_slice(), b"c".as_slice()]),
            Hash::of_parts([b"a".as_slice(), b"bc".as_slice()])
        );
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash::of(b"ordo");
        assert_eq!(h.to_hex().parse::<Hash>(), Ok(h));
        assert!("zz".parse::<Hash>().is_err());
    }
}
