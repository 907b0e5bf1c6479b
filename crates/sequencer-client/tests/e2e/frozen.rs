//! A node that stops answering without closing its connections (SIGSTOP, a stalled host):
//! sends and subscriptions leave it within their deadlines, nothing is lost or sequenced
//! twice, and it is used again once it answers. A node that is merely busy is waited for,
//! not flooded with resends.

use std::time::{Duration, Instant};

use ordo_core::{SequencedEvent, Timestamp};
use std::sync::atomic::Ordering;

use ordo_sequencer_client::Subscription;

use crate::{Setup, eventually};

/// `send_deadline` + `probe_timeout` (500 ms by default), with room for a loaded machine.
const SEND_BOUND: Duration = Duration::from_millis(1500);
/// `subscription_idle_timeout` (600 ms by default), with room for a loaded machine.
const SUBSCRIPTION_BOUND: Duration = Duration::from_millis(1600);

async fn next(sub: &mut Subscription) -> SequencedEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_leave_a_frozen_node_within_the_deadline_and_return_when_it_thaws() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    a.set_frozen(true);
    for i in 0..6 {
        let started = Instant::now();
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
        assert!(
            started.elapsed() < SEND_BOUND,
            "send {i} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(s.ledger.events().len(), 6, "each sequenced once");
    assert_eq!(
        client.healthy_endpoints(),
        std::slice::from_ref(&b.url),
        "the frozen node is suspect"
    );
    // At most the first send met the frozen node (unless a check found it first); the
    // others went straight to b.
    assert!(
        a.batch_calls() <= 1,
        "{} calls to the frozen node",
        a.batch_calls()
    );

    a.set_frozen(false);
    eventually("the thawed node is usable again", || {
        client.healthy_endpoints().len() == 2
    })
    .await;
    let before = a.batch_calls();
    for i in 6..10 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
    assert_eq!(a.batch_calls(), before + 2, "it takes its share again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_frozen_node_sequenced_gets_its_first_timestamp_from_the_other() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    // Whichever node gets it sequences it and freezes before answering; the retry on the
    // other node learns the original timestamp.
    s.ledger
        .freeze_after_sequencing
        .store(true, Ordering::SeqCst);
    let started = Instant::now();
    let sequenced = client.send(s.submission("once")).await.unwrap();
    assert!(
        started.elapsed() < SEND_BOUND,
        "took {:?}",
        started.elapsed()
    );
    let events = s.ledger.events();
    assert_eq!(events.len(), 1, "sequenced exactly once");
    assert!(sequenced.duplicate, "answered by the retry");
    assert_eq!(sequenced.timestamp, Timestamp(events[0].timestamp));
    a.set_frozen(false);
    b.set_frozen(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_is_waited_for_not_resent() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;
    a.set_send_delay(Duration::from_millis(1200));
    b.set_send_delay(Duration::from_millis(1200));

    let started = Instant::now();
    let sent = client.send(s.submission("slow")).await.unwrap();
    assert!(
        !sent.duplicate,
        "the first call answered: no resend raced it"
    );
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert_eq!(a.batch_calls() + b.batch_calls(), 1, "no resend");
    assert!(
        a.health_checks() + b.health_checks() >= 1,
        "the node was checked while the call waited"
    );
    assert_eq!(client.healthy_endpoints().len(), 2, "busy is not suspect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_leaves_a_frozen_node_after_its_last_event() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;
    for i in 0..3 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
    let mut sub = client.subscribe(Timestamp::MIN);
    let mut seen: Vec<SequencedEvent> = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut sub).await);
    }
    let serving = sub.endpoint().expect("subscribed");
    let (frozen, other) = if serving == a.url { (&a, &b) } else { (&b, &a) };
    // From now on sends go through the other node only, so that only the frozen node's
    // silence can give it away: no heartbeat, no answer to the client's health checks.
    let sender = s.client(&[other]).await;

    frozen.set_frozen(true);
    let frozen_at = Instant::now();
    sender.send(s.submission("m3")).await.unwrap();
    seen.push(next(&mut sub).await);
    let moved_after = frozen_at.elapsed();
    assert!(
        moved_after < SUBSCRIPTION_BOUND,
        "the next event came {moved_after:?} after the freeze"
    );
    assert_eq!(sub.endpoint(), Some(other.url.clone()));
    assert_eq!(sub.resubscriptions(), 1);
    let delivered: Vec<_> = seen.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(delivered, ["m0", "m1", "m2", "m3"], "no gap, no duplicate");
    frozen.set_frozen(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscription_stays_put_on_heartbeats() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;
    client.send(s.submission("m0")).await.unwrap();
    let mut sub = client.subscribe(Timestamp::MIN);
    next(&mut sub).await;

    // Idle for four idle timeouts: heartbeats keep it where it is.
    let idle = tokio::time::timeout(Duration::from_secs(3), sub.next()).await;
    assert!(idle.is_err(), "no event was sent: {idle:?}");
    assert_eq!(sub.resubscriptions(), 0);

    // Nodes that send no heartbeats (older versions) look frozen once idle: the
    // subscription moves, and still delivers the next event once.
    a.set_heartbeats(false);
    b.set_heartbeats(false);
    let idle = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
    assert!(idle.is_err(), "no event was sent: {idle:?}");
    let moves = sub.resubscriptions();
    assert!(moves >= 1, "the idle timeout moved the subscription");
    client.send(s.submission("m1")).await.unwrap();
    assert_eq!(next(&mut sub).await.message_id, "m1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_found_by_a_send_moves_the_subscription_too() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;
    client.send(s.submission("m0")).await.unwrap();
    let mut sub = client.subscribe(Timestamp::MIN);
    next(&mut sub).await;
    let serving = sub.endpoint().expect("subscribed");
    let (frozen, other) = if serving == a.url { (&a, &b) } else { (&b, &a) };

    frozen.set_frozen(true);
    // Sends until one meets the frozen node and marks it suspect.
    let mut i = 1;
    while client.healthy_endpoints().len() == 2 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
        i += 1;
        assert!(i < 10, "the frozen node never became suspect");
    }
    for k in 1..i {
        assert_eq!(next(&mut sub).await.message_id, format!("m{k}"));
    }
    assert_eq!(sub.endpoint(), Some(other.url.clone()));
    frozen.set_frozen(false);
}
