//! Placement of a new party among the shards the topology manager knows, with how many
//! parties each hosts (`Network::shard_loads`). A shard is registered with topology
//! before its participant can allocate parties, and may reach network.json a moment
//! before or after.

use std::collections::BTreeMap;

/// The shard among `routable` (those the gateway has replicas for) that topology knows
/// and that hosts the fewest parties; ties go to the first by name, as the topology
/// manager's own placement does. `None` when no routable shard is known to topology.
pub fn least_loaded(routable: &[String], loads: &BTreeMap<String, u64>) -> Option<String> {
    loads
        .iter()
        .filter(|(shard, _)| routable.contains(shard))
        .min_by_key(|(shard, parties)| (**parties, shard.as_str()))
        .map(|(shard, _)| shard.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_on_the_least_loaded_routable_shard() {
        let loads: BTreeMap<String, u64> = [("shard-1", 3), ("shard-2", 2), ("shard-3", 0)]
            .into_iter()
            .map(|(s, n)| (s.to_owned(), n))
            .collect();
        let routable = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // shard-3 is registered but not yet in network.json: not chosen.
        assert_eq!(
            least_loaded(&routable(&["shard-1", "shard-2"]), &loads),
            Some("shard-2".into())
        );
        assert_eq!(
            least_loaded(&routable(&["shard-1", "shard-2", "shard-3"]), &loads),
            Some("shard-3".into())
        );
        // In network.json but not (yet) registered with topology: not chosen either.
        assert_eq!(least_loaded(&routable(&["shard-4"]), &loads), None);
        let tie: BTreeMap<String, u64> = [("shard-b".to_owned(), 1), ("shard-a".to_owned(), 1)]
            .into_iter()
            .collect();
        assert_eq!(
            least_loaded(&routable(&["shard-b", "shard-a"]), &tie),
            Some("shard-a".into())
        );
    }
}
