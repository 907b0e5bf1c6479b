//! One member sending as fast as it can is held to its rate (RESOURCE_EXHAUSTED with a
//! retry time, answered late), while another member's latency stays within twice its
//! unloaded value; unauthenticated calls are limited per address; only the topology
//! manager may broadcast.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_auth_service_client::SequencerAuthServiceClient;
use ordo_sequencer::config::Rate;

use crate::harness::*;

/// The flooder's allowance: sends per second, and its burst.
const RATE: u32 = 100;
/// Concurrent loops of the flooder, each sending again at once whatever the answer.
const FLOODERS: usize = 8;
/// The measured member's sends per phase, one every `PACE`.
const SAMPLES: usize = 120;
const PACE: Duration = Duration::from_millis(20);
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_member_is_throttled_and_others_keep_their_latency() -> Result<()> {
    let (_pg, url) = start_pg("flooding").await?;
    ordo_sequencer::init(&config(&url, "init")).await?;
    let mut cfg = config(&url, "seq-0");
    cfg.limits.member_sends = Rate::new(RATE, RATE);
    let node = start_node_with(cfg).await?;
    let flooder = member(&node, "flooder").await?;
    let quiet = member(&node, "quiet").await?;

    let mut ratios = Vec::new();
    let mut accepted_total = 0;
    let mut flood_time = Duration::ZERO;
    for round in 0..ROUNDS {
        let unloaded = p99(&node, &quiet, &format!("r{round}-u")).await?;
        let flood = Flood::start(&node, &flooder, &quiet.id, round).await?;
        let started = Instant::now();
        let loaded = p99(&node, &quiet, &format!("r{round}-l")).await?;
        let (accepted, refused, hinted) = flood.stop().await?;
        flood_time += started.elapsed();
        accepted_total += accepted;
        let ratio = loaded.as_secs_f64() / unloaded.as_secs_f64();
        println!(
            "round {round}: quiet member p99 {unloaded:?} unloaded, {loaded:?} loaded (×{ratio:.2}); \
             flooder {accepted} accepted, {refused} refused"
        );
        ensure!(refused > 0, "the flooder was never refused");
        ensure!(
            hinted == refused,
            "{refused} refusals, {hinted} with a retry time"
        );
        ratios.push(ratio);
    }
    // The flooder got its allowance and no more: RATE per second plus one burst per round.
    let allowed =
        (flood_time.as_secs_f64() * f64::from(RATE)) as u64 + (ROUNDS as u64 + 1) * u64::from(RATE);
    ensure!(
        accepted_total <= allowed,
        "the flooder got {accepted_total} sends through in {flood_time:?}, more than {allowed}"
    );
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ROUNDS / 2];
    ensure!(
        median <= 2.0,
        "the quiet member's p99 under the flood is ×{median:.2} its unloaded value (rounds: {ratios:?})"
    );
    node.stop().await?;
    Ok(())
}

/// The quiet member's p99 send latency over `SAMPLES` paced sends to itself.
async fn p99(node: &Node, quiet: &Member, tag: &str) -> Result<Duration> {
    let mut client = node.seq().await?;
    let mut latencies = Vec::with_capacity(SAMPLES);
    let mut ticker = tokio::time::interval(PACE);
    for i in 0..SAMPLES {
        ticker.tick().await;
        let req = with_token(
            submission(&format!("q-{tag}-{i}"), &[&quiet.id], b"q"),
            &quiet.token,
        );
        let sent = Instant::now();
        client.send(req).await?;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    Ok(latencies[SAMPLES * 99 / 100])
}

struct Flood {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    hinted: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Flood {
    async fn start(node: &Node, flooder: &Member, to: &str, round: usize) -> Result<Self> {
        let flood = Self {
            stop: Arc::default(),
            accepted: Arc::default(),
            refused: Arc::default(),
            hinted: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for t in 0..FLOODERS {
            let mut client = node.seq().await?;
            let (token, to) = (flooder.token.clone(), to.to_owned());
            let (stop, accepted, refused, hinted) = (
                flood.stop.clone(),
                flood.accepted.clone(),
                flood.refused.clone(),
                flood.hinted.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let req = with_token(
                        submission(&format!("f-{round}-{t}-{i}"), &[&to], b"f"),
                        &token,
                    );
                    match client.send(req).await {
                        Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            if s.metadata().get("retry-after-ms").is_some() {
                                hinted.fetch_add(1, Ordering::Relaxed);
                            }
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(s) => anyhow::bail!("flooder: unexpected {s:?}"),
                    };
                }
                Ok(())
            }));
        }
        Ok(Self { tasks, ..flood })
    }

    async fn stop(self) -> Result<(u64, u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        Ok((
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.hinted.load(Ordering::Relaxed),
        ))
    }
}

#[tokio::test]
async fn unauthenticated_calls_are_limited_per_address() -> Result<()> {
    let (_pg, url) = start_pg("unauthenticated").await?;
    ordo_sequencer::init(&config(&url, "init")).await?;
    let mut cfg = config(&url, "seq-0");
    cfg.limits.unauthenticated = Rate::new(10, 10);
    let node = start_node_with(cfg).await?;
    let alice = member(&node, "alice").await?;
    let mut auth = SequencerAuthServiceClient::new(node.channel().await?);
    let mut refused = None;
    for _ in 0..20 {
        match auth
            .challenge(pb::ChallengeRequest {
                member: alice.id.clone(),
            })
            .await
        {
            Ok(_) => {}
            Err(s) => {
                refused = Some(s);
                break;
            }
        }
    }
    let refused = refused.expect("20 challenges in a row at 10 per second all passed");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains("unauthenticated"), "{refused:?}");
    assert!(refused.metadata().get("retry-after-ms").is_some());
    // An authenticated member's sends are not counted against it.
    send(&node, &alice, submission("after", &[&alice.id], b"x")).await?;
    node.stop().await?;
    Ok(())
}

#[tokio::test]
async fn only_the_broadcasters_may_broadcast() -> Result<()> {
    let (_pg, url) = start_pg("broadcasters").await?;
    ordo_sequencer::init(&config(&url, "init")).await?;
    let mut cfg = config(&url, "seq-0");
    cfg.broadcasters = vec!["topology".into()];
    let node = start_node_with(cfg).await?;
    let alice = member(&node, "alice").await?;
    let topology = member(&node, "topology").await?;
    let to_all = |id: &str| {
        let mut s = submission(id, &[], b"all");
        s.envelopes[0].recipients = Some(pb::Recipients {
            members: vec![],
            broadcast: true,
        });
        s
    };
    let refused = send(&node, &alice, to_all("a-all"))
        .await
        .expect_err("alice broadcast");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("may not broadcast"),
        "{refused:?}"
    );
    // Addressed to members, alice's sends pass; the topology manager's broadcast too.
    send(&node, &alice, submission("a-one", &[&topology.id], b"x")).await?;
    send(&node, &topology, to_all("t-all")).await?;
    let seen = collect(&node, &alice, 0, 1).await?;
    assert_eq!(seen[0].message_id, "t-all", "{seen:?}");
    node.stop().await?;
    Ok(())
}
