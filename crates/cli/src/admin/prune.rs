//! `ordo admin prune --service shard-1 --up-to OFFSET | --older-than DURATION`: prunes a
//! shard's update and completion logs through its active replica (admin token), riding
//! through a failover (pruning again to the same offset is harmless).

use std::time::Duration;

use ordo_ledger_client::{Network, PruneOutcome, PruneTarget};

use crate::Failure;

pub async fn run(
    network: &Network,
    shard: &str,
    target: PruneTarget,
) -> Result<PruneOutcome, Failure> {
    let token = network
        .admin_token()
        .map_err(|e| Failure::Usage(e.into()))?;
    let client = network
        .shard_client(shard, &token)
        .map_err(|e| Failure::Usage(e.into()))?;
    let submission_id = ordo_ledger_client::new_command_id();
    client
        .read(|c| {
            let submission_id = submission_id.clone();
            async move { c.prune(target, &submission_id).await }
        })
        .await
        .map_err(|e| Failure::Runtime(e.into()))
}

/// One line for the operator.
pub fn describe(shard: &str, o: &PruneOutcome) -> String {
    format!(
        "{shard}: pruned up to offset {} (completions up to {}); removed {} updates, {} completions, {} deduplication entries",
        o.pruned.updates,
        o.pruned.completions,
        o.updates_deleted,
        o.completions_deleted,
        o.commands_deleted
    )
}

/// `--older-than`: a duration with its unit (`30d`, `12h`, `90min`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration with its unit (e.g. 30d, 12h): {e}"))
}
