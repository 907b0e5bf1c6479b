use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A party: a name unique in the domain, 1 to 64 of `[A-Za-z0-9_-]` (`alice`, `bank-1`).
/// Parties are hosted by exactly one participant shard; the mapping is topology state.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartyId(String);

impl PartyId {
    pub fn new(name: &str) -> Result<Self, CoreError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(CoreError::InvalidPartyId(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyId({})", self.0)
    }
}

impl FromStr for PartyId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for PartyId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<PartyId> for String {
    fn from(p: PartyId) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert_eq!(PartyId::new("alice").unwrap().as_str(), "alice");
        assert!(PartyId::new("Bank_1-x").is_ok());
        for bad in ["", "a b", "a::b", "é", &"x".repeat(65)] {
            assert!(PartyId::new(bad).is_err(), "{bad:?} should be rejected");
        }
        let json = serde_json::to_string(&PartyId::new("bob").unwrap()).unwrap();
        assert_eq!(json, "\"bob\"");
        assert!(serde_json::from_str::<PartyId>("\"no spaces\"").is_err());
    }
}
