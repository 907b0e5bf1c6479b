//! The network routed by, followed as network.json changes: `ordo up` rewrites the file
//! (atomically) when a replica's role changes or a shard is added, and the gateway picks
//! the change up without a restart — about once a second, and at once on a routing miss.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ordo_ledger_client::{LedgerError, Network};
use parking_lot::Mutex;
use tokio::sync::watch;

pub struct NetworkFile {
    path: PathBuf,
    current: watch::Sender<Arc<Network>>,
    /// The text the current network was parsed from, and the text last found unreadable
    /// (so that a bad file is reported once, not every second).
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    text: String,
    rejected: Option<String>,
}

impl NetworkFile {
    /// Reads the file; a missing or malformed one is an error here, at start.
    pub fn load(path: &Path) -> Result<Self, LedgerError> {
        let text = std::fs::read_to_string(path).map_err(|e| LedgerError::NetworkFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let network = Network::parse(&text, path)?;
        // The participants serve TLS when the network file names a CA.
        network.trust_tls()?;
        Ok(Self {
            path: path.to_owned(),
            current: watch::channel(Arc::new(network)).0,
            seen: Mutex::new(Seen {
                text,
                rejected: None,
            }),
        })
    }

    pub fn current(&self) -> Arc<Network> {
        self.current.borrow().clone()
    }

    /// The current network, and each new one as the file changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Network>> {
        self.current.subscribe()
    }

    /// Reads the file again; whether it changed. A file that is gone (the network stopped)
    /// or does not parse leaves the current network in place. The file is a few kilobytes
    /// on local disk: reading it is as quick as a lock, so routing misses read it inline.
    pub fn reload(&self) -> bool {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                tracing::debug!(file = %self.path.display(), error = %e, "network file unreadable; routing by the last one read");
                return false;
            }
        };
        let mut seen = self.seen.lock();
        if seen.text == text || seen.rejected.as_deref() == Some(text.as_str()) {
            return false;
        }
        match Network::parse(&text, &self.path) {
            Ok(network) => {
                tracing::info!(file = %self.path.display(), shards = ?network.shards(), "network file changed");
                seen.text = text;
                seen.rejected = None;
                self.current.send_replace(Arc::new(network));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "network file changed but does not parse; routing by the last one read");
                seen.rejected = Some(text);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_SHARD: &str =
        r#"{"participants": [{"name": "p1", "shard": "shard-1", "grpc": "http://127.0.0.1:1"}]}"#;
    const TWO_SHARDS: &str = r#"{"participants": [{"name": "p1", "shard": "shard-1", "grpc": "http://127.0.0.1:1"},
                                                  {"name": "p3", "shard": "shard-3", "grpc": "http://127.0.0.1:3"}]}"#;

    #[test]
    fn follows_the_file_and_keeps_the_last_good_network() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.json");
        assert!(
            NetworkFile::load(&path).is_err(),
            "a missing file fails at start"
        );
        std::fs::write(&path, ONE_SHARD).unwrap();
        let file = NetworkFile::load(&path).unwrap();
        let mut changes = file.subscribe();
        assert_eq!(file.current().shards(), ["shard-1"]);
        assert!(!file.reload(), "unchanged");

        std::fs::write(&path, TWO_SHARDS).unwrap();
        assert!(file.reload());
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().shards(), ["shard-1", "shard-3"]);

        // Half a file, or none: the last good network stays.
        std::fs::write(&path, "{\"participants\": [").unwrap();
        assert!(!file.reload());
        std::fs::remove_file(&path).unwrap();
        assert!(!file.reload());
        assert_eq!(file.current().shards(), ["shard-1", "shard-3"]);
        assert!(!changes.has_changed().unwrap());
    }
}
