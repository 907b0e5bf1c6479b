//! Acceptance: a client subscribed through a node that is SIGKILLed continues on another
//! node with no gap and no duplicate; sends continue through the remaining nodes; a node
//! that comes back is used again.

use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Clock, Envelope, Recipients, SequencedEvent, Submission, SystemClock, Timestamp};
use parking_lot::Mutex;

use crate::common::{Network, check_stream, metric_sum};

const SENDS_METRIC: &str = "ordo_sequencer_sends_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscription_and_sends_move_off_a_killed_node_and_back() -> anyhow::Result<()> {
    let mut net = Network::start(3).await?;
    let (alice, alice_key) = net.register("alice").await?;
    let (bob, bob_key) = net.register("bob").await?;
    let sender = net.client(&alice, &alice_key).await?;
    let receiver = net.client(&bob, &bob_key).await?;

    let received: Arc<Mutex<Vec<SequencedEvent>>> = Arc::default();
    let mut sub = receiver.subscribe(Timestamp::MIN);
    let sink = received.clone();
    let subscriber = tokio::spawn(async move {
        loop {
            let event = sub.next().await?;
            sink.lock().push(event);
            if sink.lock().len() == 1 {
                // Publish where the subscription is served once it is live.
                *SERVED_BY.lock() = sub.endpoint();
            }
            if sink.lock().len() >= 300 {
                return Ok::<_, anyhow::Error>(sub.resubscriptions());
            }
        }
    });

    let send = |k: usize| {
        let sender = sender.clone();
        let bob = bob.clone();
        async move {
            sender
                .send(Submission {
                    message_id: format!("m-{k}"),
                    max_sequencing_time: SystemClock.now().plus(Duration::from_secs(20)),
                    envelopes: vec![Envelope {
                        recipients: Recipients::members([bob]),
                        content: k.to_le_bytes().to_vec(),
                    }],
                })
                .await
        }
    };
    for k in 0..100 {
        send(k).await?;
    }
    let served_by = ordo_testkit::wait_for(
        "the subscription to go live",
        Duration::from_secs(20),
        || async { SERVED_BY.lock().clone() },
    )
    .await?;
    let victim = net
        .nodes
        .iter()
        .position(|n| n.endpoint() == served_by)
        .ok_or_else(|| anyhow::anyhow!("subscription served by unknown endpoint {served_by}"))?;
    net.kill(victim);

    // Sends keep working through the other two nodes.
    for k in 100..200 {
        send(k).await?;
    }
    let healthy = ordo_testkit::wait_for(
        "the killed node to leave the healthy set",
        Duration::from_secs(10),
        || {
            let h = sender.healthy_endpoints();
            async move { (h.len() == 2).then_some(h) }
        },
    )
    .await?;
    assert!(!healthy.contains(&served_by));

    // The node comes back and is used again.
    net.start_node(victim).await?;
    ordo_testkit::wait_for(
        "the restarted node to be healthy again",
        Duration::from_secs(20),
        || {
            let n = sender.healthy_endpoints().len();
            async move { (n == 3).then_some(()) }
        },
    )
    .await?;
    for k in 200..300 {
        send(k).await?;
    }
    let sends_on_victim = metric_sum(&net.metrics(victim).await?, SENDS_METRIC);
    assert!(
        sends_on_victim > 0.0,
        "the restarted node received no sends"
    );

    let resubscriptions = tokio::time::timeout(Duration::from_secs(30), subscriber).await???;
    assert!(resubscriptions >= 1, "the subscription never moved");
    let expected = net.events_for(&bob).await?;
    assert_eq!(expected.len(), 300);
    check_stream("bob", &received.lock(), &expected)?;
    Ok(())
}

static SERVED_BY: Mutex<Option<String>> = Mutex::new(None);
