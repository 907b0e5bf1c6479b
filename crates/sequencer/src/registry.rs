//! The member registry: an in-memory cache of the `members` table, refreshed on a miss, on
//! `NOTIFY ordo_sequencer_members` and periodically, so hot paths (token checks, recipient
//! resolution) rarely touch the database. Reloads on a miss are coalesced and at most
//! [`MISS_RELOAD_EVERY`] apart: callers naming unknown members (a guess at a member id in
//! `Challenge`, an unknown recipient) cannot make every call a reload of the table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::RwLock;
use sqlx::PgPool;

use crate::error::SequencerError;
use crate::store::{self, MemberRow};

/// The least time between two reloads caused by misses.
pub const MISS_RELOAD_EVERY: Duration = Duration::from_millis(50);

pub struct Registry {
    pool: PgPool,
    by_id: RwLock<HashMap<String, Arc<MemberRow>>>,
    /// Bumped at every reload, so that subscriptions notice a member disabled.
    reloads: tokio::sync::watch::Sender<u64>,
    /// When the last reload started (whatever caused it).
    reloaded_at: parking_lot::Mutex<Option<Instant>>,
    /// One reload for a miss at a time; the callers waiting share it.
    miss_turn: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            by_id: RwLock::new(HashMap::new()),
            reloads: tokio::sync::watch::Sender::new(0),
            reloaded_at: parking_lot::Mutex::new(None),
            miss_turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Reloads every member from the database.
    pub async fn refresh(&self) -> Result<(), SequencerError> {
        *self.reloaded_at.lock() = Some(Instant::now());
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

    /// The member, reloading the cache when it is not (yet) known here: by a reload that
    /// started after this call did (its own, or one it waited for), at most one every
    /// [`MISS_RELOAD_EVERY`].
    pub async fn get(&self, member_id: &str) -> Result<Option<Arc<MemberRow>>, SequencerError> {
        if let Some(m) = self.by_id.read().get(member_id) {
            return Ok(Some(m.clone()));
        }
        let asked = Instant::now();
        let _turn = self.miss_turn.lock().await;
        let last = *self.reloaded_at.lock();
        if last.is_none_or(|at| at < asked) {
            if let Some(at) = last {
                tokio::time::sleep_until(at + MISS_RELOAD_EVERY).await;
            }
            self.refresh().await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn misses_share_rate_limited_reloads_and_still_find_new_members() {
        let pg = tokio::task::spawn_blocking(|| {
            ordo_testkit::PgCluster::start(ordo_testkit::PgOptions::default())
        })
        .await
        .unwrap()
        .unwrap();
        let url = pg.create_database("registry").await.unwrap();
        let config = crate::SequencerConfig {
            database_url: url.clone(),
            ..crate::SequencerConfig::default()
        };
        crate::init(&config).await.unwrap();
        let pool = PgPool::connect(&url).await.unwrap();
        let registry = Arc::new(Registry::new(pool.clone()));
        registry.refresh().await.unwrap();
        let reloads = || *registry.reloads.borrow();
        let before = reloads();

        // 500 lookups of unknown members, 50 at a time, as a guessing caller makes them.
        let started = Instant::now();
        for round in 0..10 {
            let lookups: Vec<_> = (0..50)
                .map(|i| {
                    let registry = registry.clone();
                    tokio::spawn(
                        async move { registry.get(&format!("guess-{round}-{i}::0")).await },
                    )
                })
                .collect();
            for lookup in lookups {
                assert!(lookup.await.unwrap().unwrap().is_none());
            }
        }
        let allowed = started.elapsed().as_millis() / MISS_RELOAD_EVERY.as_millis() + 2;
        let done = u128::from(reloads() - before);
        assert!(
            done <= allowed,
            "{done} reloads for 500 misses in {:?}",
            started.elapsed()
        );
        assert!(done <= 50, "{done} reloads for 500 misses");

        // A member registered meanwhile (its NOTIFY not seen here) is still found on a miss.
        let key = ordo_core::KeyPair::generate();
        let id = ordo_core::MemberId::new("late", &key.public())
            .unwrap()
            .to_string();
        store::register_member(&pool, &id, key.public().as_bytes())
            .await
            .unwrap();
        assert!(registry.get(&id).await.unwrap().is_some());
    }
}
