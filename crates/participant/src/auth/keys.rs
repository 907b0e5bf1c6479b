//! The keys tokens are verified with: an HS256 secret, a PEM public key given inline, or
//! a file holding PEM public keys or a JWKS document, re-read when it changes so that
//! keys rotate without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// How often a key file's modification time is looked at, at most.
pub(crate) const KEY_FILE_CHECK: Duration = Duration::from_secs(1);

/// The keys a token may be signed with, each with its `kid` when the source names one.
pub(crate) struct KeySet {
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl KeySet {
    pub(crate) fn secret(secret: &str) -> Self {
        Self {
            keys: vec![(None, DecodingKey::from_secret(secret.as_bytes()))],
        }
    }

    /// Parses PEM public keys (one or more `-----BEGIN PUBLIC KEY-----` blocks) or, for
    /// text starting with `{`, a JWKS document (`{"keys": [...]}`).
    pub(crate) fn parse(text: &str, algorithm: Algorithm) -> Result<Self, String> {
        let keys = if text.trim_start().starts_with('{') {
            jwks(text, algorithm)?
        } else {
            pem_blocks(text)
                .into_iter()
                .enumerate()
                .map(|(i, block)| {
                    let key = match algorithm {
                        Algorithm::EdDSA => DecodingKey::from_ed_pem(block.as_bytes()),
                        _ => DecodingKey::from_rsa_pem(block.as_bytes()),
                    };
                    key.map(|k| (None, k)).map_err(|e| {
                        format!("public key {} is not a {algorithm:?} key: {e}", i + 1)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        if keys.is_empty() {
            return Err(format!(
                "no {algorithm:?} public key found: give PEM public keys \
                 (-----BEGIN PUBLIC KEY-----) or a JWKS document"
            ));
        }
        Ok(Self { keys })
    }

    /// The keys to try for a token whose header names `kid`: the key with that id, or
    /// with none named, every key.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a DecodingKey> + 'a {
        self.keys
            .iter()
            .filter(move |(id, _)| kid.is_none() || id.as_deref() == kid)
            .map(|(_, key)| key)
    }
}

fn pem_blocks(text: &str) -> Vec<&str> {
    const END: &str = "-----END ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = rest[start + end + END.len()..]
            .find("-----")
            .map_or(rest.len(), |i| start + end + END.len() + i + 5);
        blocks.push(&rest[start..stop]);
        rest = &rest[stop..];
    }
    blocks
}

fn jwks(text: &str, algorithm: Algorithm) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let wanted = match algorithm {
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        Algorithm::RS256 => KeyAlgorithm::RS256,
        _ => KeyAlgorithm::HS256,
    };
    set.keys
        .iter()
        .filter(|jwk| jwk.common.key_algorithm.is_none_or(|a| a == wanted))
        .map(|jwk| {
            let id = jwk.common.key_id.clone();
            DecodingKey::from_jwk(jwk)
                .map(|key| (id.clone(), key))
                .map_err(|e| format!("key {}: {e}", id.as_deref().unwrap_or("without kid")))
        })
        .collect()
}

/// A key file and what was last read from it.
pub(crate) struct KeyFile {
    path: PathBuf,
    algorithm: Algorithm,
    state: Mutex<FileState>,
}

struct FileState {
    /// Modification time and length of the version read.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl KeyFile {
    /// Reads `path` now (an unreadable or keyless file is an error).
    pub(crate) fn open(path: &Path, algorithm: Algorithm) -> Result<(Self, KeySet), String> {
        let stamp = stamp(path);
        let keys = read(path, algorithm)?;
        let file = Self {
            path: path.to_owned(),
            algorithm,
            state: Mutex::new(FileState {
                stamp,
                checked: Instant::now(),
            }),
        };
        Ok((file, keys))
    }

    /// The file's keys when it changed since it was last read (looked at no more than
    /// once per [`KEY_FILE_CHECK`]). A changed file that does not parse keeps the keys in
    /// use, with a warning.
    pub(crate) fn changed(&self, check_every: Duration) -> Option<KeySet> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() < check_every {
            return None;
        }
        state.checked = Instant::now();
        let now = stamp(&self.path);
        if now == state.stamp {
            return None;
        }
        state.stamp = now;
        match read(&self.path, self.algorithm) {
            Ok(keys) => {
                tracing::info!(file = %self.path.display(), keys = keys.keys.len(), "token verification keys reloaded");
                Some(keys)
            }
            Err(reason) => {
                tracing::warn!(file = %self.path.display(), %reason, "token key file changed but cannot be used; keeping the keys in use");
                None
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path, algorithm: Algorithm) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    KeySet::parse(&text, algorithm).map_err(|e| format!("{}: {e}", path.display()))
}

/// The keys in use, swapped whole when the file changes.
pub(crate) struct Keys {
    current: RwLock<Arc<KeySet>>,
    file: Option<KeyFile>,
    check_every: Duration,
}

impl Keys {
    pub(crate) fn fixed(keys: KeySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(keys)),
            file: None,
            check_every: KEY_FILE_CHECK,
        }
    }

    pub(crate) fn from_file(path: &Path, algorithm: Algorithm) -> Result<Self, String> {
        let (file, keys) = KeyFile::open(path, algorithm)?;
        Ok(Self {
            current: RwLock::new(Arc::new(keys)),
            file: Some(file),
            check_every: KEY_FILE_CHECK,
        })
    }

    #[cfg(test)]
    pub(crate) fn checking_every(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// The current keys, after picking up a changed file.
    pub(crate) fn get(&self) -> Arc<KeySet> {
        if let Some(keys) = self.file.as_ref().and_then(|f| f.changed(self.check_every)) {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_split() {
        let text = "junk\n-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n\
                    -----BEGIN PUBLIC KEY-----\nBBB\n-----END PUBLIC KEY-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].contains("AAA") && blocks[0].ends_with("-----END PUBLIC KEY-----"));
        assert!(blocks[1].contains("BBB"));
        assert!(KeySet::parse("no keys here", Algorithm::EdDSA).is_err());
        assert!(KeySet::parse("{\"keys\": []}", Algorithm::EdDSA).is_err());
        assert!(KeySet::parse("{not json", Algorithm::EdDSA).is_err());
    }
}
