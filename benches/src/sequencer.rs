//! `ordo-bench sequencer`: N sequencer nodes (in this process, each with its own listeners
//! and database pool) over one durable Postgres; S senders through the real client; one
//! subscriber per recipient spread over the nodes. Measures sequenced events per second
//! and send-to-delivery latency, then checks every delivery against the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ordo_core::{
    Clock, Envelope, KeyPair, MemberId, Recipients, Submission, SystemClock, Timestamp,
};
use ordo_sequencer::{Listeners, SequencerConfig};
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{PgCluster, PgOptions, free_addr};
use parking_lot::Mutex;
use serde::Serialize;

use crate::{baseline, stats};

#[derive(clap::Args)]
pub struct Args {
    /// Sequencer nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Sending members, each with its own client.
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Receiving members, one subscription each.
    #[arg(long, default_value_t = 4)]
    recipients: usize,
    /// Recipients per send.
    #[arg(long, default_value_t = 2)]
    fanout: usize,
    /// Bytes of content per send.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Open-loop load: sends per second in total. Without it the load is closed-loop with
    /// `--in-flight` outstanding sends per sender.
    #[arg(long)]
    rate: Option<u64>,
    /// Outstanding sends per sender in closed-loop mode.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// The clients' send linger in milliseconds (how long a send waits to be batched with
    /// others into one call); default: the client's default.
    #[arg(long)]
    linger_ms: Option<f64>,
    /// Seconds the baseline writes for (COPY, then INSERT).
    #[arg(long, default_value_t = 3)]
    baseline_seconds: u64,
    /// An extra Postgres setting for the benchmark's cluster, `name=value` (repeatable),
    /// e.g. `--pg max_wal_size=8GB`; reported in the output.
    #[arg(long = "pg", value_name = "NAME=VALUE", value_parser = pg_setting)]
    pg_settings: Vec<(String, String)>,
    /// Print compact JSON (one line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
pub struct Report {
    /// Postgres settings given with `--pg`, beyond the benchmark's durable defaults.
    pg_settings: Vec<String>,
    nodes: usize,
    senders: usize,
    recipients: usize,
    fanout: usize,
    payload: usize,
    seconds: f64,
    mode: String,
    rate: Option<u64>,
    accepted: u64,
    failed_sends: u64,
    events_per_sec: f64,
    delivered_per_sec: f64,
    /// Send to delivery at the subscriber.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The send call alone (until the sender knows the timestamp).
    send_p50_ms: f64,
    send_p99_ms: f64,
    baseline_copy_rows_per_sec: f64,
    baseline_insert_rows_per_sec: f64,
    ratio_to_copy: f64,
    ratio_to_insert: f64,
    lost: u64,
    duplicated: u64,
    order_violations: u64,
    synchronous_commit: String,
}

/// Content: sender index, sequence number and send time (µs since the run's epoch), then
/// padding up to the payload size.
fn content(sender: u32, seq: u64, sent_micros: u64, payload: usize) -> Vec<u8> {
    let mut c = Vec::with_capacity(payload.max(20));
    c.extend_from_slice(&sender.to_le_bytes());
    c.extend_from_slice(&seq.to_le_bytes());
    c.extend_from_slice(&sent_micros.to_le_bytes());
    c.resize(payload.max(20), 0x5a);
    c
}

fn sent_micros(content: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(content.get(12..20)?.try_into().ok()?))
}

/// What one subscriber received: (timestamp, send time µs, latency µs) per delivery.
type Log = Arc<Mutex<Vec<(Timestamp, u64, u64)>>>;

struct Shared {
    epoch: Instant,
    measuring: AtomicBool,
    stop: AtomicBool,
    accepted: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    /// Send-call latencies (µs) of the sends made while measuring.
    send_latencies: Mutex<Vec<u64>>,
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.nodes >= 1 && args.senders >= 1 && args.recipients >= 1,
        "need at least one node, sender and recipient"
    );
    anyhow::ensure!(
        args.fanout >= 1 && args.fanout <= args.recipients,
        "--fanout must be between 1 and --recipients"
    );
    let settings = args.pg_settings.clone();
    let pg = tokio::task::spawn_blocking(move || {
        PgCluster::start(PgOptions {
            durable: true,
            settings,
            ..PgOptions::default()
        })
    })
    .await??;
    let url = pg.create_database("sequencer").await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let (synchronous_commit,): (String,) = sqlx::query_as("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await?;

    let window = Duration::from_secs(args.baseline_seconds);
    let copy = baseline::copy_rows_per_sec(&pool, args.payload, window).await?;
    let insert = baseline::insert_rows_per_sec(&pool, args.payload, 8, 100, window).await?;
    sqlx::query("DROP TABLE bench_scratch")
        .execute(&pool)
        .await?;
    eprintln!("baseline: COPY {copy:.0} rows/s, INSERT {insert:.0} rows/s");

    // The nodes.
    let admin_token = "bench-admin".to_owned();
    let mut endpoints = Vec::new();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut node_tasks = Vec::new();
    for i in 1..=args.nodes {
        let config = SequencerConfig {
            node_name: format!("sequencer-{i}"),
            database_url: url.clone(),
            grpc_listen: free_addr(),
            http_listen: free_addr(),
            admin_token: admin_token.clone(),
            ..SequencerConfig::default()
        };
        config.validate()?;
        if i == 1 {
            ordo_sequencer::init(&config).await?;
        }
        endpoints.push(format!("http://{}", config.grpc_listen));
        let listeners = Listeners::bind(&config).await?;
        let mut rx = shutdown_rx.clone();
        node_tasks.push(tokio::spawn(ordo_sequencer::run(
            config,
            listeners,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        )));
    }

    let admin = AdminClient::connect(&endpoints[0], &admin_token).await?;
    let register = async |name: String| -> anyhow::Result<(MemberId, Arc<KeyPair>)> {
        let key = KeyPair::generate();
        let (member, _) = admin.register_member(&name, &key.public()).await?;
        Ok((member, Arc::new(key)))
    };
    let mut receivers = Vec::new();
    for r in 0..args.recipients {
        receivers.push(register(format!("recipient-{r}")).await?);
    }
    let mut senders = Vec::new();
    for s in 0..args.senders {
        senders.push(register(format!("sender-{s}")).await?);
    }
    let linger_ms = args.linger_ms;
    let client = async |i: usize,
                        (member, key): &(MemberId, Arc<KeyPair>)|
           -> anyhow::Result<SequencerClient> {
        let mut eps = endpoints.clone();
        let n = eps.len();
        eps.rotate_left(i % n);
        let mut config = ClientConfig::new(eps, member.clone(), key.clone());
        if let Some(ms) = linger_ms {
            config.linger = Duration::from_secs_f64(ms / 1000.0);
        }
        Ok(SequencerClient::connect(config).await?)
    };

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        accepted: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        send_latencies: Mutex::default(),
    });

    // Subscribers record (timestamp, send time, latency), both µs, per delivery.
    let mut logs: Vec<(MemberId, Log)> = Vec::new();
    let mut sub_tasks = Vec::new();
    let chain_errors = Arc::new(AtomicU64::new(0));
    for (r, receiver) in receivers.iter().enumerate() {
        let c = client(r, receiver).await?;
        let log: Log = Arc::default();
        logs.push((receiver.0.clone(), log.clone()));
        let (shared, chain_errors) = (shared.clone(), chain_errors.clone());
        sub_tasks.push(tokio::spawn(async move {
            let mut sub = c.subscribe(Timestamp::MIN);
            loop {
                match sub.next().await {
                    Ok(event) => {
                        let now = shared.epoch.elapsed().as_micros() as u64;
                        let sent = event
                            .envelopes
                            .first()
                            .and_then(|e| sent_micros(&e.content))
                            .unwrap_or(now);
                        if shared.measuring.load(Ordering::Relaxed) {
                            shared.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        log.lock()
                            .push((event.timestamp, sent, now.saturating_sub(sent)));
                    }
                    Err(e) => {
                        eprintln!("subscription error: {e}");
                        chain_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }

    // Senders.
    let receiver_ids: Arc<Vec<MemberId>> =
        Arc::new(receivers.iter().map(|(m, _)| m.clone()).collect());
    let mut send_tasks = Vec::new();
    let per_sender_rate = args
        .rate
        .map(|r| (r as f64 / args.senders as f64).max(0.001));
    for (s, sender) in senders.iter().enumerate() {
        let c = client(s + 1, sender).await?;
        let seq = Arc::new(AtomicU64::new(0));
        let workers = if per_sender_rate.is_some() {
            1
        } else {
            args.in_flight
        };
        for _ in 0..workers {
            let (c, shared, seq, ids) =
                (c.clone(), shared.clone(), seq.clone(), receiver_ids.clone());
            let (payload, fanout) = (args.payload, args.fanout);
            send_tasks.push(tokio::spawn(async move {
                let one = move |k: u64, c: SequencerClient, shared: Arc<Shared>| {
                    let first = (s + k as usize) % ids.len();
                    let to = (0..fanout).map(|j| ids[(first + j) % ids.len()].clone());
                    let submission = Submission {
                        message_id: k.to_string(),
                        max_sequencing_time: SystemClock.now().plus(Duration::from_secs(30)),
                        envelopes: vec![Envelope {
                            recipients: Recipients::members(to),
                            content: content(
                                s as u32,
                                k,
                                shared.epoch.elapsed().as_micros() as u64,
                                payload,
                            ),
                        }],
                    };
                    async move {
                        let started = Instant::now();
                        let ok = c.send(submission).await.is_ok();
                        if shared.measuring.load(Ordering::Relaxed) {
                            shared
                                .send_latencies
                                .lock()
                                .push(started.elapsed().as_micros() as u64);
                            let counter = if ok { &shared.accepted } else { &shared.failed };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                };
                match per_sender_rate {
                    None => {
                        while !shared.stop.load(Ordering::Relaxed) {
                            let k = seq.fetch_add(1, Ordering::Relaxed);
                            one(k, c.clone(), shared.clone()).await;
                        }
                    }
                    Some(rate) => {
                        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                        let mut inflight = Vec::new();
                        while !shared.stop.load(Ordering::Relaxed) {
                            tick.tick().await;
                            let k = seq.fetch_add(1, Ordering::Relaxed);
                            inflight.push(tokio::spawn(one(k, c.clone(), shared.clone())));
                            inflight.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                        }
                        for t in inflight {
                            let _ = t.await;
                        }
                    }
                }
            }));
        }
    }

    // Warm up for a second, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let measure_start_micros = shared.epoch.elapsed().as_micros() as u64;
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let measure_end_micros = shared.epoch.elapsed().as_micros() as u64;
    let elapsed = started.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    for t in send_tasks {
        t.await?;
    }

    // Drain: every subscriber must reach the database's list for its member.
    let expected = expected_deliveries(&pool, &logs).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (member, log) in &logs {
        let want = expected.get(member).map_or(0, Vec::len);
        while log.lock().len() < want
            && Instant::now() < deadline
            && chain_errors.load(Ordering::Relaxed) == 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Independent check of what subscribers received against the database.
    let (mut lost, mut duplicated, mut order_violations) =
        (0u64, 0u64, chain_errors.load(Ordering::Relaxed));
    let mut latencies = Vec::new();
    for (member, log) in &logs {
        let log = log.lock();
        let want = expected.get(member).cloned().unwrap_or_default();
        let mut counts: BTreeMap<Timestamp, u64> = BTreeMap::new();
        for (i, (ts, sent, lat)) in log.iter().enumerate() {
            *counts.entry(*ts).or_default() += 1;
            if i > 0 && *ts <= log[i - 1].0 {
                order_violations += 1;
            }
            // Latency of deliveries of sends made during the measured window.
            if (measure_start_micros..measure_end_micros).contains(sent) {
                latencies.push(*lat);
            }
        }
        for ts in &want {
            if !counts.contains_key(ts) {
                lost += 1;
            }
        }
        duplicated += counts
            .values()
            .filter(|n| **n > 1)
            .map(|n| n - 1)
            .sum::<u64>();
        // Anything received that the database does not hold for this member is an error too.
        let want: std::collections::BTreeSet<_> = want.into_iter().collect();
        order_violations += counts.keys().filter(|ts| !want.contains(ts)).count() as u64;
    }
    let mut window_latencies = latencies;
    let p50 = stats::quantile(&mut window_latencies, 0.50) as f64 / 1000.0;
    let p99 = stats::quantile(&mut window_latencies, 0.99) as f64 / 1000.0;
    let max = stats::quantile(&mut window_latencies, 1.0) as f64 / 1000.0;

    let _ = shutdown_tx.send(true);
    for t in node_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for t in sub_tasks {
        t.abort();
    }
    pool.close().await;
    drop(pg);

    let accepted = shared.accepted.load(Ordering::Relaxed);
    let mut send_latencies = std::mem::take(&mut *shared.send_latencies.lock());
    let events_per_sec = accepted as f64 / elapsed;
    Ok(Report {
        pg_settings: args
            .pg_settings
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect(),
        nodes: args.nodes,
        senders: args.senders,
        recipients: args.recipients,
        fanout: args.fanout,
        payload: args.payload,
        seconds: elapsed,
        mode: if args.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        }
        .into(),
        rate: args.rate,
        accepted,
        failed_sends: shared.failed.load(Ordering::Relaxed),
        events_per_sec,
        delivered_per_sec: shared.delivered.load(Ordering::Relaxed) as f64 / elapsed,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        send_p50_ms: stats::quantile(&mut send_latencies, 0.50) as f64 / 1000.0,
        send_p99_ms: stats::quantile(&mut send_latencies, 0.99) as f64 / 1000.0,
        baseline_copy_rows_per_sec: copy,
        baseline_insert_rows_per_sec: insert,
        ratio_to_copy: events_per_sec / copy,
        ratio_to_insert: events_per_sec / insert,
        lost,
        duplicated,
        order_violations,
        synchronous_commit,
    })
}

/// Per receiving member, the timestamps of the events the database holds for it, in order.
async fn expected_deliveries(
    pool: &sqlx::PgPool,
    logs: &[(MemberId, Log)],
) -> anyhow::Result<HashMap<MemberId, Vec<Timestamp>>> {
    let mut out = HashMap::new();
    for (member, _) in logs {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT e.ts FROM events e, members m \
             WHERE m.member_id = $1 AND (e.broadcast OR m.idx = ANY(e.recipients)) ORDER BY e.ts",
        )
        .bind(member.to_string())
        .fetch_all(pool)
        .await
        .context("reading the expected deliveries")?;
        out.insert(
            member.clone(),
            rows.into_iter().map(|(t,)| Timestamp(t)).collect(),
        );
    }
    Ok(out)
}

/// `name=value` of `--pg`.
fn pg_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{s:?} is not name=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pg_setting_is_name_equals_value() {
        assert_eq!(
            pg_setting("wal_init_zero=off"),
            Ok(("wal_init_zero".into(), "off".into()))
        );
        assert_eq!(
            pg_setting("search_path=a=b"),
            Ok(("search_path".into(), "a=b".into()))
        );
        for bad in ["wal_init_zero", "=off", "wal_init_zero="] {
            assert!(pg_setting(bad).is_err(), "{bad}");
        }
    }
}
