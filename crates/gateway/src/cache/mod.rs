//! The gateway's local cache: the active contracts of every shard, by party and template,
//! in one SQLite file per gateway (never shared, never replicated: any gateway can drop
//! its file and rebuild it from the shards).
//!
//! One feed per shard (`feed`) reads the shard's whole projection with a `readAsAnyParty`
//! token — an active-contracts snapshot first, then the update stream from the snapshot's
//! offset — and writes each transaction together with the shard's offset (`store`). So
//! the offset a party's contracts are current at is its shard's offset. Queries read the
//! file, after waiting until it reached the ledger end of each shard hosting one of the
//! caller's parties ([`catch_up`]): a query sees every write committed before it,
//! including the caller's own.
//!
//! `index`: the keys payload fields are indexed by; `lock`: the advisory lock that keeps a
//! file to one gateway.

mod feed;
pub(crate) mod index;
mod lock;
mod read;
mod store;
mod token;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use ordo_ledger_client::{Contract, Filter};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

pub use self::lock::CacheLock;
pub use self::read::{Cursor, Page, Snapshot};
pub use self::store::{Opened, Store};
pub use self::token::FeedToken;
use crate::error::ApiError;
use crate::state::Gateway;

/// Why the cache could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "cache file {}: in use by a running gateway (it holds {}); stop that gateway first, \
         or give this one another `cache.file`",
        file.display(), lock.display()
    )]
    InUse { file: PathBuf, lock: PathBuf },
    #[error("cache file {}: {reason}", file.display())]
    File { file: PathBuf, reason: String },
    #[error("cache file {}: {source}", file.display())]
    Sqlite {
        file: PathBuf,
        #[source]
        source: sqlx::Error,
    },
}

impl CacheError {
    fn sqlite(file: &Path, source: sqlx::Error) -> Self {
        CacheError::Sqlite {
            file: file.to_owned(),
            source,
        }
    }
}

/// The cache of one gateway: its file, the offsets its feeds reached, and the token they
/// read with.
pub struct Cache {
    store: Store,
    /// A token with `readAsAnyParty`, for the feeds and the ledger ends queries wait for.
    token: FeedToken,
    /// How long a query waits for the cache to reach a shard's ledger end before it is
    /// answered 503 (inside the request timeout, so that the 503 names the shard).
    wait_limit: Duration,
    /// Counted as the reason of each shard's first fill: the file was missing or corrupt.
    /// `None` for a good file (a shard new to it is filled, not rebuilt).
    fill_reason: Option<feed::Reason>,
    /// Per shard, the offset the file holds (`None` until the shard's first snapshot).
    offsets: Mutex<HashMap<String, watch::Sender<Option<i64>>>>,
    lock: Mutex<Option<CacheLock>>,
}

impl Cache {
    /// Takes the file's lock and opens it (creating or replacing it as needed).
    pub async fn open(
        file: &Path,
        token: FeedToken,
        wait_limit: Duration,
    ) -> Result<Self, CacheError> {
        let lock = CacheLock::acquire(file)?;
        let (store, opened) = Store::open(file).await?;
        let fill_reason = match &opened {
            Opened::Existing => None,
            Opened::Created => Some(feed::Reason::FileMissing),
            Opened::Replaced(_) => Some(feed::Reason::FileCorrupt),
        };
        let offsets = store.offsets().await?;
        tracing::info!(file = %file.display(), ?opened, ?offsets, "gateway cache open");
        metrics::gauge!("ordo_gateway_cache_contracts").set(store.contract_count() as f64);
        for (shard, at) in &offsets {
            metrics::gauge!("ordo_gateway_cache_offset", "shard" => shard.clone()).set(*at as f64);
        }
        Ok(Self {
            store,
            token,
            wait_limit,
            fill_reason,
            offsets: Mutex::new(
                offsets
                    .into_iter()
                    .map(|(shard, at)| (shard, watch::channel(Some(at)).0))
                    .collect(),
            ),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The token to read with now (a replaced token file is picked up here).
    pub fn token(&self) -> String {
        self.token.get()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Closes the file and lets go of its lock.
    pub async fn close(&self) {
        self.store.close().await;
        self.lock.lock().take();
    }

    fn offset_of(&self, shard: &str) -> watch::Sender<Option<i64>> {
        self.offsets
            .lock()
            .entry(shard.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    /// Records that the file holds `shard` at `offset`.
    fn reached(&self, shard: &str, offset: i64) {
        self.offset_of(shard).send_replace(Some(offset));
        metrics::gauge!("ordo_gateway_cache_offset", "shard" => shard.to_owned())
            .set(offset as f64);
        metrics::gauge!("ordo_gateway_cache_contracts").set(self.store.contract_count() as f64);
    }

    /// Waits until the file holds `shard` at `offset` or later.
    async fn reaches(&self, shard: &str, offset: i64) {
        let mut at = self.offset_of(shard).subscribe();
        // The sender lives in `offsets` as long as the cache: the wait cannot fail.
        let _ = at.wait_for(|o| o.is_some_and(|o| o >= offset)).await;
    }

    /// The active contracts `parties` see, of `templates` (empty: all).
    pub async fn active_contracts(
        &self,
        parties: &[String],
        templates: &[String],
    ) -> Result<Vec<Contract>, ApiError> {
        Ok(self.store.active_contracts(parties, templates).await?)
    }

    /// The active contract `contract_id` if one of `parties` sees it.
    pub async fn fetch(
        &self,
        parties: &[String],
        contract_id: &str,
    ) -> Result<Option<Contract>, ApiError> {
        Ok(self.store.fetch(parties, contract_id).await?)
    }

    /// The active contract of `template` with key `key` (canonical JSON) if one of
    /// `parties` sees it.
    pub async fn fetch_by_key(
        &self,
        parties: &[String],
        template: &str,
        key: &str,
    ) -> Result<Option<Contract>, ApiError> {
        Ok(self.store.fetch_by_key(parties, template, key).await?)
    }
}

/// Runs one feed per shard of the network, starting one for each shard network.json
/// gains, until `stop`; then stops them.
pub async fn feed_shards(gw: Arc<Gateway>, mut stop: oneshot::Receiver<()>) {
    let mut network = gw.watch_network();
    let mut feeds = JoinSet::new();
    let mut fed = BTreeSet::new();
    loop {
        let shards = network.borrow_and_update().shards();
        for shard in shards {
            if fed.insert(shard.clone()) {
                tracing::info!(shard, "gateway cache: following the shard");
                feeds.spawn(feed::run(gw.clone(), shard));
            }
        }
        tokio::select! {
            changed = network.changed() => if changed.is_err() { break },
            _ = &mut stop => break,
        }
    }
    feeds.shutdown().await;
}

/// The ledger end of `shard`, read with the cache's token through the shard's active
/// replica.
async fn ledger_end(gw: &Gateway, shard: &str) -> Result<i64, ApiError> {
    let client = gw.shard_client(shard, &gw.cache.token())?;
    Ok(client.read(|c| async move { c.ledger_end().await }).await?)
}

/// Waits until the cache holds everything `shard` had committed when this was called
/// (its ledger end then), for at most the cache's wait limit: 503 naming the shard when
/// it did not get there.
pub async fn catch_up(gw: &Gateway, shard: &str) -> Result<(), ApiError> {
    let unavailable = |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why);
    if !gw.knows_shard(shard) {
        return Err(unavailable(format!(
            "shard {shard} is not in network.json yet: the gateway cannot read it"
        )));
    }
    let limit = gw.cache.wait_limit;
    let wait = async {
        let end = ledger_end(gw, shard).await?;
        gw.cache.reaches(shard, end).await;
        Ok::<_, ApiError>(end)
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(done) => done.map(drop),
        Err(_) => Err(unavailable(format!(
            "the gateway's cache has not caught up with shard {shard} within {limit:?}: its \
             feed of the shard is behind or reconnecting; retry"
        ))),
    }
}

/// Waits (without limit) until the cache holds `shard` at the ledger end it has now:
/// readiness at start.
pub async fn caught_up_at_start(gw: &Gateway, shard: &str, retry: Duration) {
    loop {
        match ledger_end(gw, shard).await {
            Ok(end) => {
                gw.cache.reaches(shard, end).await;
                tracing::info!(
                    shard,
                    offset = end,
                    "gateway cache caught up with the shard"
                );
                return;
            }
            Err(e) => tracing::debug!(shard, error = %e.message, "no ledger end yet"),
        }
        tokio::time::sleep(retry).await;
    }
}

/// Empties the cache `file` (`ordo gateway rebuild-cache`): the next gateway started on it
/// rebuilds it from the shards' snapshots. Refused while a gateway uses it. Whether there
/// was a file to remove.
pub fn clear(file: &Path) -> Result<bool, CacheError> {
    let _lock = CacheLock::acquire(file)?;
    let existed = match std::fs::remove_file(file) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(CacheError::File {
                file: file.to_owned(),
                reason: format!("cannot remove it: {e}"),
            });
        }
    };
    store::remove_side_files(file)?;
    Ok(existed)
}

/// The active contracts `party` sees in the cache `file`, read beside the gateway that
/// feeds it (without its lock): for tests and inspection.
pub async fn read_contracts(file: &Path, party: &str) -> Result<Vec<Contract>, CacheError> {
    let store = Store::open_read_only(file).await?;
    let contracts = store.active_contracts(&[party.to_owned()], &[]).await;
    store.close().await;
    contracts
}

/// A filter for every party's projection: what a `readAsAnyParty` token reads with.
fn every_party() -> Filter {
    Filter::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cache_in_use_is_refused_and_released_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.sqlite");
        let cache = Cache::open(&file, FeedToken::fixed("t"), Duration::from_secs(1))
            .await
            .unwrap();
        let e = Cache::open(&file, FeedToken::fixed("t"), Duration::from_secs(1))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, CacheError::InUse { .. }), "{e}");
        assert!(matches!(clear(&file), Err(CacheError::InUse { .. })));
        cache.store().apply("shard-1", 3, &[]).await.unwrap();
        cache.close().await;
        assert!(clear(&file).unwrap());
        let cache = Cache::open(&file, FeedToken::fixed("t"), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(cache.fill_reason, Some(feed::Reason::FileMissing));
        assert!(cache.store().offsets().await.unwrap().is_empty());
        cache.close().await;
    }
}
