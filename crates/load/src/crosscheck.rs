//! The cross-check: what the run reports committed against what the shards' update logs
//! hold. Before the measured commands start, each shard's ledger end is marked; after the
//! last answer, each shard's update log is read from that mark to its end with a token
//! that reads every party (`readAsAnyParty`), and the transactions whose command id is
//! one of this run's measured commands are collected. A command id shows only on the
//! shard of its submitter, so across shards each committed command appears exactly once.
//!
//! The run matches its logs when every command it counted committed is there, none that
//! the ledger definitely rejected is, none is there twice, and anything else there is a
//! command whose outcome the run could not know (timed out, or failed without a definite
//! answer) and that committed after all (`late`).

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use ordo_ledger_client::{Filter, LedgerClient, Network};
use ordo_participant::auth::LedgerClaims;
use serde::Serialize;

use crate::error::LoadError;
use crate::stats::Ids;

/// The outcome of the cross-check, as reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CrossCheck {
    /// Commands the run counted committed.
    pub committed: u64,
    /// Distinct commands of the run the shards' update logs hold.
    pub in_logs: u64,
    /// Of those, commands counted timed out or failed without a definite answer.
    pub late: u64,
    /// Commands counted committed that no log holds.
    pub missing: u64,
    /// Commands counted rejected (definitely) that a log holds.
    pub rejected_in_logs: u64,
    /// Commands a log holds more than once.
    pub duplicated: u64,
    pub matches: bool,
}

/// Each shard's ledger end before the measured commands.
pub(crate) struct Marks(BTreeMap<String, i64>);

/// A client of `shard` that reads every party's transactions.
async fn reader(network: &Network, shard: &str) -> Result<LedgerClient, LoadError> {
    let token = network
        .mint_token(&LedgerClaims {
            read_as_any_party: true,
            ..Default::default()
        })
        .map_err(LoadError::ledger("minting the cross-check's token"))?;
    network
        .client_for_shard_with_token(shard, &token)
        .await
        .map_err(LoadError::ledger(format!("connecting to {shard}")))
}

/// Marks each shard's ledger end.
pub(crate) async fn mark(network: &Network) -> Result<Marks, LoadError> {
    let mut marks = BTreeMap::new();
    for shard in network.shards() {
        let end = reader(network, &shard)
            .await?
            .ledger_end()
            .await
            .map_err(LoadError::ledger(format!("reading {shard}'s ledger end")))?;
        marks.insert(shard, end);
    }
    Ok(Marks(marks))
}

/// Reads the logs from the marks and compares them with the run's outcomes.
pub(crate) async fn check(
    network: &Network,
    marks: &Marks,
    command_prefix: &str,
    ids: &Ids,
) -> Result<CrossCheck, LoadError> {
    let mut logged = Vec::new();
    for (shard, from) in &marks.0 {
        let client = reader(network, shard).await?;
        let what = || format!("reading {shard}'s update log from offset {from}");
        let mut stream = client
            .updates(&Filter::default(), *from, false)
            .await
            .map_err(LoadError::ledger(what()))?;
        while let Some(tx) = stream.next().await {
            let tx = tx.map_err(LoadError::ledger(what()))?;
            if tx.command_id.starts_with(command_prefix) {
                logged.push(tx.command_id);
            }
        }
    }
    Ok(compare(logged, ids))
}

/// The cross-check of the run's command ids against those found in the logs.
pub(crate) fn compare(logged: Vec<String>, ids: &Ids) -> CrossCheck {
    let mut times: HashMap<String, u64> = HashMap::new();
    for id in logged {
        *times.entry(id).or_default() += 1;
    }
    let count = |f: &dyn Fn(&String) -> bool| times.keys().filter(|id| f(id)).count() as u64;
    let missing = ids
        .committed
        .iter()
        .filter(|id| !times.contains_key(*id))
        .count() as u64;
    let rejected_in_logs = count(&|id| ids.rejected.contains(id));
    let late = count(&|id| ids.open.contains(id));
    let unknown = count(&|id| {
        !(ids.committed.contains(id) || ids.open.contains(id) || ids.rejected.contains(id))
    });
    let duplicated = times.values().filter(|n| **n > 1).count() as u64;
    CrossCheck {
        committed: ids.committed.len() as u64,
        in_logs: times.len() as u64,
        late,
        missing,
        rejected_in_logs,
        duplicated,
        matches: missing == 0 && rejected_in_logs == 0 && duplicated == 0 && unknown == 0,
    }
}

impl CrossCheck {
    /// What is wrong, for the error message of a run that does not match.
    pub fn explain(&self) -> String {
        format!(
            "the run counted {} commands committed, the shards' update logs hold {} of its \
             commands ({} committed late after a timeout); {} committed missing from the \
             logs, {} rejected but in the logs, {} in the logs more than once",
            self.committed,
            self.in_logs,
            self.late,
            self.missing,
            self.rejected_in_logs,
            self.duplicated
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(committed: &[&str], rejected: &[&str], open: &[&str]) -> Ids {
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Ids {
            committed: set(committed),
            rejected: set(rejected),
            open: set(open),
        }
    }

    fn logged(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_run_matches_when_the_logs_hold_exactly_its_commits() {
        let c = compare(logged(&["a", "b"]), &ids(&["a", "b"], &["r"], &["t"]));
        assert!(c.matches, "{c:?}");
        assert_eq!((c.committed, c.in_logs, c.late), (2, 2, 0));
        // A timed-out command that committed after all is late, not a mismatch.
        let c = compare(logged(&["a", "b", "t"]), &ids(&["a", "b"], &[], &["t"]));
        assert!(c.matches && c.late == 1, "{c:?}");
    }

    #[test]
    fn lost_forged_repeated_and_wrongly_rejected_commands_do_not_match() {
        let run = ids(&["a", "b"], &["r"], &[]);
        let missing = compare(logged(&["a"]), &run);
        assert_eq!((missing.matches, missing.missing), (false, 1));
        let rejected = compare(logged(&["a", "b", "r"]), &run);
        assert_eq!((rejected.matches, rejected.rejected_in_logs), (false, 1));
        let twice = compare(logged(&["a", "b", "b"]), &run);
        assert_eq!((twice.matches, twice.duplicated), (false, 1));
        let stranger = compare(logged(&["a", "b", "x"]), &run);
        assert!(!stranger.matches);
        assert!(
            stranger.explain().contains("hold 3"),
            "{}",
            stranger.explain()
        );
    }
}
