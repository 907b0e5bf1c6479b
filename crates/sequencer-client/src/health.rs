//! The endpoint set: one lazily connected channel per sequencer node, kept in or out of the
//! healthy set by a `grpc.health.v1` Watch on that node, and the round-robin choice among
//! the healthy ones. (tonic's `balance_channel` is not used: it hides dead endpoints and
//! hangs when none is ready; see REFERENCES.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::ClientError;

/// The service name every sequencer node reports on `grpc.health.v1`.
pub const SEQUENCER_SERVICE: &str = "ordo.sequencer.v1.SequencerService";

struct EndpointState {
    url: String,
    channel: Channel,
    healthy: watch::Sender<bool>,
}

pub(crate) struct EndpointSet {
    endpoints: Vec<EndpointState>,
    cursor: AtomicUsize,
    /// Bumped on every health change, so waiters can wake up and look again.
    generation: watch::Sender<u64>,
}

impl EndpointSet {
    /// Builds one lazy channel per endpoint; nothing is connected yet.
    pub(crate) fn new(urls: &[String], connect_timeout: Duration) -> Result<Self, ClientError> {
        let endpoints = urls
            .iter()
            .map(|url| {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|source| ClientError::InvalidEndpoint {
                        endpoint: url.clone(),
                        source,
                    })?
                    .connect_timeout(connect_timeout)
                    // Detects a node that vanished without closing the connection.
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .keep_alive_while_idle(true)
                    .tcp_nodelay(true);
                Ok(EndpointState {
                    url: url.clone(),
                    channel: endpoint.connect_lazy(),
                    healthy: watch::Sender::new(false),
                })
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Self {
            endpoints,
            cursor: AtomicUsize::new(0),
            generation: watch::Sender::new(0),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn url(&self, i: usize) -> &str {
        &self.endpoints[i].url
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.url.clone()).collect()
    }

    pub(crate) fn channel(&self, i: usize) -> Channel {
        self.endpoints[i].channel.clone()
    }

    pub(crate) fn flags(&self) -> Vec<bool> {
        self.endpoints.iter().map(|e| *e.healthy.borrow()).collect()
    }

    pub(crate) fn healthy_urls(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|e| *e.healthy.borrow())
            .map(|e| e.url.clone())
            .collect()
    }

    pub(crate) fn any_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| *e.healthy.borrow())
    }

    /// The next healthy endpoint in round-robin order, avoiding `avoid` (the endpoint that
    /// just failed) unless it is the only healthy one.
    pub(crate) fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let i = next_healthy(&self.flags(), start, avoid)?;
        // Continue after the chosen one, so that skipping unhealthy endpoints does not
        // make the one after them take a double share.
        self.cursor.store(i + 1, Ordering::Relaxed);
        Some(i)
    }

    /// A healthy endpoint at or after `start` (cyclically), for callers that keep their own
    /// cursor (subscriptions spread themselves from a random start).
    pub(crate) fn pick_from(&self, start: usize, avoid: Option<usize>) -> Option<usize> {
        next_healthy(&self.flags(), start, avoid)
    }

    pub(crate) fn health(&self, i: usize) -> watch::Receiver<bool> {
        self.endpoints[i].healthy.subscribe()
    }

    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn no_healthy_endpoint(&self) -> ClientError {
        ClientError::NoHealthyEndpoint {
            endpoints: self.urls(),
        }
    }

    fn set_health(&self, i: usize, healthy: bool, why: &str) {
        let e = &self.endpoints[i];
        let changed = e.healthy.send_if_modified(|h| {
            let changed = *h != healthy;
            *h = healthy;
            changed
        });
        if changed {
            if healthy {
                tracing::info!(endpoint = %e.url, "sequencer endpoint healthy");
            } else {
                tracing::warn!(endpoint = %e.url, reason = why, "sequencer endpoint unhealthy");
            }
            let count = self.flags().iter().filter(|h| **h).count();
            metrics::gauge!("ordo_sequencer_client_healthy_endpoints").set(count as f64);
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Keeps endpoint `i`'s health current, forever: a Watch stream while it lasts, then
    /// unhealthy and a new Watch after `retry`.
    pub(crate) async fn watch(&self, i: usize, retry: Duration) {
        loop {
            let why = self.watch_once(i).await;
            self.set_health(i, false, &why);
            tokio::time::sleep(retry).await;
        }
    }

    /// Follows one Watch stream; returns why it ended.
    async fn watch_once(&self, i: usize) -> String {
        let mut client = HealthClient::new(self.channel(i));
        let request = HealthCheckRequest {
            service: SEQUENCER_SERVICE.to_string(),
        };
        let mut stream = match client.watch(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return format!("health watch failed: {status}"),
        };
        loop {
            match stream.message().await {
                Ok(Some(response)) => {
                    let status =
                        ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
                    self.set_health(i, status == ServingStatus::Serving, status.as_str_name());
                }
                Ok(None) => return "health stream ended".into(),
                Err(status) => return format!("health stream failed: {status}"),
            }
        }
    }
}

/// The first healthy index at or after `start` (cyclically), skipping `avoid` unless it is
/// the only healthy endpoint.
pub fn next_healthy(healthy: &[bool], start: usize, avoid: Option<usize>) -> Option<usize> {
    let n = healthy.len();
    if n == 0 {
        return None;
    }
    let candidates = (0..n).map(|k| (start + k) % n).filter(|&i| healthy[i]);
    let mut fallback = None;
    for i in candidates {
        if Some(i) == avoid {
            fallback = Some(i);
        } else {
            return Some(i);
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_unhealthy() {
        let flags = [true, false, true];
        assert_eq!(next_healthy(&flags, 0, None), Some(0));
        assert_eq!(next_healthy(&flags, 1, None), Some(2));
        assert_eq!(next_healthy(&flags, 3, None), Some(0));
        assert_eq!(next_healthy(&[false, false], 0, None), None);
        assert_eq!(next_healthy(&[], 0, None), None);
    }

    #[test]
    fn avoids_the_failed_endpoint_unless_it_is_the_only_one() {
        assert_eq!(next_healthy(&[true, true], 0, Some(0)), Some(1));
        assert_eq!(next_healthy(&[true, false], 0, Some(0)), Some(0));
    }

    #[tokio::test]
    async fn pick_alternates_between_healthy_endpoints() {
        let urls = [
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:3",
        ]
        .map(String::from);
        let set = EndpointSet::new(&urls, Duration::from_secs(1)).unwrap();
        assert_eq!(set.pick(None), None);
        set.set_health(0, true, "test");
        set.set_health(2, true, "test");
        let picks: Vec<_> = (0..4).map(|_| set.pick(None).unwrap()).collect();
        assert!(picks == [0, 2, 0, 2] || picks == [2, 0, 2, 0], "{picks:?}");
        assert_eq!(set.healthy_urls(), [urls[0].clone(), urls[2].clone()]);
    }
}
