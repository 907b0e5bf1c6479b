//! One shard's feed into the cache: with no stored offset, an active-contracts snapshot;
//! then the shard's flat update stream from the stored offset, live, the transactions
//! ready at a time written with the last one's offset in one SQLite transaction. A broken
//! stream is reopened through the shard's active replica from the stored offset. A shard
//! that cannot serve from the stored offset — it pruned past it, or its ledger ends before
//! it (its database was restored) — has its rows dropped and rebuilt from a new snapshot.
//!
//! Every party's projection is read (a `readAsAnyParty` token, a filter naming no party);
//! each contract is stored with the witnesses the gateway's party → shard map places on
//! this shard, so that a contract seen on two shards is seen through each by that
//! shard's own parties.

use std::time::Duration;

use futures::StreamExt;
use ordo_ledger_client::{Contract, Event, LedgerError, ShardClient, Transaction};

use super::{CacheError, every_party};
use crate::error::ApiError;
use crate::state::Gateway;

/// The pause before retrying a feed that failed without progress, doubled per further
/// failure up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// The most transactions written in one SQLite transaction.
const MAX_APPLY: usize = 256;

/// Why a shard is filled from a snapshot; all but `NewShard` are counted as rebuilds in
/// `ordo_gateway_cache_rebuilds_total{shard, reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The cache file was missing (first start, or `ordo gateway rebuild-cache`).
    FileMissing,
    /// The cache file was corrupt or of another schema version.
    FileCorrupt,
    /// A shard the (good) file did not hold yet.
    NewShard,
    /// The stored offset is beyond the shard's ledger end.
    AheadOfShard,
    /// The shard pruned its updates past the stored offset.
    Pruned,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::FileMissing => "file_missing",
            Reason::FileCorrupt => "file_corrupt",
            Reason::NewShard => "new_shard",
            Reason::AheadOfShard => "ahead_of_shard",
            Reason::Pruned => "pruned",
        }
    }
}

/// Where a feed starts.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// The update stream after this stored offset.
    Resume(i64),
    /// A snapshot first.
    Snapshot(Reason),
}

/// Where to start given the stored offset and the shard's ledger end; `fill` is the
/// reason for a shard the file does not hold yet.
fn start(stored: Option<i64>, ledger_end: i64, fill: Reason) -> Start {
    match stored {
        None => Start::Snapshot(fill),
        Some(at) if at > ledger_end => Start::Snapshot(Reason::AheadOfShard),
        Some(at) => Start::Resume(at),
    }
}

/// Whether the shard refused to stream from the offset because it no longer has the
/// updates after it (PARTICIPANT_PRUNED_DATA_ACCESSED). Anything else is retried.
fn pruned_past(e: &LedgerError) -> bool {
    e.is(ordo_proto::errors::PARTICIPANT_PRUNED_DATA_ACCESSED)
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{}", .0.message)]
    Gateway(ApiError),
}

impl From<ApiError> for FeedError {
    fn from(e: ApiError) -> Self {
        FeedError::Gateway(e)
    }
}

/// Feeds `shard` into the cache for as long as the gateway runs.
pub async fn run(gw: std::sync::Arc<Gateway>, shard: String) {
    let mut pause = FIRST_PAUSE;
    loop {
        let mut progressed = false;
        match follow(&gw, &shard, &mut progressed).await {
            Ok(()) => tracing::debug!(shard, "update stream ended; reopening it"),
            Err(e) if progressed || pause == FIRST_PAUSE => {
                tracing::warn!(shard, error = %e, "gateway cache feed interrupted; resuming from the stored offset")
            }
            Err(e) => tracing::debug!(shard, error = %e, "gateway cache feed still failing"),
        }
        if progressed {
            pause = FIRST_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One connection's worth of feeding: catch up from the stored offset (or a snapshot) and
/// follow the live stream until it breaks.
async fn follow(gw: &Gateway, shard: &str, progressed: &mut bool) -> Result<(), FeedError> {
    let cache = &gw.cache;
    let client = gw.shard_client(shard, &cache.token())?;
    let end = client.read(|c| async move { c.ledger_end().await }).await?;
    let stored = cache.store.offset(shard).await?;
    let fill = cache.fill_reason.unwrap_or(Reason::NewShard);
    let offset = match start(stored, end, fill) {
        Start::Resume(at) => at,
        Start::Snapshot(reason) => {
            if reason == Reason::AheadOfShard {
                tracing::warn!(
                    shard, stored = ?stored, ledger_end = end,
                    "the cache holds the shard beyond its ledger end (was its database restored?): rebuilding the shard's cache from a snapshot"
                );
            }
            snapshot(gw, &client, shard, reason).await?
        }
    };
    cache.reached(shard, offset);
    *progressed = true;
    let filter = every_party();
    let opened = client
        .read(|c| {
            let filter = filter.clone();
            async move { c.updates(&filter, offset, true).await }
        })
        .await;
    let updates = match opened {
        Ok(updates) => updates,
        Err(e) if pruned_past(&e) => {
            tracing::warn!(shard, offset, error = %e, "the shard cannot stream from the cache's offset (pruned past it?): rebuilding the shard's cache from a snapshot");
            snapshot(gw, &client, shard, Reason::Pruned).await?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    // What the stream has ready is written together, in one SQLite transaction.
    let mut updates = updates.ready_chunks(MAX_APPLY);
    while let Some(chunk) = updates.next().await {
        let mut ready = Vec::with_capacity(chunk.len());
        let mut failed = None;
        for item in chunk {
            match item {
                Ok(tx) => ready.push(tx),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        apply(gw, shard, ready).await?;
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Replaces the shard's rows by its active contracts now; the snapshot's offset.
async fn snapshot(
    gw: &Gateway,
    client: &ShardClient,
    shard: &str,
    reason: Reason,
) -> Result<i64, FeedError> {
    let filter = every_party();
    let acs = client
        .read(|c| {
            let filter = filter.clone();
            async move { c.active_contracts(&filter).await }
        })
        .await?;
    let mut contracts = acs.contracts;
    learn_parties(gw, contracts.iter()).await?;
    contracts.retain_mut(|c| keep_hosted(gw, shard, c));
    gw.cache
        .store
        .replace_shard(shard, acs.offset, &contracts)
        .await?;
    if reason != Reason::NewShard {
        metrics::counter!("ordo_gateway_cache_rebuilds_total", "shard" => shard.to_owned(), "reason" => reason.label())
            .increment(1);
    }
    tracing::info!(
        shard,
        offset = acs.offset,
        contracts = contracts.len(),
        reason = reason.label(),
        "gateway cache filled the shard from a snapshot"
    );
    Ok(acs.offset)
}

/// Writes transactions of the shard (in offset order) with the last one's offset.
async fn apply(gw: &Gateway, shard: &str, txs: Vec<Transaction>) -> Result<(), FeedError> {
    let Some(offset) = txs.last().map(|tx| tx.offset) else {
        return Ok(());
    };
    learn_parties(
        gw,
        txs.iter()
            .flat_map(|tx| tx.events.iter())
            .filter_map(|e| match e {
                Event::Created(c) => Some(c),
                Event::Archived(_) => None,
            }),
    )
    .await?;
    let kept: Vec<(i64, Vec<Event>)> = txs
        .into_iter()
        .map(|tx| {
            let events = tx
                .events
                .into_iter()
                .filter_map(|e| match e {
                    Event::Created(mut c) => {
                        keep_hosted(gw, shard, &mut c).then_some(Event::Created(c))
                    }
                    archived => Some(archived),
                })
                .collect();
            (tx.offset, events)
        })
        .collect();
    let transactions: Vec<(i64, &[Event])> = kept
        .iter()
        .map(|(offset, events)| (*offset, events.as_slice()))
        .collect();
    gw.cache.store.apply_many(shard, &transactions).await?;
    gw.cache.reached(shard, offset);
    Ok(())
}

/// Asks topology for the parties once if a witness is not in the party → shard map yet
/// (a party allocated after the map was last filled).
async fn learn_parties<'a>(
    gw: &Gateway,
    mut contracts: impl Iterator<Item = &'a Contract>,
) -> Result<(), FeedError> {
    if contracts.any(|c| c.witnesses.iter().any(|w| gw.known_shard_of(w).is_none())) {
        gw.learn_parties().await?;
    }
    Ok(())
}

/// Keeps, of the contract's witnesses, the parties hosted on `shard`; whether any is left.
fn keep_hosted(gw: &Gateway, shard: &str, contract: &mut Contract) -> bool {
    contract.witnesses.retain(|w| match gw.known_shard_of(w) {
        Some(hosting) => hosting == shard,
        None => {
            tracing::debug!(shard, party = %w, contract = %contract.contract_id, "a witness no shard hosts; left out");
            false
        }
    });
    !contract.witnesses.is_empty()
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn a_feed_resumes_from_its_offset_unless_the_shard_is_behind_it() {
        assert_eq!(start(Some(7), 9, Reason::NewShard), Start::Resume(7));
        assert_eq!(start(Some(9), 9, Reason::NewShard), Start::Resume(9));
        assert_eq!(
            start(Some(10), 9, Reason::NewShard),
            Start::Snapshot(Reason::AheadOfShard)
        );
        assert_eq!(
            start(None, 9, Reason::FileCorrupt),
            Start::Snapshot(Reason::FileCorrupt)
        );
        assert_eq!(
            start(None, 0, Reason::NewShard),
            Start::Snapshot(Reason::NewShard)
        );
    }

    #[test]
    fn only_a_refusal_to_serve_the_offset_rebuilds() {
        let status = |code, error_code: &ordo_proto::errors::ErrorCode| LedgerError::Status {
            code,
            message: "m".into(),
            error_code: Some(error_code.id.to_owned()),
        };
        use ordo_proto::errors::*;
        assert!(pruned_past(&status(
            Code::FailedPrecondition,
            &PARTICIPANT_PRUNED_DATA_ACCESSED
        )));
        // Decided by the code, never by the gRPC status alone.
        assert!(!pruned_past(&status(
            Code::FailedPrecondition,
            &FAILED_PRECONDITION
        )));
        assert!(!pruned_past(&status(Code::Unavailable, &UNAVAILABLE)));
        assert!(!pruned_past(&status(
            Code::Unauthenticated,
            &UNAUTHENTICATED
        )));
        assert!(!pruned_past(&LedgerError::Connect {
            endpoint: "e".into(),
            reason: "r".into(),
        }));
    }
}
