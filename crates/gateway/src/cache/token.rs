//! The token the cache's feeds read every shard with: read from `cache.token_file` and
//! re-read when the file changes (whoever issues it replaces it before it expires), or,
//! with an HS256 secret, minted here and minted again before it expires. A replacement
//! that does not verify, or lacks `readAsAnyParty`, is refused with a warning and the
//! token in use is kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ordo_node::config::{ConfigError, Invalid};
use ordo_participant::AuthConfig;
use ordo_participant::auth::{Authenticator, LedgerClaims, TokenSigner};
use parking_lot::Mutex;

use crate::config::{CacheConfig, NODE};

/// How long a token the gateway mints for itself is valid.
const MINTED_LIFETIME: Duration = Duration::from_secs(3600);
/// How often the token file's modification time is looked at, at most.
const FILE_CHECK: Duration = Duration::from_secs(1);

pub struct FeedToken {
    source: Source,
    verifier: Option<Authenticator>,
    current: Mutex<Current>,
    check_every: Duration,
}

enum Source {
    File(PathBuf),
    Minted(Box<TokenSigner>),
    Fixed,
}

struct Current {
    token: String,
    expires_at: Option<SystemTime>,
    /// The token file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl FeedToken {
    /// The token `config` and `auth` call for, checked with `verifier`: it must verify
    /// and carry `readAsAnyParty`.
    pub fn open(
        config: &CacheConfig,
        auth: &AuthConfig,
        verifier: &Authenticator,
    ) -> Result<Self, ConfigError> {
        let bad = |reason: String| Invalid::new("cache.token_file", reason).of(NODE);
        let source = match &config.token_file {
            Some(path) => Source::File(path.clone()),
            None if auth.algorithm == "HS256" => {
                Source::Minted(Box::new(TokenSigner::hs256(&auth.secret)))
            }
            None => {
                return Err(bad(format!(
                    "the gateway cannot mint {} tokens: give a file holding a Ledger API \
                     token with the readAsAnyParty claim for its cache",
                    auth.algorithm
                )));
            }
        };
        let (token, expires_at, stamp) = fetch(&source, verifier).map_err(bad)?;
        Ok(Self {
            source,
            verifier: Some(verifier.clone()),
            current: Mutex::new(Current {
                token,
                expires_at,
                stamp,
                checked: Instant::now(),
            }),
            check_every: FILE_CHECK,
        })
    }

    /// A token that never changes (tests of the cache's storage).
    pub fn fixed(token: impl Into<String>) -> Self {
        Self {
            source: Source::Fixed,
            verifier: None,
            current: Mutex::new(Current {
                token: token.into(),
                expires_at: None,
                stamp: None,
                checked: Instant::now(),
            }),
            check_every: FILE_CHECK,
        }
    }

    #[cfg(test)]
    fn checking_every(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// The token to read with now.
    pub fn get(&self) -> String {
        let mut current = self.current.lock();
        let due = match &self.source {
            Source::Fixed => false,
            Source::File(path) => {
                current.checked.elapsed() >= self.check_every && {
                    current.checked = Instant::now();
                    stamp(path) != current.stamp
                }
            }
            Source::Minted(_) => current.expires_at.is_none_or(|exp| {
                exp.duration_since(SystemTime::now()).unwrap_or_default() < MINTED_LIFETIME / 4
            }),
        };
        if due && let Some(verifier) = &self.verifier {
            match fetch(&self.source, verifier) {
                Ok((token, expires_at, stamp)) => {
                    tracing::info!(expires_at = ?expires_at, "gateway cache: token replaced");
                    *current = Current {
                        token,
                        expires_at,
                        stamp,
                        checked: Instant::now(),
                    };
                }
                Err(reason) => {
                    if let Source::File(path) = &self.source {
                        current.stamp = stamp(path);
                    }
                    tracing::warn!(%reason, "gateway cache: the new token cannot be used; keeping the one in use");
                }
            }
        }
        current.token.clone()
    }
}

type Fetched = (String, Option<SystemTime>, Option<(SystemTime, u64)>);

fn fetch(source: &Source, verifier: &Authenticator) -> Result<Fetched, String> {
    let (token, stamp) = match source {
        Source::File(path) => {
            let stamp = stamp(path);
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (text.trim().to_owned(), stamp)
        }
        Source::Minted(signer) => {
            let claims = LedgerClaims {
                read_as_any_party: true,
                ..Default::default()
            };
            (signer.mint_for(&claims, MINTED_LIFETIME)?.0, None)
        }
        Source::Fixed => return Err("a fixed token is not fetched".into()),
    };
    let rights = verifier.verify(&token).map_err(|e| e.to_string())?;
    if !rights.read_as_any_party {
        return Err(
            "the token lacks the readAsAnyParty claim: the cache reads every party's contracts"
                .into(),
        );
    }
    Ok((token, rights.expires_at, stamp))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use ordo_participant::auth::{expiry_in, mint_hs256};

    use super::*;

    const SECRET: &str = "gateway-cache-test-secret";

    fn hs256() -> (AuthConfig, Authenticator) {
        let auth = AuthConfig {
            algorithm: "HS256".into(),
            secret: SECRET.into(),
            ..Default::default()
        };
        let verifier = Authenticator::new(&auth).unwrap();
        (auth, verifier)
    }

    fn token(claims: LedgerClaims) -> String {
        mint_hs256(SECRET, &claims, expiry_in(Duration::from_secs(600)))
    }

    fn any_party() -> LedgerClaims {
        LedgerClaims {
            read_as_any_party: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_token_is_minted_or_read_and_must_read_as_any_party() {
        let (auth, verifier) = hs256();
        let minted = FeedToken::open(&CacheConfig::default(), &auth, &verifier).unwrap();
        assert!(verifier.verify(&minted.get()).unwrap().read_as_any_party);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.token");
        let config = CacheConfig {
            token_file: Some(file.clone()),
            ..Default::default()
        };
        let open = || FeedToken::open(&config, &auth, &verifier);
        let e = open().err().unwrap();
        assert_eq!(e.field, "cache.token_file");
        assert!(e.to_string().contains("cannot read"), "{e}");
        let alice = token(LedgerClaims {
            act_as: vec!["alice".into()],
            ..Default::default()
        });
        std::fs::write(&file, format!("{alice}\n")).unwrap();
        assert!(open().err().unwrap().to_string().contains("readAsAnyParty"));
        std::fs::write(&file, "not a token").unwrap();
        assert_eq!(open().err().unwrap().field, "cache.token_file");
        let good = token(any_party());
        std::fs::write(&file, format!("{good}\n")).unwrap();
        assert_eq!(open().unwrap().get(), good);

        let eddsa = AuthConfig {
            algorithm: "EdDSA".into(),
            ..auth
        };
        let e = FeedToken::open(&CacheConfig::default(), &eddsa, &verifier)
            .err()
            .unwrap();
        assert!(e.to_string().contains("EdDSA"), "{e}");
    }

    #[test]
    fn a_replaced_file_is_picked_up_and_a_bad_replacement_refused() {
        let (auth, verifier) = hs256();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.token");
        let first = token(any_party());
        std::fs::write(&file, &first).unwrap();
        let config = CacheConfig {
            token_file: Some(file.clone()),
            ..Default::default()
        };
        let feed = FeedToken::open(&config, &auth, &verifier)
            .unwrap()
            .checking_every(Duration::ZERO);
        assert_eq!(feed.get(), first);
        // A fresher token (another `exp`) replaces it.
        let second = mint_hs256(SECRET, &any_party(), expiry_in(Duration::from_secs(1200)));
        std::fs::write(&file, &second).unwrap();
        assert_eq!(feed.get(), second);
        // A token without the right, or a broken file, is not taken.
        std::fs::write(&file, token(LedgerClaims::default())).unwrap();
        assert_eq!(feed.get(), second);
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(feed.get(), second);
    }
}
