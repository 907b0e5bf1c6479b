//! One shard's update stream for one socket: reopened after the last transaction sent
//! when a failover breaks it, so that the client sees neither a gap nor a duplicate.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ordo_ledger_client::{Filter, LedgerError, Transaction, UpdateStream, is_failover_error};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::state::Gateway;

/// The pause before reopening a shard's update stream that broke, doubled per further
/// break without a transaction in between, up to `MAX_REOPEN_PAUSE`.
const REOPEN_PAUSE: Duration = Duration::from_millis(50);
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(1);

pub(super) fn on_shard(shard: &str, e: LedgerError) -> ApiError {
    let pruned = e.is(ordo_proto::errors::PARTICIPANT_PRUNED_DATA_ACCESSED);
    let mut e = ApiError::from(e);
    e.message = if pruned {
        format!(
            "shard {shard} pruned the updates this stream would resume from: open the stream again without `offset` to start from a new snapshot ({})",
            e.message
        )
    } else {
        format!("shard {shard}: {}", e.message)
    };
    e
}

/// A shard's transaction, or why its stream ended.
pub(super) type Update = Result<(String, Transaction), ApiError>;

/// One shard's update stream, for one socket.
pub(super) struct ShardReader {
    pub(super) gw: Arc<Gateway>,
    pub(super) token: String,
    pub(super) shard: String,
    pub(super) filter: Filter,
}

impl ShardReader {
    /// Sends the shard's transactions after offset `after` to `updates`, from its active
    /// replica: a stream broken by a failover is opened again after the last transaction
    /// sent, so nothing is skipped or repeated. Ends after sending an error that is not a
    /// failover's, or when `updates` is closed.
    pub(super) async fn follow(self, mut after: i64, updates: mpsc::Sender<Update>) {
        let mut pause = REOPEN_PAUSE;
        loop {
            let mut stream = match self.open(after).await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = updates.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(tx) => {
                        after = tx.offset;
                        pause = REOPEN_PAUSE;
                        if updates.send(Ok((self.shard.clone(), tx))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if is_failover_error(&e) => {
                        tracing::info!(shard = %self.shard, after, error = %e, "update stream broke; resuming on the active replica");
                        break;
                    }
                    Err(e) => {
                        let _ = updates.send(Err(on_shard(&self.shard, e))).await;
                        return;
                    }
                }
            }
            // A stream that ends (its replica stopped) is resumed like a broken one.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_REOPEN_PAUSE);
        }
    }

    /// The shard's live update stream after `after`, from its active replica (looked up
    /// again each time, so that a replica added to the network is among those tried).
    async fn open(&self, after: i64) -> Result<UpdateStream, ApiError> {
        let client = self.gw.shard_client(&self.shard, &self.token)?;
        client
            .read(|c| {
                let filter = self.filter.clone();
                async move { c.updates(&filter, after, true).await }
            })
            .await
            .map_err(|e| on_shard(&self.shard, e))
    }
}
