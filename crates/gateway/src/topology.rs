//! The shards the topology manager knows, with how many parties each hosts: what the
//! placement of a new party chooses among (a shard is registered with topology before its
//! participant can allocate parties, and may reach network.json a moment before or after).

use std::collections::BTreeMap;

use ordo_ledger_client::client::{BearerToken, CONNECT_TIMEOUT};
use ordo_ledger_client::{LedgerError, Network};
use ordo_proto::admin::v1 as admin;
use tonic::transport::Endpoint;

/// Shard → number of parties it hosts, from the topology manager's `ListShards`;
/// `Ok(None)` when the network file names no topology manager (or no token for it). Each
/// replica is tried in turn, a passive (UNAVAILABLE) or unreachable one skipped.
pub async fn shard_loads(network: &Network) -> Result<Option<BTreeMap<String, u64>>, LedgerError> {
    let nodes = network.topology_replicas();
    let token = &network.auth.topology_admin_token;
    if nodes.is_empty() || token.is_empty() {
        return Ok(None);
    }
    let mut last = None;
    for node in nodes {
        match list_shards(&node.grpc, token).await {
            Ok(loads) => return Ok(Some(loads)),
            Err(e) if e.code() == tonic::Code::Unavailable => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| LedgerError::NotFound("topology manager".into())))
}

async fn list_shards(endpoint: &str, token: &str) -> Result<BTreeMap<String, u64>, LedgerError> {
    let connect_error = |reason: String| LedgerError::Connect {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| connect_error(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let mut client =
        admin::topology_admin_service_client::TopologyAdminServiceClient::with_interceptor(
            channel,
            BearerToken::new(token)?,
        );
    let shards = client
        .list_shards(admin::ListShardsRequest {})
        .await?
        .into_inner()
        .shards;
    Ok(shards.into_iter().map(|s| (s.shard, s.parties)).collect())
}

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
