use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ordo_core::{Envelope, KeyPair, MemberId, Recipients, Submission, Timestamp};
use ordo_sequencer_client::{ClientError, SequencerClient};
use tonic::Code;

use crate::fake::FakeNode;
use crate::{Setup, eventually, now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robins_sends_across_healthy_endpoints() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    for i in 0..10 {
        let r = client.send(s.submission(&format!("m{i}"))).await.unwrap();
        assert!(!r.duplicate);
    }
    assert_eq!(
        (a.batch_calls(), b.batch_calls()),
        (5, 5),
        "sequential sends alternate"
    );
    assert_eq!(s.ledger.events().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_share_batches() {
    let s = Setup::new();
    let a = FakeNode::start(&s.ledger).await;
    let mut config = s.config(vec![a.url.clone()]);
    config.linger = Duration::from_millis(50);
    config.max_batch = 30;
    let client = SequencerClient::connect(config).await.unwrap();

    let sends = (0..60).map(|i| {
        let (client, submission) = (client.clone(), s.submission(&format!("m{i}")));
        tokio::spawn(async move { client.send(submission).await })
    });
    let mut timestamps = Vec::new();
    for send in sends.collect::<Vec<_>>() {
        timestamps.push(send.await.unwrap().unwrap().timestamp);
    }
    timestamps.sort();
    timestamps.dedup();
    assert_eq!(timestamps.len(), 60, "every send got its own timestamp");
    let sizes = a.batch_sizes();
    assert!(
        sizes.iter().all(|&n| n <= 30),
        "max_batch respected: {sizes:?}"
    );
    assert!(
        sizes.len() <= 6,
        "60 concurrent sends took {} calls: {sizes:?}",
        sizes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_avoid_a_not_serving_endpoint_and_use_it_again_when_it_returns() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    a.set_serving(false);
    eventually("a is out", || client.healthy_endpoints() == [b.url.clone()]).await;
    let a_calls = a.batch_calls();
    for i in 0..6 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
    assert_eq!(
        a.batch_calls(),
        a_calls,
        "no send went to the NOT_SERVING node"
    );

    a.set_serving(true);
    eventually("a is back", || client.healthy_endpoints().len() == 2).await;
    for i in 6..10 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
    assert_eq!(a.batch_calls(), a_calls + 2, "a takes its share again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_fail_over_when_a_node_dies_and_return_when_it_restarts() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    let addr = a.addr;
    a.kill().await;
    // No waiting for the health watch: sends must succeed right away.
    for i in 0..6 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
    assert_eq!(s.ledger.events().len(), 6);
    eventually("the dead node is out", || {
        client.healthy_endpoints() == [b.url.clone()]
    })
    .await;

    let a = FakeNode::start_at(&s.ledger, addr).await;
    eventually("the restarted node is back", || {
        client.healthy_endpoints().len() == 2
    })
    .await;
    for i in 6..10 {
        client.send(s.submission(&format!("m{i}"))).await.unwrap();
    }
    assert_eq!(a.batch_calls(), 2, "the restarted node takes its share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_idempotently() {
    let s = Setup::new();
    let (a, b, client) = s.two_nodes().await;

    s.ledger.lose_answers.store(1, Ordering::SeqCst);
    let r = client.send(s.submission("once")).await.unwrap();
    assert!(r.duplicate, "the retry found the first attempt's result");
    let events = s.ledger.events();
    assert_eq!(events.len(), 1, "sequenced exactly once");
    assert_eq!(r.timestamp, Timestamp(events[0].timestamp));
    assert_eq!(a.batch_calls() + b.batch_calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definite_rejections_return_at_once() {
    let s = Setup::new();
    let a = FakeNode::start(&s.ledger).await;
    let client = s.client(&[&a]).await;

    let stranger = MemberId::new("bob", &KeyPair::generate().public()).unwrap();
    let mut unknown = s.submission("to-stranger");
    unknown.envelopes = vec![Envelope {
        recipients: Recipients::members([stranger]),
        content: vec![],
    }];
    match client.send(unknown).await {
        Err(ClientError::Rejected(status)) => assert_eq!(status.code(), Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    let mut late = s.submission("late");
    late.max_sequencing_time = Timestamp(1);
    match client.send(late).await {
        Err(ClientError::Rejected(status)) => assert_eq!(status.code(), Code::FailedPrecondition),
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
    assert_eq!(a.batch_calls(), 2, "no retries of definite answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_max_sequencing_time_then_expires() {
    let s = Setup::new();
    let (a, b) = (
        FakeNode::start(&s.ledger).await,
        FakeNode::start(&s.ledger).await,
    );
    let client = s.client(&[&a, &b]).await;
    s.ledger.refuse_sends.store(true, Ordering::SeqCst);

    let mst = now().plus(Duration::from_millis(300));
    let submission = Submission {
        max_sequencing_time: mst,
        ..s.submission("doomed")
    };
    let started = Instant::now();
    match client.send(submission).await {
        Err(ClientError::Expired {
            message_id,
            max_sequencing_time,
        }) => {
            assert_eq!(message_id, "doomed");
            assert_eq!(max_sequencing_time, mst);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthenticates_once_when_the_token_is_refused() {
    let s = Setup::new();
    let a = FakeNode::start(&s.ledger).await;
    let client = s.client(&[&a]).await;
    client.send(s.submission("m1")).await.unwrap();
    assert_eq!(s.ledger.tokens_issued(), 1);

    s.ledger.revoke_tokens();
    client.send(s.submission("m2")).await.unwrap();
    assert_eq!(s.ledger.tokens_issued(), 2);
    assert!(client.time().await.unwrap() > Timestamp::MIN);
    client.acknowledge(Timestamp(1)).await.unwrap();
    assert_eq!(s.ledger.tokens_issued(), 2, "the new token is cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_are_signed_with_the_member_key() {
    let s = Setup::new();
    let (_a, _b, client) = s.two_nodes().await;
    let sent = client.send(s.submission("m1")).await.unwrap().timestamp;
    // The fake accepts only acknowledgements that verify with alice's registered key.
    client.acknowledge(sent).await.unwrap();
    assert_eq!(s.ledger.acknowledged(&s.alice), sent.micros());
    client.acknowledge(Timestamp(1)).await.unwrap();
    assert_eq!(s.ledger.acknowledged(&s.alice), sent.micros(), "never back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_fast_without_a_healthy_endpoint() {
    let s = Setup::new();
    // Ports nobody listens on.
    let dead: Vec<String> = {
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        [l1, l2]
            .iter()
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect()
    };
    let mut config = s.config(dead.clone());
    config.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    match SequencerClient::connect(config).await {
        Err(ClientError::NoHealthyEndpoint { endpoints }) => assert_eq!(endpoints, dead),
        other => panic!("expected NoHealthyEndpoint, got {:?}", other.err()),
    }
    assert!(started.elapsed() < Duration::from_secs(1));

    // A connected client whose nodes all turn NOT_SERVING.
    let (a, b) = (
        FakeNode::start(&s.ledger).await,
        FakeNode::start(&s.ledger).await,
    );
    let client = s.client(&[&a, &b]).await;
    a.set_serving(false);
    b.set_serving(false);
    eventually("no endpoint is healthy", || {
        client.healthy_endpoints().is_empty()
    })
    .await;
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(1), client.send(s.submission("m")))
        .await
        .expect("send must not hang");
    assert!(
        matches!(outcome, Err(ClientError::NoHealthyEndpoint { .. })),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}
