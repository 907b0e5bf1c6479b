//! The client's single typed configuration, with defaults and validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Clock, KeyPair, MemberId, SystemClock};
use ordo_tls::ClientTls;

use crate::error::ClientError;
use crate::health::Deadlines;

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
    /// Hard deadline of each RPC (and of opening a subscription stream), however busy its
    /// node: the call is then retried elsewhere.
    pub request_timeout: Duration,
    /// How long a call (a batch of sends, opening a subscription, an acknowledgement) waits
    /// for an answer before checking that its node is alive at all, and again after every
    /// further `send_deadline`. A node that answers the check is busy, not frozen: the call
    /// keeps waiting (up to `request_timeout`), so a slow but healthy sequencer is never
    /// flooded with resends.
    pub send_deadline: Duration,
    /// How long that check (a `grpc.health.v1` Check) may take. A node that answers neither
    /// it with SERVING nor anything else meanwhile is *suspect*: the call is abandoned and
    /// retried on another node (idempotent by message id), calls still waiting on it move
    /// on, and it gets no new calls or subscriptions while another node is usable, until it
    /// answers a check again (tried every `heartbeat_interval`). A frozen node is so left
    /// within `send_deadline + probe_timeout`.
    pub probe_timeout: Duration,
    /// How often a subscription asks its node for a heartbeat while no event flows, and how
    /// long the client may hear nothing from a node (no answer, no subscription message)
    /// before it checks that node, so that a frozen node is found without a call on it.
    pub heartbeat_interval: Duration,
    /// A subscription that receives neither an event nor a heartbeat for this long resumes
    /// on another node after its last event. At least twice `heartbeat_interval`, so that
    /// one late heartbeat does not move it.
    pub subscription_idle_timeout: Duration,
    /// How long `connect` waits for a first healthy endpoint.
    pub connect_timeout: Duration,
    /// Backoff before re-watching an endpoint whose health stream failed.
    pub health_retry: Duration,
    /// Wall clock used to decide when a submission's `max_sequencing_time` has passed and
    /// when the auth token needs refreshing.
    pub clock: Arc<dyn Clock>,
    /// How `https://` endpoints are verified and which certificate the member presents
    /// (one naming it, when the sequencers require client certificates). [`ClientConfig::new`]
    /// starts from the process's [`ordo_tls::trusted`].
    pub tls: Option<ClientTls>,
}

impl ClientConfig {
    pub(crate) fn deadlines(&self) -> Deadlines {
        Deadlines {
            send: self.send_deadline,
            probe: self.probe_timeout,
            hard: self.request_timeout,
        }
    }

    pub fn new(endpoints: Vec<String>, member: MemberId, key: Arc<KeyPair>) -> Self {
        Self {
            endpoints,
            member,
            key,
            linger: Duration::from_millis(1),
            max_batch: 500,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            request_timeout: Duration::from_secs(5),
            send_deadline: Duration::from_millis(300),
            probe_timeout: Duration::from_millis(200),
            heartbeat_interval: Duration::from_millis(200),
            subscription_idle_timeout: Duration::from_millis(600),
            connect_timeout: Duration::from_secs(5),
            health_retry: Duration::from_millis(200),
            clock: Arc::new(SystemClock),
            tls: ordo_tls::trusted(),
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
        if self.send_deadline.is_zero() || self.send_deadline > self.request_timeout {
            return invalid(format!(
                "send_deadline must be positive and at most request_timeout ({:?}), got {:?}",
                self.request_timeout, self.send_deadline
            ));
        }
        if self.probe_timeout.is_zero() || self.probe_timeout > self.request_timeout {
            return invalid(format!(
                "probe_timeout must be positive and at most request_timeout ({:?}), got {:?}",
                self.request_timeout, self.probe_timeout
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(50) {
            return invalid(format!(
                "heartbeat_interval must be at least 50 ms (nodes send none more often), got {:?}",
                self.heartbeat_interval
            ));
        }
        if self.subscription_idle_timeout < 2 * self.heartbeat_interval {
            return invalid(format!(
                "subscription_idle_timeout ({:?}) must be at least twice heartbeat_interval \
                 ({:?}), or one late heartbeat moves the subscription",
                self.subscription_idle_timeout, self.heartbeat_interval
            ));
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
            .field("send_deadline", &self.send_deadline)
            .field("probe_timeout", &self.probe_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("subscription_idle_timeout", &self.subscription_idle_timeout)
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
        // A frozen node is left within half a second on a send, 0.6 s on a subscription.
        assert_eq!(
            c.send_deadline + c.probe_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(c.subscription_idle_timeout, 3 * c.heartbeat_interval);
    }

    #[test]
    fn rejects_deadlines_that_do_not_fit_together() {
        let mut c = config();
        c.send_deadline = Duration::from_secs(6);
        assert!(
            matches!(c.validate(), Err(ClientError::InvalidConfig(m)) if m.contains("send_deadline"))
        );
        let mut c = config();
        c.probe_timeout = Duration::ZERO;
        assert!(
            matches!(c.validate(), Err(ClientError::InvalidConfig(m)) if m.contains("probe_timeout"))
        );
        let mut c = config();
        c.heartbeat_interval = Duration::from_millis(10);
        assert!(
            matches!(c.validate(), Err(ClientError::InvalidConfig(m)) if m.contains("heartbeat_interval"))
        );
        let mut c = config();
        c.subscription_idle_timeout = Duration::from_millis(300);
        assert!(matches!(c.validate(), Err(ClientError::InvalidConfig(m)) if m.contains("twice")));
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
