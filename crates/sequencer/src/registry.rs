//! The member registry: an in-memory cache of the `members` table, refreshed on a miss, on
//! `NOTIFY ordo_sequencer_members` and periodically, so hot paths (token checks, recipient
//! resolution) rarely touch the database.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use sqlx::PgPool;

use crate::error::SequencerError;
use crate::store::{self, MemberRow};

pub struct Registry {
    pool: PgPool,
    by_id: RwLock<HashMap<String, Arc<MemberRow>>>,
    /// Bumped at every reload, so that subscriptions notice a member disabled.
    reloads: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            by_id: RwLock::new(HashMap::new()),
            reloads: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Reloads every member from the database.
    pub async fn refresh(&self) -> Result<(), SequencerError> {
        let rows = store::load_members(&self.pool).await?;
        let map = rows
            .into_iter()
            .map(|r| (r.member_id.clone(), Arc::new(r)))
            .collect();
        *self.by_id.write() = map;
        self.reloads.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Changes at every reload of the members.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Whether `member_id` is known here and enabled, from the cache alone.
    pub fn is_enabled(&self, member_id: &str) -> bool {
        self.by_id.read().get(member_id).is_some_and(|m| m.enabled)
    }

    /// The member, refreshing the cache once when it is not (yet) known here.
    pub async fn get(&self, member_id: &str) -> Result<Option<Arc<MemberRow>>, SequencerError> {
        if let Some(m) = self.by_id.read().get(member_id) {
            return Ok(Some(m.clone()));
        }
        self.refresh().await?;
        Ok(self.by_id.read().get(member_id).cloned())
    }

    /// The enabled member, or NOT_FOUND naming it (`what` says where it was named).
    pub async fn enabled(
        &self,
        member_id: &str,
        what: &str,
    ) -> Result<Arc<MemberRow>, SequencerError> {
        match self.get(member_id).await? {
            Some(m) if m.enabled => Ok(m),
            Some(_) => Err(SequencerError::NotFound(format!(
                "{what} {member_id} is disabled"
            ))),
            None => Err(SequencerError::NotFound(format!(
                "{what} {member_id} is not a registered member"
            ))),
        }
    }

    /// The members' indexes, each enabled and registered, or NOT_FOUND naming the first
    /// that is not.
    pub async fn resolve<'a>(
        &self,
        members: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<i32>, SequencerError> {
        let mut out = Vec::new();
        for m in members {
            out.push(self.enabled(m, "recipient").await?.idx);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}
