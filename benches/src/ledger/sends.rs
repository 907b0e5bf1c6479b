//! The sequencer baseline: how many events per second the network's own sequencers take,
//! measured through the real client (`ordo_sequencer_client`, with its batching) from
//! members of the benchmark's own, registered through the sequencer admin API. Each
//! sender keeps many sends in flight (a closed loop that never waits on the ledger), each
//! with the content and the number of recipients of one of the run's own events, so the
//! sequencer stores what it stored for the ledger. Nothing subscribes to the benchmark's
//! members: this is what the sequencers commit, not what a member receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ordo_core::{Clock, Envelope, KeyPair, MemberId, Recipients, Submission, SystemClock};
use ordo_ledger_client::Network;
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use serde::Serialize;

use super::rows::EventTemplate;

/// Sends in flight per sender.
const IN_FLIGHT: usize = 64;
/// Recipient members; an event goes to as many of them as its template had recipients.
const RECIPIENTS: usize = 3;
/// Sends before the measured window.
const WARM_UP: Duration = Duration::from_secs(1);

#[derive(Serialize)]
pub struct Figures {
    /// Sending members, each with its own client.
    pub senders: usize,
    pub in_flight_per_sender: usize,
    pub seconds: f64,
    pub accepted: u64,
    pub failed: u64,
    pub events_per_sec: f64,
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    next: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
}

/// Events per second `senders` members make the network's sequencers take in `window`.
pub async fn measure(
    network: &Network,
    templates: &[EventTemplate],
    senders: usize,
    window: Duration,
) -> Result<Figures> {
    let endpoints: Vec<String> = network.sequencers.iter().map(|s| s.grpc.clone()).collect();
    let first = endpoints
        .first()
        .context("network.json lists no sequencer")?;
    let admin = AdminClient::connect(first, &network.auth.sequencer_admin_token).await?;
    // Names of this run's own: registration is by name.
    let tag = format!("bench-{:08x}", rand::random::<u32>());
    let register = async |name: String| -> Result<(MemberId, Arc<KeyPair>)> {
        let key = KeyPair::generate();
        let (member, _) = admin
            .register_member(&name, &key.public())
            .await
            .with_context(|| format!("registering {name} with the sequencer"))?;
        Ok((member, Arc::new(key)))
    };
    let mut recipients = Vec::new();
    for r in 0..RECIPIENTS {
        recipients.push(register(format!("{tag}-r{r}")).await?.0);
    }
    // Each event's recipients: as many as its template's.
    let sends: Arc<Vec<(Recipients, Vec<u8>)>> = Arc::new(
        templates
            .iter()
            .map(|t| {
                let n = t.recipients.len().clamp(1, RECIPIENTS);
                let to = Recipients::members(recipients[..n].iter().cloned());
                (to, t.payload.clone())
            })
            .collect(),
    );
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        next: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    // Every sender connected before any sends, so that a failure leaves nothing running.
    let mut clients = Vec::new();
    for s in 0..senders {
        let name = format!("{tag}-s{s}");
        let (member, key) = register(name.clone()).await?;
        let mut eps = endpoints.clone();
        eps.rotate_left(s % endpoints.len());
        // A certificate naming the sender, from the network's CA (none in plain text).
        let tls = network.member_tls(&name)?;
        clients.push(
            SequencerClient::connect(ClientConfig {
                tls,
                ..ClientConfig::new(eps, member, key)
            })
            .await?,
        );
    }
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..IN_FLIGHT {
            let (client, shared, sends) = (client.clone(), shared.clone(), sends.clone());
            tasks.push(tokio::spawn(async move {
                while !shared.stop.load(Ordering::Relaxed) {
                    let k = shared.next.fetch_add(1, Ordering::Relaxed);
                    let (to, content) = &sends[(k % sends.len() as u64) as usize];
                    let submission = Submission {
                        message_id: format!("bench-{k}"),
                        max_sequencing_time: SystemClock.now().plus(Duration::from_secs(30)),
                        envelopes: vec![Envelope {
                            recipients: to.clone(),
                            content: content.clone(),
                        }],
                    };
                    let ok = client.send(submission).await.is_ok();
                    if shared.measuring.load(Ordering::Relaxed) {
                        let counter = if ok { &shared.accepted } else { &shared.failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    tokio::time::sleep(WARM_UP).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let accepted = shared.accepted.load(Ordering::Relaxed);
    Ok(Figures {
        senders,
        in_flight_per_sender: IN_FLIGHT,
        seconds: (seconds * 100.0).round() / 100.0,
        accepted,
        failed: shared.failed.load(Ordering::Relaxed),
        events_per_sec: (accepted as f64 / seconds).round(),
    })
}
