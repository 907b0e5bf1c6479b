//! The client's single typed configuration, with defaults and validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Clock, KeyPair, MemberId, SystemClock};

use crate::error::ClientError;

/// Upper bound on the encoded size of one `SendBatch` request: tonic's default maximum
/// message size is 4 MiB, so stay below it with some headroom for framing.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// How a member's sequencer client reaches the sequencer nodes.
#[derive(Clone)]
pub struct ClientConfig {
    /// Every sequencer node of the domain, e.g. `http://127.0.0.1:4001`.
    pub endpoints: Vec<String>,
    pub member: MemberId,
    pub key: Arc<KeyPair>,
    /// How long the batcher waits after the first queued send for more to join the batch.
    pub linger: Duration,
    /// Most submissions in one `SendBatch` call.
    pub max_batch: usize,
    /// Most encoded bytes in one `SendBatch` call (a single larger submission goes alone).
    pub max_batch_bytes: usize,
    /// Deadline of each RPC (and of opening a subscription stream).
    pub request_timeout: Duration,
    /// How long `connect` waits for a first healthy endpoint.
    pub connect_timeout: Duration,
    /// Backoff before re-watching an endpoint whose health stream failed.
    pub health_retry: Duration,
    /// Wall clock used to decide when a submission's `max_sequencing_time` has passed and
    /// when the auth token needs refreshing.
    pub clock: Arc<dyn Clock>,
}

impl ClientConfig {
    pub fn new(endpoints: Vec<String>, member: MemberId, key: Arc<KeyPair>) -> Self {
        Self {
            endpoints,
            member,
            key,
            linger: Duration::from_millis(1),
            max_batch: 500,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            health_retry: Duration::from_millis(200),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn validate(&self) -> Result<(), ClientError> {
        let invalid = |reason: String| Err(ClientError::InvalidConfig(reason));
        if self.endpoints.is_empty() {
            return invalid("no sequencer endpoints configured; list every sequencer node".into());
        }
        if !self.member.is_bound_to(&self.key.public()) {
            return invalid(format!(
                "key does not belong to member {}: its fingerprint differs",
                self.member
            ));
        }
        if self.max_batch == 0 {
            return invalid("max_batch must be at least 1".into());
        }
        if self.max_batch_bytes == 0 {
            return invalid("max_batch_bytes must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be positive".into());
        }
        Ok(())
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("member", &self.member)
            .field("linger", &self.linger)
            .field("max_batch", &self.max_batch)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("health_retry", &self.health_retry)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        let key = Arc::new(KeyPair::generate());
        let member = MemberId::new("alice", &key.public()).unwrap();
        ClientConfig::new(vec!["http://127.0.0.1:1".into()], member, key)
    }

    #[test]
    fn defaults_are_valid() {
        let c = config();
        c.validate().unwrap();
        assert_eq!(c.max_batch, 500);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn rejects_foreign_key_and_empty_endpoints() {
        let mut c = config();
        c.key = Arc::new(KeyPair::generate());
        assert!(matches!(c.validate(), Err(ClientError::InvalidConfig(m)) if m.contains("alice")));
        let mut c = config();
        c.endpoints.clear();
        assert!(matches!(c.validate(), Err(ClientError::InvalidConfig(_))));
    }
}
