//! What the handlers share: the network routed by (network.json, followed as it changes),
//! the token verifier, the shard clients, what is known of which shard hosts which party,
//! and the cache.

use ordo_node::limits::{Limiter, Rate};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use ordo_ledger_client::{Network, RetryPolicy, ShardClient};
use ordo_participant::auth::Authenticator;
use parking_lot::Mutex;

use crate::cache::Cache;
use crate::error::ApiError;
use crate::network_file::NetworkFile;
use crate::templates::Templates;
use crate::topology;

/// Shard clients kept at most; past it the pool starts over (a client is cheap to make,
/// a connection cheap to open again), so a stream of distinct tokens cannot grow it
/// without bound.
const MAX_CLIENTS: usize = 1024;
/// How often network.json is read again for changes.
const NETWORK_POLL: Duration = Duration::from_secs(1);

/// How often a WebSocket stream sends a heartbeat by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

pub struct Gateway {
    pub auth: Authenticator,
    /// Requests per bearer token (`[limits] token_requests`).
    pub token_limits: Limiter<u64>,
    /// How often a WebSocket stream says it is alive (`websocket_heartbeat`).
    pub heartbeat: Duration,
    pub cache: Cache,
    /// The templates' field types, which queries are typed by.
    pub templates: Templates,
    network: NetworkFile,
    /// One failover-aware client per (shard, bearer token): a `ShardClient` sends its
    /// token with every call and keeps its connection to the active replica.
    clients: Mutex<HashMap<(String, String), Arc<ShardClient>>>,
    /// Party → shard. A party never moves, so an entry, once learned, stays true.
    parties: Mutex<HashMap<String, String>>,
    /// How the shard clients retry across a shard's replicas.
    retry: RetryPolicy,
}

impl Gateway {
    pub fn new(network: NetworkFile, auth: Authenticator, cache: Cache) -> Self {
        Self {
            auth,
            token_limits: Limiter::new("token_requests", Rate::UNLIMITED),
            heartbeat: DEFAULT_HEARTBEAT,
            cache,
            templates: Templates::default(),
            network,
            clients: Mutex::new(HashMap::new()),
            parties: Mutex::new(HashMap::new()),
            retry: RetryPolicy::default(),
        }
    }

    /// Shard calls look for a serving replica for at most `deadline` before failing
    /// UNAVAILABLE (503).
    /// Sends a heartbeat on every WebSocket stream every `every`.
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Limits each bearer token to `rate` requests per second.
    pub fn with_token_limit(mut self, rate: Rate) -> Self {
        self.token_limits = Limiter::new("token_requests", rate);
        self
    }

    pub fn with_retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry.deadline = deadline;
        self
    }

    /// The network as network.json last said.
    pub fn network(&self) -> Arc<Network> {
        self.network.current()
    }

    /// The network now, and each new one as network.json changes.
    pub fn watch_network(&self) -> tokio::sync::watch::Receiver<Arc<Network>> {
        self.network.subscribe()
    }

    /// Reads network.json again about once a second, for as long as the gateway runs.
    pub async fn follow_network(self: Arc<Self>) {
        loop {
            tokio::time::sleep(NETWORK_POLL).await;
            let gateway = self.clone();
            let _ = tokio::task::spawn_blocking(move || gateway.network.reload()).await;
        }
    }

    /// The network, read again first when it does not list `shard` (a shard added a
    /// moment ago).
    fn network_with(&self, shard: &str) -> Arc<Network> {
        let network = self.network();
        if network.replicas(shard).is_empty() && self.network.reload() {
            return self.network();
        }
        network
    }

    /// Whether the gateway can route to `shard` (network.json lists replicas of it).
    pub fn knows_shard(&self, shard: &str) -> bool {
        !self.network_with(shard).replicas(shard).is_empty()
    }

    /// The client of `shard`'s replicas that calls with `token`. A shard whose replicas
    /// changed in network.json gets a new client.
    pub fn shard_client(&self, shard: &str, token: &str) -> Result<Arc<ShardClient>, ApiError> {
        let network = self.network_with(shard);
        let mut endpoints: Vec<&str> = network
            .replicas(shard)
            .iter()
            .map(|r| r.grpc.as_str())
            .collect();
        endpoints.sort_unstable();
        let key = (shard.to_owned(), token.to_owned());
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&key) {
            let mut known: Vec<&str> = c.endpoints().iter().map(String::as_str).collect();
            known.sort_unstable();
            // Only the set matters: the order (active first) is the client's to follow.
            if known == endpoints {
                return Ok(c.clone());
            }
        }
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        let client = Arc::new(
            network
                .shard_client(shard, token)?
                .with_policy(self.retry.clone()),
        );
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The shard hosting `party`, `None` when the party is not allocated.
    pub async fn shard_of(&self, party: &str) -> Result<Option<String>, ApiError> {
        if let Some(shard) = self.parties.lock().get(party) {
            return Ok(Some(shard.clone()));
        }
        self.learn_parties().await?;
        Ok(self.parties.lock().get(party).cloned())
    }

    /// The shards hosting `parties`, each with those of them it hosts. A party that is
    /// not allocated is left out (it sees nothing).
    pub async fn parties_by_shard(
        &self,
        parties: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for party in parties {
            if let Some(shard) = self.shard_of(party).await? {
                by_shard.entry(shard).or_default().push(party.clone());
            }
        }
        Ok(by_shard)
    }

    /// Asks topology for every party and its shard.
    pub async fn learn_parties(&self) -> Result<(), ApiError> {
        let all = self.network().parties().await?;
        let mut known = self.parties.lock();
        for p in all {
            known.insert(p.party, p.shard);
        }
        Ok(())
    }

    /// The shard hosting `party` as far as already known, without asking anyone.
    pub fn known_shard_of(&self, party: &str) -> Option<String> {
        self.parties.lock().get(party).cloned()
    }

    pub fn remember(&self, party: &str, shard: &str) {
        self.parties
            .lock()
            .insert(party.to_owned(), shard.to_owned());
    }

    /// Where a new party goes when the request names no shard: the shard hosting the
    /// fewest parties among those the gateway can route to and topology knows. Without a
    /// topology manager in network.json, among the file's shards.
    pub async fn least_loaded_shard(&self) -> Result<String, ApiError> {
        let network = self.network();
        let Some(loads) = network.shard_loads().await? else {
            return Ok(network.least_loaded_shard().await?);
        };
        let mut routable = network.shards();
        if loads.keys().any(|s| !routable.contains(s)) && self.network.reload() {
            // Topology knows a shard the file did not list yet: perhaps it does now.
            routable = self.network().shards();
        }
        topology::least_loaded(&routable, &loads).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no shard to place the party on: the topology manager knows shards {:?}, \
                     network.json lists replicas of {:?}, and none is in both",
                    loads.keys().collect::<Vec<_>>(),
                    routable
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use ordo_participant::AuthConfig;

    use super::*;

    fn network(participants: &[(&str, &str)]) -> String {
        let entries: Vec<String> = participants
            .iter()
            .map(|(shard, grpc)| {
                format!(r#"{{"name": "p", "shard": "{shard}", "grpc": "{grpc}"}}"#)
            })
            .collect();
        format!(r#"{{"participants": [{}]}}"#, entries.join(", "))
    }

    #[tokio::test]
    async fn routes_follow_network_json_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("network.json");
        std::fs::write(&file, network(&[("shard-1", "http://127.0.0.1:1")])).unwrap();
        let auth = Authenticator::new(&AuthConfig {
            algorithm: "HS256".into(),
            secret: "state-test-secret-0123".into(),
            ..Default::default()
        })
        .unwrap();
        let cache = Cache::open(
            &dir.path().join("cache.sqlite"),
            crate::cache::FeedToken::fixed("t"),
            NETWORK_POLL,
        )
        .await
        .unwrap();
        let gw = Gateway::new(NetworkFile::load(&file).unwrap(), auth, cache);

        let first = gw.shard_client("shard-1", "t").unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &gw.shard_client("shard-1", "t").unwrap()
        ));
        assert!(!gw.knows_shard("shard-3"));
        assert_eq!(
            gw.shard_client("shard-3", "t").unwrap_err().status,
            StatusCode::NOT_FOUND
        );

        // A shard added and a replica added to shard-1: a routing miss reads the file at
        // once, and shard-1's clients are made anew for the new replica set.
        std::fs::write(
            &file,
            network(&[
                ("shard-1", "http://127.0.0.1:1"),
                ("shard-1", "http://127.0.0.1:2"),
                ("shard-3", "http://127.0.0.1:3"),
            ]),
        )
        .unwrap();
        assert!(gw.knows_shard("shard-3"));
        assert_eq!(
            gw.shard_client("shard-3", "t").unwrap().endpoints(),
            ["http://127.0.0.1:3"]
        );
        let again = gw.shard_client("shard-1", "t").unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(again.endpoints().len(), 2);
        assert_eq!(gw.network().shards(), ["shard-1", "shard-3"]);
        gw.cache.close().await;
    }
}
