//! Acceptance: one total order under concurrent senders on three node processes, one of
//! them SIGKILLed mid-run. Every recipient's stream is identical whichever node served it,
//! every accepted send reaches each of its recipients exactly once, timestamps strictly
//! increase, and no reader ever saw a gap that it later filled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ordo_core::{Envelope, MemberId, Recipients, SequencedEvent, Submission, Timestamp};
use parking_lot::Mutex;
use tokio::task::JoinSet;

use crate::common::{Network, check_stream};

const SENDERS: usize = 8;
const RECIPIENTS: usize = 4;
const SENDS_PER_SENDER: usize = 250;
const IN_FLIGHT_PER_SENDER: usize = 16;

/// What a sender was told: sequenced at `timestamp` for `recipients`.
struct Accepted {
    message_id: String,
    sender: MemberId,
    timestamp: Timestamp,
    recipients: BTreeSet<MemberId>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn total_order_survives_a_killed_node() -> anyhow::Result<()> {
    let mut net = Network::start(3).await?;
    let mut recipients = Vec::new();
    for i in 0..RECIPIENTS {
        recipients.push(net.register(&format!("recipient-{i}")).await?);
    }
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(net.register(&format!("sender-{i}")).await?);
    }

    // Two subscriptions per recipient, started on different nodes. Each reports the node
    // serving it, so that the node killed below is one that serves subscriptions.
    let mut subscriptions = Vec::new();
    let mut serving: Vec<Arc<Mutex<Option<String>>>> = Vec::new();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut subscribers = JoinSet::new();
    for (r, (member, key)) in recipients.iter().enumerate() {
        for copy in 0..2 {
            let client = net.client_preferring(member, key, r * 2 + copy).await?;
            let mut sub = client.subscribe(Timestamp::MIN);
            let received: Arc<Mutex<Vec<SequencedEvent>>> = Arc::default();
            subscriptions.push((
                format!("{member} #{copy}"),
                member.clone(),
                received.clone(),
            ));
            let stop = stop.clone();
            let now_on: Arc<Mutex<Option<String>>> = Arc::default();
            serving.push(now_on.clone());
            subscribers.spawn(async move {
                let mut first_endpoint = None;
                loop {
                    tokio::select! {
                        _ = stop.notified() => return Ok::<_, anyhow::Error>((first_endpoint, sub.resubscriptions())),
                        event = sub.next() => {
                            let event = event?;
                            if first_endpoint.is_none() {
                                first_endpoint = sub.endpoint();
                            }
                            *now_on.lock() = sub.endpoint();
                            received.lock().push(event);
                        }
                    }
                }
            });
        }
    }

    let accepted: Arc<Mutex<Vec<Accepted>>> = Arc::default();
    // Every sender pauses a third of the way through until node 2 has been killed, so the
    // kill always lands mid-run, however fast the nodes are.
    let paused = Arc::new(AtomicUsize::new(0));
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let mut sending = JoinSet::new();
    for (s, (member, key)) in senders.iter().enumerate() {
        let client = net.client_preferring(member, key, s).await?;
        let recipients: Vec<MemberId> = recipients.iter().map(|(m, _)| m.clone()).collect();
        let (accepted, sender) = (accepted.clone(), member.clone());
        let (paused, mut killed) = (paused.clone(), killed_rx.clone());
        sending.spawn(async move {
            let mut in_flight = JoinSet::new();
            for k in 0..SENDS_PER_SENDER {
                if k == SENDS_PER_SENDER / 3 {
                    paused.fetch_add(1, Ordering::Relaxed);
                    killed.wait_for(|k| *k).await?;
                }
                // Overlapping recipient sets: a deterministic non-empty subset per message.
                let mask = (k * 7 + s * 3) % ((1 << RECIPIENTS) - 1) + 1;
                let to: BTreeSet<MemberId> = (0..RECIPIENTS)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| recipients[i].clone())
                    .collect();
                let submission = Submission {
                    message_id: format!("{s}-{k}"),
                    max_sequencing_time: ordo_core::Clock::now(&ordo_core::SystemClock)
                        .plus(Duration::from_secs(30)),
                    envelopes: vec![Envelope {
                        recipients: Recipients::members(to.iter().cloned()),
                        content: format!("{sender}/{k}").into_bytes(),
                    }],
                };
                let (client, accepted, sender) = (client.clone(), accepted.clone(), sender.clone());
                in_flight.spawn(async move {
                    if let Ok(done) = client.send(submission.clone()).await {
                        accepted.lock().push(Accepted {
                            message_id: submission.message_id,
                            sender,
                            timestamp: done.timestamp,
                            recipients: to,
                        });
                    }
                });
                while in_flight.len() >= IN_FLIGHT_PER_SENDER {
                    in_flight.join_next().await;
                }
            }
            while in_flight.join_next().await.is_some() {}
            Ok::<_, anyhow::Error>(())
        });
    }

    // A third of the way through, with sends still in flight, kill the node that serves
    // the most subscriptions (where a subscription starts depends on the client's
    // round-robin, which its authentication calls also advance).
    let total = SENDERS * SENDS_PER_SENDER;
    ordo_testkit::wait_for(
        "every sender a third through",
        Duration::from_secs(60),
        || {
            let n = paused.load(Ordering::Relaxed);
            async move { (n == SENDERS).then_some(()) }
        },
    )
    .await?;
    let on: Vec<String> = ordo_testkit::wait_for(
        "every subscription to report its node",
        Duration::from_secs(30),
        || {
            let on: Option<Vec<String>> = serving.iter().map(|s| s.lock().clone()).collect();
            async move { on }
        },
    )
    .await?;
    let endpoints = net.endpoints();
    let victim = (0..endpoints.len())
        .max_by_key(|&i| on.iter().filter(|e| **e == endpoints[i]).count())
        .unwrap_or(1);
    net.kill(victim);
    killed_tx.send(true)?;
    while let Some(r) = sending.join_next().await {
        r??;
    }

    let accepted = std::mem::take(&mut *accepted.lock());
    // Almost every send succeeds: retries carry them across the killed node.
    assert!(
        accepted.len() * 10 >= total * 9,
        "only {} of {total} sends were accepted",
        accepted.len()
    );

    // Each subscription must reach the database's full list for its member.
    let mut expected: HashMap<MemberId, Vec<Timestamp>> = HashMap::new();
    for (member, _) in &recipients {
        expected.insert(member.clone(), net.events_for(member).await?);
    }
    for (who, member, received) in &subscriptions {
        let want = expected[member].len();
        let got = ordo_testkit::wait_for(
            &format!("{who} to receive {want} events"),
            Duration::from_secs(60),
            || {
                let n = received.lock().len();
                async move { (n >= want).then_some(n) }
            },
        )
        .await;
        if let Err(e) = got {
            let logs: Vec<String> = (0..endpoints.len())
                .filter(|&i| i != victim)
                .map(|i| net.log(i))
                .collect();
            anyhow::bail!("{e}; surviving nodes' logs:\n{}", logs.join("\n"));
        }
    }
    stop.notify_waiters();
    let mut nodes_serving = BTreeSet::new();
    let mut resubscriptions = 0;
    while let Some(r) = subscribers.join_next().await {
        let (endpoint, moved) = r??;
        nodes_serving.extend(endpoint);
        resubscriptions += moved;
    }
    assert!(
        nodes_serving.len() >= 2,
        "subscriptions were served by {nodes_serving:?} only"
    );
    assert!(
        resubscriptions > 0,
        "the killed node served no subscription"
    );

    // Identical streams per recipient, equal to the database's order, chained.
    let mut by_ts: BTreeMap<Timestamp, SequencedEvent> = BTreeMap::new();
    for (who, member, received) in &subscriptions {
        let received = received.lock();
        check_stream(who, &received, &expected[member])?;
        for e in received.iter() {
            by_ts.entry(e.timestamp).or_insert_with(|| e.clone());
        }
    }
    for (a, b) in subscriptions
        .iter()
        .zip(subscriptions.iter().skip(1))
        .step_by(2)
    {
        assert_eq!(*a.2.lock(), *b.2.lock(), "{} and {} differ", a.0, b.0);
    }

    // Every accepted send exactly once at each of its recipients, nowhere else.
    let mut seen_ts = BTreeSet::new();
    for a in &accepted {
        assert!(
            seen_ts.insert(a.timestamp),
            "two sends were given timestamp {:?}",
            a.timestamp
        );
        for (member, list) in &expected {
            let n = list.iter().filter(|t| **t == a.timestamp).count();
            let want = usize::from(a.recipients.contains(member));
            assert_eq!(
                n, want,
                "send {} at {:?}: delivered {n} times to {member}",
                a.message_id, a.timestamp
            );
        }
        let event = by_ts.get(&a.timestamp).ok_or_else(|| {
            anyhow::anyhow!("accepted send {} was delivered to nobody", a.message_id)
        })?;
        assert_eq!(event.sender, a.sender);
        assert_eq!(event.message_id, a.message_id);
    }
    Ok(())
}
