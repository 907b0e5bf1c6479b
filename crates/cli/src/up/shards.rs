//! The participant shards of `ordo up`: `shard-1` and `shard-2`, and every shard added
//! while a network ran (`ordo admin shard add`), which `DIR/shards.json` keeps so that the
//! next `ordo up` on the directory starts them again.
//!
//! Shard `shard-<n>` is served by the participant member `participant-<n>`, whose replicas
//! are `participant-<n>-a`, `participant-<n>-b`, …, on the database `ordo_shard_<n>`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::write_atomically;

/// The most replicas a shard may have: one active, the others passive and warm. Each is a
/// process with its own database pool, and two already ride through a failover.
pub const MAX_REPLICAS: usize = 3;
/// The replicas `ordo up` gives a shard unless told otherwise.
pub const DEFAULT_REPLICAS: usize = 2;
/// Replica names end in these: `participant-3-a`, …
const SUFFIXES: [&str; MAX_REPLICAS] = ["a", "b", "c"];
/// The shards every network has.
const INITIAL: [u32; 2] = [1, 2];
/// The file listing the added shards, in the data directory.
const FILE: &str = "shards.json";

/// Why a shard cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error(
        "invalid shard name {0:?}: use shard-<n> with n a whole number from 1 (no leading \
         zero), e.g. shard-3; it names the shard's participant (participant-<n>) and its \
         database (ordo_shard_<n>)"
    )]
    Name(String),
    #[error("invalid replica count {0}: a shard has 1 to {MAX_REPLICAS} replicas")]
    Replicas(usize),
}

/// A participant shard and how many replicas serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Listed", into = "Listed")]
pub struct Shard {
    pub number: u32,
    pub replicas: usize,
}

/// A shard as `shards.json` lists it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listed {
    name: String,
    replicas: usize,
}

impl TryFrom<Listed> for Shard {
    type Error = ShardError;

    fn try_from(l: Listed) -> Result<Self, ShardError> {
        Shard::new(&l.name, l.replicas)
    }
}

impl From<Shard> for Listed {
    fn from(s: Shard) -> Self {
        Listed {
            name: s.name(),
            replicas: s.replicas,
        }
    }
}

impl Shard {
    /// Shard `name` (`shard-<n>`) with `replicas` replicas, or why there cannot be one.
    pub fn new(name: &str, replicas: usize) -> Result<Self, ShardError> {
        let number = name
            .strip_prefix("shard-")
            .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| ShardError::Name(name.to_owned()))?;
        if !(1..=MAX_REPLICAS).contains(&replicas) {
            return Err(ShardError::Replicas(replicas));
        }
        Ok(Self { number, replicas })
    }

    /// `shard-1` and `shard-2`, with the default replicas.
    pub fn initial() -> Vec<Self> {
        INITIAL
            .iter()
            .map(|&number| Self {
                number,
                replicas: DEFAULT_REPLICAS,
            })
            .collect()
    }

    pub fn name(&self) -> String {
        format!("shard-{}", self.number)
    }

    /// The participant member serving it (its replicas share this `node_name`).
    pub fn member(&self) -> String {
        format!("participant-{}", self.number)
    }

    /// `participant-<n>-a`, `participant-<n>-b`, …
    pub fn replica_names(&self) -> Vec<String> {
        SUFFIXES[..self.replicas]
            .iter()
            .map(|s| format!("{}-{s}", self.member()))
            .collect()
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddedFile {
    shards: Vec<Shard>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The shards added to the network of `dir` (none when the file is missing).
pub fn added(dir: &Path) -> anyhow::Result<Vec<Shard>> {
    let path = path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let file: AddedFile = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a list of added shards (`{{\"shards\": [{{\"name\": \
                     \"shard-3\", \"replicas\": 2}}]}}`); fix it",
                    path.display()
                )
            })?;
            Ok(file.shards)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records `shard` as added to the network of `dir` (atomically).
pub fn record(dir: &Path, shard: &Shard) -> anyhow::Result<()> {
    let mut file = AddedFile {
        shards: added(dir)?,
    };
    file.shards.retain(|s| s.number != shard.number);
    file.shards.push(shard.clone());
    write_atomically(&path(dir), &serde_json::to_vec_pretty(&file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_replica_counts_are_checked() {
        let s = Shard::new("shard-3", 2).unwrap();
        assert_eq!(s.name(), "shard-3");
        assert_eq!(s.member(), "participant-3");
        assert_eq!(s.replica_names(), ["participant-3-a", "participant-3-b"]);
        assert_eq!(
            Shard::new("shard-12", 3).unwrap().replica_names(),
            ["participant-12-a", "participant-12-b", "participant-12-c"]
        );
        for bad in [
            "",
            "shard",
            "shard-",
            "shard-0",
            "shard-03",
            "shard-x",
            "Shard-3",
            "shard-3a",
            "shard--3",
            "shard-+3",
            "shard-99999999999",
            "east",
        ] {
            assert_eq!(
                Shard::new(bad, 2),
                Err(ShardError::Name(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(Shard::new("shard-3", 0), Err(ShardError::Replicas(0)));
        assert_eq!(Shard::new("shard-3", 4), Err(ShardError::Replicas(4)));
        let e = ShardError::Replicas(4).to_string();
        assert!(e.contains("1 to 3"), "{e}");
    }

    #[test]
    fn added_shards_are_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(added(dir.path()).unwrap().is_empty());
        record(dir.path(), &Shard::new("shard-3", 2).unwrap()).unwrap();
        record(dir.path(), &Shard::new("shard-4", 1).unwrap()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("shards.json")).unwrap();
        assert!(text.contains("\"name\": \"shard-3\""), "{text}");
        assert_eq!(
            added(dir.path()).unwrap(),
            [
                Shard::new("shard-3", 2).unwrap(),
                Shard::new("shard-4", 1).unwrap()
            ]
        );
        std::fs::write(
            dir.path().join("shards.json"),
            r#"{"shards": [{"name": "shard-x", "replicas": 2}]}"#,
        )
        .unwrap();
        let e = format!("{:#}", added(dir.path()).unwrap_err());
        assert!(e.contains("shards.json") && e.contains("shard-x"), "{e}");
    }
}
