//! `/v1/query` over a party with many contracts: latency of range queries (`%gte`/`%lt`
//! on `amount`) selecting ~1 % and ~10 %, against an equality query selecting ~1 % and a
//! full `GET /v1/query` (every contract, streamed) in the same run, and the peak memory
//! of the gateway process serving each.
//!
//! The network is `ordo up`'s; the gateway is an `ordo gateway` process of its own, started
//! on a cache file this benchmark filled beforehand through the cache's own write path
//! (`Store::replace_shard`, as a shard's snapshot is written) with `--contracts` Ious of
//! one party: committing 100,000 transactions through the ledger would take the 2-core
//! machine most of an hour. Each answer is checked against the contracts written (the
//! exact set of ids); a wrong answer fails the run. Memory: before each phase the
//! process's peak RSS is reset (`/proc/PID/clear_refs` ← 5), and after it `VmHWM` is its
//! peak during the phase.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hdrhistogram::Histogram;
use ordo_ledger_client::Contract;
use ordo_testkit::wait_for;
use serde::Serialize;
use serde_json::{Value, json};

use crate::harness::{IOU, Net, PACKAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Ious of the one party in the cache.
    #[arg(long, default_value_t = 100_000)]
    contracts: u64,
    /// Requests per query kind.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The `ordo` binary (default: next to this one; `cargo build --release -p ordo-cli`).
    #[arg(long)]
    ordo: Option<PathBuf>,
    /// One line of JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
pub struct Report {
    contracts: u64,
    runs: usize,
    /// Seconds the cache fill took (not part of any figure below).
    fill_secs: f64,
    /// The gateway's resident memory once ready, before any query (MiB).
    rss_ready_mib: f64,
    queries: Vec<QueryReport>,
}

#[derive(Serialize)]
struct QueryReport {
    query: &'static str,
    /// Contracts in each answer (checked against those written).
    matches: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The gateway's RSS before the phase and its peak during it (MiB).
    rss_before_mib: f64,
    peak_rss_mib: f64,
    /// Peak over before: what answering this query took at most.
    peak_over_before_mib: f64,
}

const PARTY: &str = "whale";
const SHARD: &str = "shard-1";

/// The amount of contract `i` in cents: a permutation of 1..=n (so that amounts and
/// insertion order are unrelated), written as the ledger writes decimals (`12.3`, `7`).
fn cents(i: u64, n: u64) -> u64 {
    (i * 7919) % n + 1
}

fn decimal(cents: u64) -> String {
    match cents % 100 {
        0 => format!("{}", cents / 100),
        f if f % 10 == 0 => format!("{}.{}", cents / 100, f / 10),
        f => format!("{}.{f:02}", cents / 100),
    }
}

fn currency(i: u64) -> String {
    format!("C{:02}", i % 100)
}

fn contract_id(i: u64) -> String {
    format!("{i:064x}")
}

pub async fn run(args: Args) -> Result<Report> {
    ensure!(args.contracts >= 1000, "--contracts must be at least 1000");
    ensure!(args.runs > 0, "--runs must be at least 1");
    let ordo = crate::ordo_binary(args.ordo)?;
    let net = Net::start(&ordo).await?;
    let network = net.network.clone();
    let admin = network.admin_token()?;
    let shard = network.shard_client(SHARD, &admin)?;
    shard
        .read(|c| async move { c.upload_package(PACKAGE.to_vec()).await })
        .await?;
    shard
        .read(|c| async move { c.allocate_party(PARTY).await })
        .await?;
    let end = shard.read(|c| async move { c.ledger_end().await }).await?;

    // The cache file, filled as a snapshot of shard-1 at its ledger end.
    let dir = net.dir.path().join("query-bench");
    std::fs::create_dir_all(&dir)?;
    let cache_file = dir.join("cache.sqlite");
    let n = args.contracts;
    let contracts: Vec<Contract> = (0..n)
        .map(|i| Contract {
            contract_id: contract_id(i),
            template_id: IOU.into(),
            package_id: String::new(),
            payload: json!({"issuer": "bank", "owner": PARTY, "currency": currency(i),
                            "amount": decimal(cents(i, n))}),
            signatories: vec!["bank".into()],
            observers: vec![PARTY.into()],
            key: None,
            witnesses: vec![PARTY.into()],
            offset: end,
            created_at: 0,
        })
        .collect();
    let started = Instant::now();
    let (store, _) = ordo_gateway::cache::Store::open(&cache_file).await?;
    store.replace_shard(SHARD, end, &contracts).await?;
    store.close().await;
    drop(contracts);
    let fill_secs = started.elapsed().as_secs_f64();
    eprintln!("filled the cache with {n} Ious in {fill_secs:.1} s");

    let mut gateway = Gateway::start(&ordo, &net.network, &dir, &cache_file).await?;
    let outcome = measure(&gateway, n, args.runs, &network.party_token(&[PARTY])?).await;
    gateway.stop();
    let (rss_ready_mib, queries) = outcome?;
    Ok(Report {
        contracts: n,
        runs: args.runs,
        fill_secs: (fill_secs * 10.0).round() / 10.0,
        rss_ready_mib,
        queries,
    })
}

async fn measure(
    gateway: &Gateway,
    n: u64,
    runs: usize,
    token: &str,
) -> Result<(f64, Vec<QueryReport>)> {
    let ids = |pred: &dyn Fn(u64) -> bool| -> BTreeSet<String> {
        (0..n).filter(|i| pred(*i)).map(contract_id).collect()
    };
    // ~1 % and ~10 % of the amounts (1..=n cents), from the middle.
    let (lo1, hi1) = (n / 2, n / 2 + n / 100);
    let (lo10, hi10) = (n / 5, n / 5 + n / 10);
    let range = |lo: u64, hi: u64| {
        json!({"templateIds": [IOU], "query":
               {"amount": {"%gte": decimal(lo), "%lt": decimal(hi)}}})
    };
    let kinds: Vec<(&'static str, Option<Value>, BTreeSet<String>)> = vec![
        (
            "equality_currency_1pct",
            Some(json!({"templateIds": [IOU], "query": {"currency": "C07"}})),
            ids(&|i| i % 100 == 7),
        ),
        (
            "range_amount_1pct",
            Some(range(lo1, hi1)),
            ids(&|i| (lo1..hi1).contains(&cents(i, n))),
        ),
        (
            "range_amount_10pct",
            Some(range(lo10, hi10)),
            ids(&|i| (lo10..hi10).contains(&cents(i, n))),
        ),
        ("get_all", None, ids(&|_| true)),
    ];
    let rss_ready = gateway.memory("VmRSS")?;
    let mut reports = Vec::new();
    for (name, body, expected) in kinds {
        gateway.reset_peak()?;
        let rss_before = gateway.memory("VmRSS")?;
        let mut histogram = Histogram::<u64>::new(3)?;
        for _ in 0..runs {
            let sent = Instant::now();
            let answer = gateway.query(token, body.as_ref()).await?;
            histogram.record(sent.elapsed().as_micros() as u64)?;
            let got: BTreeSet<String> = answer
                .iter()
                .filter_map(|c| c["contractId"].as_str().map(str::to_owned))
                .collect();
            ensure!(
                got == expected && answer.len() == expected.len(),
                "{name}: {} contracts answered ({} distinct), {} expected",
                answer.len(),
                got.len(),
                expected.len()
            );
        }
        let peak = gateway.memory("VmHWM")?;
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        let report = QueryReport {
            query: name,
            matches: expected.len(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: histogram.max() as f64 / 1000.0,
            rss_before_mib: rss_before,
            peak_rss_mib: peak,
            peak_over_before_mib: ((peak - rss_before) * 10.0).round() / 10.0,
        };
        eprintln!(
            "{name}: {} matches, p50 {:.1} ms, p99 {:.1} ms, peak RSS {:.1} MiB (+{:.1})",
            report.matches, report.p50_ms, report.p99_ms, peak, report.peak_over_before_mib
        );
        reports.push(report);
    }
    Ok((rss_ready, reports))
}

/// An `ordo gateway` process on 127.0.0.1 with its own cache file.
struct Gateway {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Gateway {
    async fn start(
        ordo: &std::path::Path,
        network: &ordo_ledger_client::Network,
        dir: &std::path::Path,
        cache_file: &std::path::Path,
    ) -> Result<Self> {
        let token = network.mint_token(&ordo_participant::auth::LedgerClaims {
            read_as_any_party: true,
            ..Default::default()
        })?;
        let token_file = dir.join("cache-token");
        ordo_testkit::write_secret(&token_file, token)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "http_listen = \"127.0.0.1:{port}\"\nnetwork_file = {:?}\n\
                 [cache]\nfile = {:?}\ntoken_file = {:?}\n\
                 [limits]\ntoken_requests = {{ per_second = 0 }}\n",
                network.path, cache_file, token_file
            ),
        )?;
        let log = std::fs::File::create(dir.join("gateway.log"))?;
        let child = Command::new(ordo)
            .args(["gateway", "--config"])
            .arg(&config)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting ordo gateway")?;
        let gateway = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
        };
        let readyz = format!("{}/readyz", gateway.base);
        wait_for(
            "the gateway's /readyz",
            Duration::from_secs(120),
            || async {
                let r = gateway.http.get(&readyz).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await?;
        Ok(gateway)
    }

    /// `POST /v1/query` with `body`, or `GET /v1/query`: the answer's contracts.
    async fn query(&self, token: &str, body: Option<&Value>) -> Result<Vec<Value>> {
        let url = format!("{}/v1/query", self.base);
        let req = match body {
            Some(b) => self.http.post(&url).json(b),
            None => self.http.get(&url),
        };
        let r = req.bearer_auth(token).send().await?;
        let status = r.status();
        let answer: Value = r.json().await.context("the answer is not JSON")?;
        ensure!(status == 200, "{status}: {answer}");
        match answer {
            Value::Object(mut o) => match o.remove("result") {
                Some(Value::Array(contracts)) => Ok(contracts),
                other => anyhow::bail!("no result list: {other:?}"),
            },
            other => anyhow::bail!("not an answer: {other}"),
        }
    }

    /// A `/proc/PID/status` figure (`VmRSS`, `VmHWM`) in MiB.
    fn memory(&self, field: &str) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/PID/status"))?;
        Ok((kib / 1024.0 * 10.0).round() / 10.0)
    }

    /// Resets the process's peak RSS (`VmHWM`) to its current RSS.
    fn reset_peak(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .context("resetting the gateway's peak RSS (/proc/PID/clear_refs)")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
