//! The endpoint set: one lazily connected channel per sequencer node, kept in or out of the
//! healthy set by a `grpc.health.v1` Watch on that node, and the round-robin choice among
//! the healthy ones. (tonic's `balance_channel` is not used: it hides dead endpoints and
//! hangs when none is ready; see REFERENCES.)
//!
//! A node that stops answering without closing its connections (frozen, or its host
//! stalled) never tells its Watch anything. So the client also listens for signs of life —
//! answers to calls, subscription messages, and health checks (`check`) of a node it has
//! not heard from for a while or whose call is late — and an endpoint that leaves a check
//! unanswered while nothing else is heard from it is *suspect*: round-robin skips it while
//! another endpoint is usable, calls waiting on it move on, subscriptions leave it, and a
//! check every interval re-admits it once it answers again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ordo_tls::ClientTls;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::ClientError;

/// The service name every sequencer node reports on `grpc.health.v1`.
pub const SEQUENCER_SERVICE: &str = "ordo.sequencer.v1.SequencerService";

/// How long a call waits for its node: `send_deadline`, `probe_timeout` and
/// `request_timeout` of the client's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    pub send: Duration,
    pub probe: Duration,
    pub hard: Duration,
}

struct EndpointState {
    url: String,
    channel: Channel,
    /// What the node's Watch last said: SERVING or not.
    healthy: watch::Sender<bool>,
    /// Left a call and a health check unanswered, and has not answered a check since.
    suspect: watch::Sender<bool>,
    /// The last health check (when it finished, whether the node was found alive); the
    /// lock makes concurrent callers share one check.
    check: Mutex<Option<(Instant, bool)>>,
    /// When the node last answered anything, in µs since the set's epoch (0: never).
    heard: AtomicU64,
}

pub(crate) struct EndpointSet {
    endpoints: Vec<EndpointState>,
    epoch: Instant,
    cursor: AtomicUsize,
    /// Bumped on every health change, so waiters can wake up and look again.
    generation: watch::Sender<u64>,
}

impl EndpointSet {
    /// Builds one lazy channel per endpoint; nothing is connected yet.
    pub(crate) fn new(
        urls: &[String],
        connect_timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ClientError> {
        let endpoints = urls
            .iter()
            .map(|url| {
                let channel = ordo_tls::lazy_channel(url, tls, |e| {
                    e.connect_timeout(connect_timeout)
                        // Detects a node that vanished without closing the connection.
                        .http2_keep_alive_interval(Duration::from_secs(5))
                        .keep_alive_timeout(Duration::from_secs(5))
                        .keep_alive_while_idle(true)
                        .tcp_nodelay(true)
                })
                .map_err(|source| ClientError::InvalidEndpoint {
                    endpoint: url.clone(),
                    source,
                })?;
                Ok(EndpointState {
                    url: url.clone(),
                    channel,
                    healthy: watch::Sender::new(false),
                    suspect: watch::Sender::new(false),
                    check: Mutex::new(None),
                    heard: AtomicU64::new(0),
                })
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Self {
            endpoints,
            epoch: Instant::now(),
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

    /// Per endpoint: SERVING by its Watch.
    pub(crate) fn flags(&self) -> Vec<bool> {
        self.endpoints.iter().map(|e| *e.healthy.borrow()).collect()
    }

    /// Per endpoint: SERVING and not suspect.
    fn usable_flags(&self) -> Vec<bool> {
        (0..self.len()).map(|i| self.usable(i)).collect()
    }

    fn usable(&self, i: usize) -> bool {
        let e = &self.endpoints[i];
        *e.healthy.borrow() && !*e.suspect.borrow()
    }

    /// The endpoints that are SERVING and not suspect.
    pub(crate) fn healthy_urls(&self) -> Vec<String> {
        (0..self.len())
            .filter(|&i| self.usable(i))
            .map(|i| self.endpoints[i].url.clone())
            .collect()
    }

    /// Whether any endpoint is SERVING (suspect or not): a suspect endpoint is still worth
    /// a try when nothing better is left, so only this makes a call fail fast.
    pub(crate) fn any_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| *e.healthy.borrow())
    }

    /// The next usable endpoint in round-robin order, avoiding `avoid` (the endpoint that
    /// just failed) unless it is the only one; a suspect endpoint only when no other is
    /// SERVING.
    pub(crate) fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let i = self.pick_from(start, avoid)?;
        // Continue after the chosen one, so that skipping unhealthy endpoints does not
        // make the one after them take a double share.
        self.cursor.store(i + 1, Ordering::Relaxed);
        Some(i)
    }

    /// Like [`Self::pick`] from `start` (cyclically), for callers that keep their own
    /// cursor (subscriptions spread themselves from a random start).
    pub(crate) fn pick_from(&self, start: usize, avoid: Option<usize>) -> Option<usize> {
        next_healthy(&self.usable_flags(), start, avoid)
            .or_else(|| next_healthy(&self.flags(), start, avoid))
    }

    /// Whether a subscription on endpoint `i` should move: its node is not SERVING, or it
    /// is suspect while another endpoint is usable.
    pub(crate) fn should_leave(&self, i: usize) -> bool {
        let e = &self.endpoints[i];
        !*e.healthy.borrow()
            || (*e.suspect.borrow() && (0..self.len()).any(|j| j != i && self.usable(j)))
    }

    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn no_healthy_endpoint(&self) -> ClientError {
        ClientError::NoHealthyEndpoint {
            endpoints: self.urls(),
        }
    }

    /// Awaits `call`, made on endpoint `i`. After every `send` deadline without an answer it
    /// checks that the node is alive (a health check shared with concurrent callers): a
    /// node that answers is busy, so the call keeps waiting, up to the `hard` deadline in
    /// all; one that does not is suspect. A call on a suspect node — found so by this call,
    /// by another one or by a subscription while this one waited — is abandoned with
    /// `DEADLINE_EXCEEDED`, which callers retry on another node.
    pub(crate) async fn answer<T>(
        &self,
        i: usize,
        d: Deadlines,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let url = self.url(i);
        let give_up = Instant::now() + d.hard;
        // A call made on a suspect node (nothing better was left) waits for its own check.
        let mut suspect = self.endpoints[i].suspect.subscribe();
        let started_suspect = *suspect.borrow_and_update();
        let turned_suspect = async move {
            if started_suspect {
                std::future::pending::<()>().await;
            }
            let _ = suspect.wait_for(|s| *s).await;
        };
        tokio::pin!(call, turned_suspect);
        let abandoned = |why: String| {
            metrics::counter!("ordo_sequencer_client_abandoned_calls_total").increment(1);
            tonic::Status::deadline_exceeded(format!(
                "sequencer endpoint {url} {why}: trying another node"
            ))
        };
        let suspect_now = || abandoned("turned suspect while the call waited".into());
        let heard = |answer: Result<T, tonic::Status>| {
            if answer.is_ok() {
                self.heard_from(i);
            }
            answer
        };
        loop {
            let check_at = (Instant::now() + d.send).min(give_up);
            tokio::select! {
                answer = &mut call => return heard(answer),
                () = &mut turned_suspect => return Err(suspect_now()),
                () = tokio::time::sleep_until(check_at) => {}
            }
            if Instant::now() >= give_up {
                return Err(tonic::Status::deadline_exceeded(format!(
                    "sequencer endpoint {url} gave no answer within {:?}",
                    d.hard
                )));
            }
            // The call goes on while the node is checked: its answer may still come first.
            let alive = tokio::select! {
                answer = &mut call => return heard(answer),
                () = &mut turned_suspect => return Err(suspect_now()),
                alive = self.check(i, d.probe, d.send / 2) => alive,
            };
            if !alive {
                return Err(abandoned(format!(
                    "answered neither the call within {:?} nor a health check within {:?}",
                    d.send, d.probe
                )));
            }
        }
    }

    /// Marks endpoint `i` suspect on other evidence than a check (a subscription that got
    /// no heartbeat); the next check clears it if the node answers.
    pub(crate) fn suspect(&self, i: usize) {
        self.set_suspect(i, true);
    }

    /// Notes that endpoint `i` just answered something: a call, a subscription message.
    pub(crate) fn heard_from(&self, i: usize) {
        let micros = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.endpoints[i]
            .heard
            .fetch_max(micros.max(1), Ordering::Relaxed);
    }

    /// Whether endpoint `i` answered anything at or after `t`.
    pub(crate) fn heard_since(&self, i: usize, t: Instant) -> bool {
        let heard = self.endpoints[i].heard.load(Ordering::Relaxed);
        heard > 0 && self.epoch + Duration::from_micros(heard) >= t
    }

    /// Checks that endpoint `i` is alive: it answers a health check with SERVING within
    /// `timeout`, or answers anything else meanwhile (a busy node's health check may be
    /// late while its calls are answered). Marks it suspect when not, and clears the mark
    /// when so. Callers share checks: one that finished at most `reuse` before a caller
    /// asked (or while it waited for its turn) answers for it, so many slow calls on a busy
    /// node cost a few checks a second, not one each.
    pub(crate) async fn check(&self, i: usize, timeout: Duration, reuse: Duration) -> bool {
        let e = &self.endpoints[i];
        let asked = Instant::now();
        let mut last = e.check.lock().await;
        if let Some((finished, alive)) = *last
            && finished + reuse >= asked
        {
            return alive;
        }
        let started = Instant::now();
        let mut client = HealthClient::new(self.channel(i));
        let request = HealthCheckRequest {
            service: SEQUENCER_SERVICE.to_string(),
        };
        let serving = match tokio::time::timeout(timeout, client.check(request)).await {
            Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
            Ok(Err(_)) | Err(_) => false,
        };
        if serving {
            self.heard_from(i);
        }
        let alive = serving || self.heard_since(i, started);
        *last = Some((Instant::now(), alive));
        drop(last);
        let outcome = if serving {
            "serving"
        } else if alive {
            "busy"
        } else {
            "no_answer"
        };
        metrics::counter!("ordo_sequencer_client_health_checks_total", "outcome" => outcome)
            .increment(1);
        self.set_suspect(i, !alive);
        alive
    }

    fn set_suspect(&self, i: usize, suspect: bool) {
        let e = &self.endpoints[i];
        let changed = e.suspect.send_if_modified(|s| {
            let changed = *s != suspect;
            *s = suspect;
            changed
        });
        if changed {
            if suspect {
                tracing::warn!(endpoint = %e.url, "sequencer endpoint suspect: it left a call and a health check, or a subscription, unanswered");
                metrics::counter!("ordo_sequencer_client_suspected_total").increment(1);
            } else {
                tracing::info!(endpoint = %e.url, "sequencer endpoint answers again");
            }
            self.publish_change();
        }
    }

    /// Keeps endpoint `i`'s suspicion current, forever: every `interval`, a SERVING node
    /// not heard from during the last interval is checked — so that a frozen node is found
    /// even by a member that has no call waiting on it — and a suspect one is checked until
    /// it answers again. Under load the answers to calls make checks unnecessary.
    pub(crate) async fn watch_liveness(&self, i: usize, interval: Duration, timeout: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            let e = &self.endpoints[i];
            let quiet = Instant::now()
                .checked_sub(interval)
                .is_none_or(|since| !self.heard_since(i, since));
            if *e.healthy.borrow() && (quiet || *e.suspect.borrow()) {
                self.check(i, timeout, Duration::ZERO).await;
            }
        }
    }

    fn publish_change(&self) {
        let count = self.usable_flags().iter().filter(|h| **h).count();
        metrics::gauge!("ordo_sequencer_client_healthy_endpoints").set(count as f64);
        self.generation.send_modify(|g| *g += 1);
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
            self.publish_change();
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
                    let serving = status == ServingStatus::Serving;
                    self.set_health(i, serving, status.as_str_name());
                    if serving {
                        // It answered: whatever froze it is over.
                        self.heard_from(i);
                        self.set_suspect(i, false);
                    }
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
        let set = EndpointSet::new(&urls, Duration::from_secs(1), None).unwrap();
        assert_eq!(set.pick(None), None);
        set.set_health(0, true, "test");
        set.set_health(2, true, "test");
        let picks: Vec<_> = (0..4).map(|_| set.pick(None).unwrap()).collect();
        assert!(picks == [0, 2, 0, 2] || picks == [2, 0, 2, 0], "{picks:?}");
        assert_eq!(set.healthy_urls(), [urls[0].clone(), urls[2].clone()]);
    }

    fn set(n: u16) -> EndpointSet {
        let urls: Vec<String> = (1..=n).map(|p| format!("http://127.0.0.1:{p}")).collect();
        let set = EndpointSet::new(&urls, Duration::from_secs(1), None).unwrap();
        for i in 0..urls.len() {
            set.set_health(i, true, "test");
        }
        set
    }

    #[tokio::test]
    async fn a_suspect_endpoint_is_skipped_while_another_is_usable() {
        let set = set(2);
        set.set_suspect(0, true);
        let picks: Vec<_> = (0..4).map(|_| set.pick(None).unwrap()).collect();
        assert_eq!(picks, [1, 1, 1, 1]);
        assert_eq!(set.healthy_urls(), ["http://127.0.0.1:2"]);
        assert!(set.any_healthy());
        // Even when 1 just failed, it is preferred to a suspect node...
        assert_eq!(set.pick(Some(1)), Some(1));
        // ... but with 1 down, the suspect node is better than nothing.
        set.set_health(1, false, "test");
        assert_eq!(set.pick(None), Some(0));
        set.set_suspect(0, false);
        set.set_health(1, true, "test");
        let picks: Vec<_> = (0..4).map(|_| set.pick(None).unwrap()).collect();
        assert!(picks == [0, 1, 0, 1] || picks == [1, 0, 1, 0], "{picks:?}");
    }

    #[tokio::test]
    async fn a_subscription_leaves_a_suspect_endpoint_only_for_a_usable_one() {
        let set = set(2);
        assert!(!set.should_leave(0));
        let changes = set.changes();
        set.set_suspect(0, true);
        assert!(changes.has_changed().unwrap(), "waiters wake up");
        assert!(set.should_leave(0));
        set.set_suspect(1, true);
        assert!(!set.should_leave(0), "nowhere better to go");
        set.set_health(0, false, "test");
        assert!(set.should_leave(0), "not serving: leave anyway");
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_a_check_is_suspect() {
        // A listener that accepts connections and never answers: a frozen node.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let set = EndpointSet::new(&[url], Duration::from_secs(1), None).unwrap();
        set.set_health(0, true, "test");
        assert!(
            !set.check(0, Duration::from_millis(200), Duration::ZERO)
                .await
        );
        assert!(set.healthy_urls().is_empty());
        assert!(!set.should_leave(0), "no other endpoint to go to");
        assert_eq!(
            set.pick(None),
            Some(0),
            "still tried when nothing else is left"
        );
    }
}
