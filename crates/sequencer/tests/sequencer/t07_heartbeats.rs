//! Subscription heartbeats: a subscription that asks for them gets one after every interval
//! without a message, each saying how far the stream is caught up, with events in between
//! still chained; one that does not ask (older clients) gets none.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ordo_proto::sequencer::v1 as pb;
use tonic::Streaming;

use crate::harness::*;

async fn open(node: &Node, m: &Member, heartbeat_ms: u32) -> Result<Streaming<pb::SequencedEvent>> {
    let request = pb::SubscribeRequest {
        member: m.id.clone(),
        after_timestamp: 0,
        heartbeat_interval_ms: heartbeat_ms,
    };
    Ok(node
        .seq()
        .await?
        .subscribe(with_token(request, &m.token))
        .await?
        .into_inner())
}

async fn next(stream: &mut Streaming<pb::SequencedEvent>) -> Result<pb::SequencedEvent> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .context("no message within 10 s")??
        .context("the stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscriptions_get_heartbeats_when_they_ask() -> Result<()> {
    let net = start_net("heartbeats", 1).await?;
    let node = &net.nodes[0];
    let alice = member(node, "alice").await?;
    let bob = member(node, "bob").await?;
    let first = send(node, &alice, submission("m-0", &[&bob.id], b"0"))
        .await?
        .timestamp;

    let mut beating = open(node, &bob, 100).await?;
    let mut quiet = open(node, &bob, 0).await?;
    for stream in [&mut beating, &mut quiet] {
        let event = next(stream).await?;
        assert_eq!((event.timestamp, event.heartbeat), (first, None));
    }

    // Idle: about one heartbeat per 100 ms, each caught up past the only event.
    let started = Instant::now();
    for _ in 0..5 {
        let beat = next(&mut beating).await?;
        let heartbeat = beat
            .heartbeat
            .context("an idle stream carries heartbeats")?;
        assert!(heartbeat.caught_up_to >= first, "{heartbeat:?}");
        assert_eq!((beat.timestamp, beat.previous_timestamp), (0, 0));
        assert!(beat.message_id.is_empty() && beat.envelopes.is_empty());
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "five heartbeats at 100 ms took {took:?}"
    );

    // An event among heartbeats still chains to the previous event.
    let second = send(node, &alice, submission("m-1", &[&bob.id], b"1"))
        .await?
        .timestamp;
    let event = loop {
        let message = next(&mut beating).await?;
        if message.heartbeat.is_none() {
            break message;
        }
    };
    assert_eq!((event.previous_timestamp, event.timestamp), (first, second));

    // The stream that did not ask got the event and nothing else.
    let event = next(&mut quiet).await?;
    assert_eq!((event.timestamp, event.heartbeat), (second, None));
    let nothing = tokio::time::timeout(Duration::from_millis(500), quiet.message()).await;
    assert!(nothing.is_err(), "no heartbeat unasked: {nothing:?}");
    Ok(())
}
