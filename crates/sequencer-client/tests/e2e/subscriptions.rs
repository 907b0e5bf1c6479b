use std::time::Duration;

use ordo_core::{SequencedEvent, Timestamp};
use ordo_sequencer_client::{ClientError, SequencerClient, Subscription};

use crate::fake::FakeNode;
use crate::{Setup, eventually};

async fn next(sub: &mut Subscription) -> Result<SequencedEvent, ClientError> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
}

async fn send_n(s: &Setup, client: &SequencerClient, range: std::ops::Range<usize>) {
    for i in range {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_on_another_endpoint_without_gap_or_duplicate() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    send_n(&s, &client, 0..5).await;
    let mut sub = client.subscribe(Timestamp::MIN);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut sub).await.unwrap());
    }
    let serving = sub.endpoint().expect("subscribed");
    assert_eq!(sub.resubscriptions(), 0);

    // Kill whichever node serves the subscription, mid-stream.
    let (dying, survivor) = if serving == a.url { (a, b) } else { (b, a) };
    dying.kill().await;
    send_n(&s, &client, 5..10).await;
    for _ in 3..10 {
        seen.push(next(&mut sub).await.unwrap());
    }
    assert_eq!(sub.endpoint(), Some(survivor.url.clone()));
    assert!(sub.resubscriptions() >= 1);

    let delivered: Vec<_> = seen.iter().map(|e| e.message_id.clone()).collect();
    let expected: Vec<_> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(delivered, expected, "no gap, no duplicate, in order");
    let ledger: Vec<_> = s
        .ledger
        .events()
        .iter()
        .map(|e| Timestamp(e.timestamp))
        .collect();
    let timestamps: Vec<_> = seen.iter().map(|e| e.timestamp).collect();
    assert_eq!(timestamps, ledger);
    assert_eq!(sub.last_timestamp(), *ledger.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_off_an_endpoint_that_turns_not_serving() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;
    send_n(&s, &client, 0..2).await;
    let mut sub = client.subscribe(Timestamp::MIN);
    assert_eq!(next(&mut sub).await.unwrap().message_id, "m0");
    let first = sub.endpoint().unwrap();
    let (draining, other) = if first == a.url { (&a, &b) } else { (&b, &a) };
    draining.set_serving(false);
    assert_eq!(next(&mut sub).await.unwrap().message_id, "m1");
    send_n(&s, &client, 2..3).await;
    assert_eq!(next(&mut sub).await.unwrap().message_id, "m2");
    assert_eq!(sub.endpoint(), Some(other.url.clone()));
    assert_eq!(sub.resubscriptions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_total_outage() {
    let s = Setup::new();
    let (a, b) = (
        FakeNode::start(&s.ledger).await,
        FakeNode::start(&s.ledger).await,
    );
    let client = s.client(&[&a, &b]).await;
    send_n(&s, &client, 0..1).await;
    let mut sub = client.subscribe(Timestamp::MIN);
    assert_eq!(next(&mut sub).await.unwrap().message_id, "m0");

    a.set_serving(false);
    b.set_serving(false);
    eventually("no endpoint is healthy", || {
        client.healthy_endpoints().is_empty()
    })
    .await;
    // next() keeps waiting, and says it has no endpoint.
    let waited = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(waited.is_err(), "no event during the outage: {waited:?}");
    assert_eq!(sub.endpoint(), None);

    b.set_serving(true);
    eventually("b is back", || client.healthy_endpoints().len() == 1).await;
    send_n(&s, &client, 1..2).await;
    let event = next(&mut sub).await.unwrap();
    assert_eq!(event.message_id, "m1");
    assert_eq!(sub.endpoint(), Some(b.url.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_gap_breaks_the_chain() {
    let s = Setup::new();
    let a = FakeNode::start(&s.ledger).await;
    let client = s.client(&[&a]).await;
    send_n(&s, &client, 0..3).await;
    let ts: Vec<_> = s.ledger.events().iter().map(|e| e.timestamp).collect();
    *s.ledger.drop_event.lock() = Some(ts[1]);

    let mut sub = client.subscribe(Timestamp::MIN);
    assert_eq!(next(&mut sub).await.unwrap().timestamp, Timestamp(ts[0]));
    for _ in 0..2 {
        // The error sticks: the subscription does not silently continue.
        match next(&mut sub).await {
            Err(ClientError::ChainBroken {
                expected_previous,
                got_previous,
                at,
            }) => {
                assert_eq!(expected_previous, Timestamp(ts[0]));
                assert_eq!(got_previous, Timestamp(ts[1]));
                assert_eq!(at, Timestamp(ts[2]));
            }
            other => panic!("expected ChainBroken, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_a_processed_event_checks_the_chain_from_there() {
    let s = Setup::new();
    let a = FakeNode::start(&s.ledger).await;
    let client = s.client(&[&a]).await;
    send_n(&s, &client, 0..3).await;
    let ts: Vec<_> = s.ledger.events().iter().map(|e| e.timestamp).collect();
    let mut sub = client.subscribe(Timestamp(ts[0]));
    let e = next(&mut sub).await.unwrap();
    assert_eq!(
        (e.previous_timestamp, e.timestamp),
        (Timestamp(ts[0]), Timestamp(ts[1]))
    );
    assert_eq!(next(&mut sub).await.unwrap().message_id, "m2");
}
