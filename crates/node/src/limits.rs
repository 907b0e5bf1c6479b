//! Rate limits per caller (a member, a token, an address): GCRA buckets kept per key
//! (`governor`), answered RESOURCE_EXHAUSTED / 429 with the time after which a retry can
//! pass. A caller over its limit is answered late (Kafka's quota delay): its refusals are
//! held for the retry time (at least [`MIN_DELAY`], at most [`MAX_DELAY`]), so that a
//! client that ignores the hint and retries at once still costs the node little. Every
//! refusal is counted in `ordo_throttled_total{limit}`, and a node that refused a call in
//! the last [`OVERLOAD_WINDOW`] says so in `/readyz` and `ordo_throttling`.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// The shortest a refusal is held.
pub const MIN_DELAY: Duration = Duration::from_millis(100);
/// The longest a refusal is held.
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// How long after its last refusal a node still reports that it is throttling.
pub const OVERLOAD_WINDOW: Duration = Duration::from_secs(10);
/// Buckets of keys idle long enough to be full again are dropped every this many checks.
const SWEEP_EVERY: u64 = 4096;

/// A rate: `per_second` on average with bursts of up to `burst`; `per_second = 0` means
/// no limit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// The average allowed per second; 0: no limit.
    pub per_second: u32,
    /// The most allowed at once (at least `per_second`).
    pub burst: u32,
}

impl Rate {
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    pub const UNLIMITED: Rate = Rate::new(0, 0);

    /// Checks the settings for `field` (the burst covers at least one second's worth).
    pub fn check(&self, field: &'static str) -> Result<(), crate::config::Invalid> {
        if self.per_second > 0 && self.burst < self.per_second {
            return Err(crate::config::Invalid::new(
                field,
                format!(
                    "burst {} is below per_second {}: give at least a second's worth",
                    self.burst, self.per_second
                ),
            ));
        }
        Ok(())
    }
}

/// A call refused by a limit, and when a retry can pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// The limit's name (`member_sends`, `token_requests`, …).
    pub limit: &'static str,
    pub retry_after: Duration,
}

impl Throttled {
    /// Holds the refusal: the retry time, within [`MIN_DELAY`, `MAX_DELAY`].
    pub async fn delay(&self) {
        tokio::time::sleep(self.retry_after.clamp(MIN_DELAY, MAX_DELAY)).await;
    }

    /// The retry time in whole milliseconds, at least 1.
    pub fn retry_after_ms(&self) -> u64 {
        (self.retry_after.as_millis() as u64).max(1)
    }

    /// The retry time in whole seconds, rounded up (HTTP `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms().div_ceil(1000)
    }

    /// RESOURCE_EXHAUSTED naming `who` and the limit, with the retry time in the message
    /// and in the `retry-after-ms` and `grpc-retry-pushback-ms` metadata.
    pub fn status(&self, who: &str) -> tonic::Status {
        let ms = self.retry_after_ms();
        let mut status = ordo_proto::errors::status(
            ordo_proto::errors::THROTTLED,
            format!(
                "{who} is over its {} limit: retry after {ms} ms",
                self.limit
            ),
            Some(self.retry_after),
        );
        if let Ok(v) = ms.to_string().parse() {
            status.metadata_mut().insert("retry-after-ms", v);
        }
        if let Ok(v) = ms.to_string().parse() {
            status.metadata_mut().insert("grpc-retry-pushback-ms", v);
        }
        status
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// A [`Rate`] per key.
pub struct Limiter<K: Hash + Eq + Clone> {
    name: &'static str,
    buckets: Option<Keyed<K>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(name: &'static str, rate: Rate) -> Self {
        let buckets = NonZeroU32::new(rate.per_second).map(|per_second| {
            let burst = NonZeroU32::new(rate.burst.max(rate.per_second)).unwrap_or(per_second);
            RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Self {
            name,
            buckets,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one from `key`'s bucket.
    pub fn check(&self, key: &K) -> Result<(), Throttled> {
        self.check_n(key, 1)
    }

    /// Takes `n` from `key`'s bucket (more than its burst is refused with the time one
    /// burst takes to refill).
    pub fn check_n(&self, key: &K, n: u32) -> Result<(), Throttled> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            buckets.retain_recent();
        }
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        let refused = match buckets.check_key_n(key, n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(DefaultClock::default().now()),
            Err(insufficient) => Duration::from_secs(u64::from(insufficient.0).max(1)),
        };
        note_throttled(self.name);
        Err(Throttled {
            limit: self.name,
            retry_after: refused,
        })
    }
}

/// The key a bearer token is limited under (a hash: the token itself is not kept).
pub fn token_key(token: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(token);
    h.finish()
}

static LAST_THROTTLED_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Counts a refusal by `limit`, and remembers that the node is throttling.
pub fn note_throttled(limit: &'static str) {
    metrics::counter!("ordo_throttled_total", "limit" => limit).increment(1);
    LAST_THROTTLED_MS.store(now_ms(), Ordering::Relaxed);
}

/// Whether this process refused a call over a limit in the last [`OVERLOAD_WINDOW`].
pub fn throttling() -> bool {
    let last = LAST_THROTTLED_MS.load(Ordering::Relaxed);
    last != 0 && now_ms().saturating_sub(last) < OVERLOAD_WINDOW.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_rate_is_refused_with_a_retry_time_others_are_not() {
        let limiter = Limiter::new("test_requests", Rate::new(10, 10));
        for _ in 0..10 {
            assert_eq!(limiter.check(&"a"), Ok(()));
        }
        let refused = limiter.check(&"a").unwrap_err();
        assert_eq!(refused.limit, "test_requests");
        assert!(refused.retry_after > Duration::ZERO);
        assert!(
            refused.retry_after <= Duration::from_millis(100),
            "{refused:?}"
        );
        assert!(throttling());
        assert_eq!(
            limiter.check(&"b"),
            Ok(()),
            "another key has its own bucket"
        );
        let status = refused.status("member alice");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("test_requests"), "{status:?}");
        assert!(status.metadata().get("retry-after-ms").is_some());
        assert!(ordo_proto::errors::is(
            &status,
            ordo_proto::errors::THROTTLED
        ));
        assert_eq!(
            ordo_proto::errors::retry_after(&status),
            Some(refused.retry_after)
        );
        // More than a burst at once can never pass.
        assert!(limiter.check_n(&"c", 11).is_err());
        assert_eq!(limiter.check_n(&"c", 10), Ok(()));
        // Unlimited.
        let open = Limiter::new("open", Rate::UNLIMITED);
        for _ in 0..10_000 {
            assert_eq!(open.check_n(&1u8, 1000), Ok(()));
        }
        assert!(Rate::new(10, 5).check("f").is_err());
        assert!(Rate::new(10, 10).check("f").is_ok());
    }
}
