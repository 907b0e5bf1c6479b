//! Throughput and latency of the JSON API gateway: a network from `ordo up` and the gateway
//! it starts (a process of its own), driven over HTTP by `--clients` closed-loop clients,
//! each waiting for its answer before sending the next request. Three phases, each
//! `--seconds` long: `/v1/create` of Ious, `/v1/exercise` transfers between two parties of
//! one shard, and transfers between parties on two shards. The baseline, measured in the
//! same run on the same network, is the same commands submitted straight to the shards
//! through the Ledger API (gRPC), so `ratio_to_direct` is what the HTTP hop costs.
//!
//! Every request must succeed: a failed one is counted (and reported), never retried.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ordo_ledger_client::{Command, Network, ShardClient, Submission};
use ordo_testkit::wait_for;
use serde::Serialize;
use serde_json::{Value, json};

use crate::harness::{IOU, Net, PACKAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The `ordo` binary (default: next to this one; `cargo build --release -p ordo-cli`).
    #[arg(long)]
    ordo: Option<PathBuf>,
    /// One line of JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
pub struct Report {
    clients: usize,
    seconds: u64,
    phases: Vec<PhaseReport>,
}

#[derive(Serialize)]
struct PhaseReport {
    phase: &'static str,
    gateway: Figures,
    direct: Figures,
    /// Gateway requests per second over direct Ledger API commands per second.
    ratio_to_direct: f64,
}

/// One phase through one path.
#[derive(Serialize)]
struct Figures {
    ops: usize,
    per_sec: f64,
    /// Request to answer, as the client measured it.
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Create,
    SameShard,
    CrossShard,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Create, Phase::SameShard, Phase::CrossShard];

    fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::SameShard => "transfer_same_shard",
            Phase::CrossShard => "transfer_cross_shard",
        }
    }
}

/// The issuer of every Iou, on shard-1.
const ISSUER: &str = "bank";
/// How long a transaction committed on one shard may take to show on the other.
const VISIBLE: Duration = Duration::from_secs(30);

pub async fn run(args: Args) -> Result<Report> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.seconds > 0, "--seconds must be at least 1");
    let ordo = crate::ordo_binary(args.ordo)?;
    let net = Net::start(&ordo).await?;
    // network.json lists the gateway once it is ready (the ledger nodes come first).
    let file = net.dir.path().join("net/network.json");
    let base = wait_for(
        "network.json to list the gateway",
        Duration::from_secs(120),
        || {
            let url = gateway_url(&file);
            async move { url }
        },
    )
    .await?;
    let gateway = Http::new(&base, &net.network)?;
    wait_for(
        "the gateway's /readyz",
        Duration::from_secs(120),
        || async {
            let r = gateway
                .http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await?;
    let direct = Direct::new(&net.network);
    let mut clients = setup(&gateway, args.clients).await?;

    let length = Duration::from_secs(args.seconds);
    let mut phases = Vec::new();
    for phase in Phase::ALL {
        let through_gateway = measure(&gateway, &mut clients, phase, length).await?;
        let through_ledger_api = measure(&direct, &mut clients, phase, length).await?;
        eprintln!(
            "{}: gateway {:.0}/s p99 {:.1} ms, direct {:.0}/s p99 {:.1} ms",
            phase.name(),
            through_gateway.per_sec,
            through_gateway.p99_ms,
            through_ledger_api.per_sec,
            through_ledger_api.p99_ms
        );
        phases.push(PhaseReport {
            phase: phase.name(),
            ratio_to_direct: ratio(through_gateway.per_sec, through_ledger_api.per_sec),
            gateway: through_gateway,
            direct: through_ledger_api,
        });
    }
    Ok(Report {
        clients: args.clients,
        seconds: args.seconds,
        phases,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// The `http` URL of the first gateway network.json lists, if it lists one.
fn gateway_url(network_json: &Path) -> Option<String> {
    let text = std::fs::read_to_string(network_json).ok()?;
    let file: Value = serde_json::from_str(&text).ok()?;
    file["gateways"][0]["http"].as_str().map(str::to_owned)
}

/// One client's parties and its Iou: `home` and `near` on shard-1, `far` on shard-2.
struct Client {
    home: String,
    near: String,
    far: String,
    /// The Iou and its owner.
    iou: (String, String),
}

/// The parties, the package and one Iou per client, through the gateway.
async fn setup(gateway: &Http, clients: usize) -> Result<Vec<Client>> {
    let admin = gateway.network.admin_token()?;
    let uploaded = gateway
        .request("/v1/packages", &admin, Body::Raw(PACKAGE))
        .await?;
    ensure!(uploaded.is_ok(), "uploading the package: {uploaded:?}");
    let mut allocate = vec![(ISSUER.to_owned(), "shard-1")];
    for i in 0..clients {
        allocate.push((format!("home{i}"), "shard-1"));
        allocate.push((format!("near{i}"), "shard-1"));
        allocate.push((format!("far{i}"), "shard-2"));
    }
    for (party, shard) in &allocate {
        let body = json!({"identifierHint": party, "shard": shard});
        let answer = gateway
            .request("/v1/parties/allocate", &admin, Body::Json(&body))
            .await?;
        ensure!(answer.is_ok(), "allocating {party}: {answer:?}");
    }
    let mut out = Vec::new();
    for i in 0..clients {
        let home = format!("home{i}");
        let cid = gateway.create(&home).await?;
        out.push(Client {
            near: format!("near{i}"),
            far: format!("far{i}"),
            iou: (cid, home.clone()),
            home,
        });
    }
    Ok(out)
}

/// Runs `phase` through `path` with every client for `length`; the figures.
async fn measure(
    path: &impl Route,
    clients: &mut [Client],
    phase: Phase,
    length: Duration,
) -> Result<Figures> {
    // Each phase starts with every Iou back at home (unmeasured).
    for c in clients.iter_mut() {
        if c.iou.1 != c.home {
            path.visible(&c.iou.1, &c.iou.0).await?;
            let cid = path.transfer(&c.iou.1, &c.iou.0, &c.home).await?;
            c.iou = (cid, c.home.clone());
        }
    }
    let started = Instant::now();
    let until = started + length;
    let runs = clients
        .iter_mut()
        .map(|c| drive(path, c, phase, until))
        .collect::<Vec<_>>();
    let results = futures::future::join_all(runs).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut samples_us = Vec::new();
    let mut failed = 0;
    for (samples, failures) in results {
        samples_us.extend(samples);
        failed += failures;
    }
    let ops = samples_us.len();
    let mut ms = |q| crate::stats::quantile(&mut samples_us, q) as f64 / 1000.0;
    Ok(Figures {
        ops,
        per_sec: (ops as f64 / elapsed).round(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        failed,
    })
}

/// One client's closed loop until `until`: the latency of every successful request (µs)
/// and the number of failed ones. A failed transfer ends the client's loop (where its
/// Iou is is then unknown).
async fn drive(
    path: &impl Route,
    client: &mut Client,
    phase: Phase,
    until: Instant,
) -> (Vec<u64>, usize) {
    let mut samples = Vec::new();
    let mut failed = 0;
    while Instant::now() < until {
        if phase == Phase::Create {
            let sent = Instant::now();
            match path.create(&client.home).await {
                Ok(_) => samples.push(sent.elapsed().as_micros() as u64),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "create failed");
                }
            }
            continue;
        }
        let (cid, owner) = client.iou.clone();
        let other = if phase == Phase::SameShard {
            &client.near
        } else {
            &client.far
        };
        let to = if owner == client.home {
            other.clone()
        } else {
            client.home.clone()
        };
        // A cross-shard transfer commits on the sender's shard first; the receiver's
        // shard shows it moments later. That wait is not part of the request's latency.
        if phase == Phase::CrossShard
            && let Err(e) = path.visible(&owner, &cid).await
        {
            tracing::warn!(error = %e, "the Iou did not show");
            failed += 1;
            break;
        }
        let sent = Instant::now();
        match path.transfer(&owner, &cid, &to).await {
            Ok(new) => {
                samples.push(sent.elapsed().as_micros() as u64);
                client.iou = (new, to);
            }
            Err(e) => {
                tracing::warn!(error = %e, "transfer failed");
                failed += 1;
                break;
            }
        }
    }
    (samples, failed)
}

/// A way to submit the benchmark's commands: through the gateway or straight to the
/// shards.
trait Route {
    /// Issues an Iou to `owner`; its contract id.
    async fn create(&self, owner: &str) -> Result<String>;
    /// `owner` transfers `cid` to `to`; the new Iou's id.
    async fn transfer(&self, owner: &str, cid: &str, to: &str) -> Result<String>;
    /// Waits until `party` sees `cid`.
    async fn visible(&self, party: &str, cid: &str) -> Result<()>;
}

fn iou(owner: &str) -> Value {
    json!({"issuer": ISSUER, "owner": owner, "currency": "USD", "amount": "10"})
}

/// The gateway over HTTP.
struct Http {
    http: reqwest::Client,
    base: String,
    network: Network,
    tokens: parking_lot::Mutex<BTreeMap<String, String>>,
}

enum Body<'a> {
    Json(&'a Value),
    Raw(&'static [u8]),
}

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn is_ok(&self) -> bool {
        self.status == 200
    }

    fn result(self, what: &str) -> Result<Value> {
        ensure!(self.is_ok(), "{what}: {} {}", self.status, self.body);
        Ok(self.body["result"].clone())
    }
}

impl Http {
    fn new(base: &str, network: &Network) -> Result<Self> {
        Ok(Self {
            http: {
                let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
                // The network's gateway serves TLS with its CA (network.json).
                if let Some(tls) = ordo_tls::trusted() {
                    builder = builder.use_preconfigured_tls(tls.rustls_http1());
                }
                builder.build()?
            },
            base: base.to_owned(),
            network: network.clone(),
            tokens: parking_lot::Mutex::new(BTreeMap::new()),
        })
    }

    fn token(&self, party: &str) -> Result<String> {
        if let Some(t) = self.tokens.lock().get(party) {
            return Ok(t.clone());
        }
        let t = self.network.party_token(&[party])?;
        self.tokens.lock().insert(party.to_owned(), t.clone());
        Ok(t)
    }

    async fn request(&self, path: &str, token: &str, body: Body<'_>) -> Result<Answer> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token);
        let req = match body {
            Body::Json(v) => req.json(v),
            Body::Raw(bytes) => req.body(bytes),
        };
        let response = req.send().await?;
        let status = response.status().as_u16();
        let body = response.json().await?;
        Ok(Answer { status, body })
    }
}

impl Route for Http {
    async fn create(&self, owner: &str) -> Result<String> {
        let body = json!({"templateId": IOU, "payload": iou(owner)});
        let created = self
            .request("/v1/create", &self.token(ISSUER)?, Body::Json(&body))
            .await?
            .result("create")?;
        created["contractId"]
            .as_str()
            .map(str::to_owned)
            .context("no contractId")
    }

    async fn transfer(&self, owner: &str, cid: &str, to: &str) -> Result<String> {
        let body = json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
                          "argument": {"newOwner": to}});
        let moved = self
            .request("/v1/exercise", &self.token(owner)?, Body::Json(&body))
            .await?
            .result("transfer")?;
        moved["exerciseResult"]
            .as_str()
            .map(str::to_owned)
            .context("no exerciseResult")
    }

    async fn visible(&self, party: &str, cid: &str) -> Result<()> {
        let token = self.token(party)?;
        let body = json!({"contractId": cid});
        wait_for(&format!("{party} to see {cid}"), VISIBLE, || async {
            let found = self
                .request("/v1/fetch", &token, Body::Json(&body))
                .await
                .ok()?
                .result("fetch")
                .ok()?;
            (!found.is_null()).then_some(())
        })
        .await
    }
}

/// Straight to the shards through the Ledger API (gRPC), with the failover-aware client.
struct Direct {
    network: Network,
    clients: parking_lot::Mutex<BTreeMap<String, Arc<ShardClient>>>,
}

impl Direct {
    fn new(network: &Network) -> Self {
        Self {
            network: network.clone(),
            clients: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }

    /// The client of `party`'s shard, acting as `party`.
    async fn client(&self, party: &str) -> Result<Arc<ShardClient>> {
        if let Some(c) = self.clients.lock().get(party) {
            return Ok(c.clone());
        }
        let shard = self.network.shard_of(party).await?;
        let token = self.network.party_token(&[party])?;
        let client = Arc::new(self.network.shard_client(&shard, &token)?);
        self.clients.lock().insert(party.to_owned(), client.clone());
        Ok(client)
    }
}

impl Route for Direct {
    async fn create(&self, owner: &str) -> Result<String> {
        let command = Command::Create {
            template_id: IOU.into(),
            payload: iou(owner),
        };
        let tx = self
            .client(ISSUER)
            .await?
            .submit(Submission::new(ISSUER, command))
            .await?;
        tx.created_of(IOU)
            .first()
            .map(|c| (*c).to_owned())
            .context("no Iou created")
    }

    async fn transfer(&self, owner: &str, cid: &str, to: &str) -> Result<String> {
        let command = Command::Exercise {
            template_id: IOU.into(),
            contract_id: cid.into(),
            choice: "Transfer".into(),
            argument: json!({"newOwner": to}),
        };
        let tx = self
            .client(owner)
            .await?
            .submit(Submission::new(owner, command))
            .await?;
        tx.exercise_result
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("no new Iou id")
    }

    async fn visible(&self, party: &str, cid: &str) -> Result<()> {
        crate::harness::visible(&*self.client(party).await?, party, cid).await
    }
}
