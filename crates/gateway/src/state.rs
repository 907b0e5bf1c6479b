//! What the handlers share: the network routed by, the token verifier, the shard clients
//! and what is known of which shard hosts which party.

use std::collections::HashMap;
use std::sync::Arc;

use ordo_ledger_client::{Network, ShardClient};
use ordo_participant::auth::Authenticator;
use parking_lot::Mutex;

use crate::error::ApiError;

/// Shard clients kept at most; past it the pool starts over (a client is cheap to make,
/// a connection cheap to open again), so a stream of distinct tokens cannot grow it
/// without bound.
const MAX_CLIENTS: usize = 1024;

pub struct Gateway {
    pub network: Network,
    pub auth: Authenticator,
    /// One failover-aware client per (shard, bearer token): a `ShardClient` sends its
    /// token with every call and keeps its connection to the active replica.
    clients: Mutex<HashMap<(String, String), Arc<ShardClient>>>,
    /// Party → shard. A party never moves, so an entry, once learned, stays true.
    parties: Mutex<HashMap<String, String>>,
}

impl Gateway {
    pub fn new(network: Network, auth: Authenticator) -> Self {
        Self {
            network,
            auth,
            clients: Mutex::new(HashMap::new()),
            parties: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `shard`'s replicas that calls with `token`.
    pub fn shard_client(&self, shard: &str, token: &str) -> Result<Arc<ShardClient>, ApiError> {
        let key = (shard.to_owned(), token.to_owned());
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        let client = Arc::new(self.network.shard_client(shard, token)?);
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The shard hosting `party`, `None` when the party is not allocated.
    pub async fn shard_of(&self, party: &str) -> Result<Option<String>, ApiError> {
        if let Some(shard) = self.parties.lock().get(party) {
            return Ok(Some(shard.clone()));
        }
        let all = self.network.parties().await?;
        let mut known = self.parties.lock();
        for p in all {
            known.insert(p.party, p.shard);
        }
        Ok(known.get(party).cloned())
    }

    pub fn remember(&self, party: &str, shard: &str) {
        self.parties
            .lock()
            .insert(party.to_owned(), shard.to_owned());
    }
}
