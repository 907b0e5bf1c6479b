//! A network started by `ordo up` (2 sequencers, 2 replicas of each participant shard, of
//! the mediator and of the topology manager), its replicas found through their
//! `GET /status`, signals to them, and a steady load of cross-shard Iou transfers whose
//! every command's outcome is recorded and checked against the shards' update logs and
//! active contracts. Shared by the HA tests and the failover benchmark.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordo_lease::ReplicaStatus;
use ordo_ledger_client::{
    Command, Filter, LedgerError, Network, ShardClient, Submission, new_command_id,
};
use ordo_testkit::{NodeProcess, wait_for};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

pub const IOU: &str = "iou:Iou";
pub const PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.toml");
/// Each issuer's shard and currency.
pub const ISSUERS: [(&str, &str, &str); 2] =
    [("bank", "shard-1", "USD"), ("ecb", "shard-2", "EUR")];

/// A running `ordo up`.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub network: Network,
    ordo: PathBuf,
    up: NodeProcess,
    /// Replicas restarted by the test, by name.
    restarted: BTreeMap<String, NodeProcess>,
}

/// One replica as network.json lists it.
#[derive(Clone, Debug)]
pub struct Replica {
    pub name: String,
    pub service: String,
    pub grpc: String,
    pub http: String,
}

impl Replica {
    /// The `ordo` subcommand that runs it.
    fn role(&self) -> &'static str {
        if self.service.starts_with("shard-") {
            "participant"
        } else if self.service == "mediator" {
            "mediator"
        } else {
            "topology"
        }
    }

    pub async fn status(&self) -> Result<ReplicaStatus> {
        Ok(ordo_lease::client::status(&self.http).await?)
    }

    /// Sends `signal` to the replica's process (its pid from `/status`); the pid.
    pub async fn signal(&self, signal: Signal) -> Result<i32> {
        let pid = i32::try_from(self.status().await?.pid)?;
        kill(Pid::from_raw(pid), signal)?;
        Ok(pid)
    }
}

impl Net {
    /// Starts `ordo up` (the binary at `ordo`) in a fresh directory and waits for its
    /// network.json.
    pub async fn start(ordo: &Path) -> Result<Self> {
        Self::start_with_env(ordo, &[]).await
    }

    /// [`Net::start`] with `env` in the environment of `ordo up` and of every node it
    /// starts (e.g. `ORDO_SEQUENCER_…` settings).
    pub async fn start_with_env(ordo: &Path, env: &[(&str, &str)]) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("ordo-ha-").tempdir()?;
        // As root, the private Postgres runs as `postgres`, which must reach the data dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let data = dir.path().join("net");
        let up = NodeProcess::spawn_with_env(
            "ordo-up",
            ordo,
            &["up", "--data-dir", data.to_str().unwrap_or_default()],
            env,
            &dir.path().join("up.log"),
        )?;
        let file = data.join("network.json");
        let network = wait_for("network.json", Duration::from_secs(180), || async {
            Network::load(&file).ok()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; ordo up's output:\n{}", up.log()))?;
        Ok(Self {
            dir,
            network,
            ordo: ordo.to_owned(),
            up,
            restarted: BTreeMap::new(),
        })
    }

    pub fn up_log(&self) -> String {
        self.up.log()
    }

    /// Stops `ordo up` as Ctrl-C would (its nodes, then its Postgres, which a SIGKILL of
    /// its process group would leave running), after the nodes the test restarted (they
    /// are not `ordo up`'s, and their connections would hold its Postgres up); whether it
    /// stopped within `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        self.restarted.clear();
        tokio::task::block_in_place(|| self.up.terminate(timeout))
    }

    /// The replicas of `service` (`shard-1`, `mediator`, `topology`).
    pub fn replicas(&self, service: &str) -> Vec<Replica> {
        let n = &self.network;
        let participants = n.participants.iter().map(|p| Replica {
            name: p.name.clone(),
            service: p.shard.clone(),
            grpc: p.grpc.clone(),
            http: p.http.clone(),
        });
        let others = n.mediators.iter().chain(&n.topology).map(|e| Replica {
            name: e.name.clone(),
            service: e.service.clone(),
            grpc: e.grpc.clone(),
            http: e.http.clone(),
        });
        participants
            .chain(others)
            .filter(|r| r.service == service)
            .collect()
    }

    /// The one active and serving replica of `service`, once there is exactly one.
    pub async fn active(&self, service: &str, timeout: Duration) -> Result<Replica> {
        let replicas = self.replicas(service);
        ensure!(
            replicas.len() >= 2,
            "{service} has {} replicas",
            replicas.len()
        );
        wait_for(
            &format!("one active replica of {service}"),
            timeout,
            || async {
                let mut active = Vec::new();
                for r in &replicas {
                    if let Ok(s) = r.status().await
                        && s.role == "active"
                        && s.serving
                    {
                        active.push(r.clone());
                    }
                }
                (active.len() == 1).then(|| active.remove(0))
            },
        )
        .await
    }

    /// The database URL of `replica`, from its config file.
    pub fn database_url(&self, replica: &Replica) -> Result<String> {
        let path = self.config_path(replica);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let config: toml::Table = text.parse()?;
        config
            .get("database_url")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("no database_url in {}", path.display()))
    }

    fn config_path(&self, replica: &Replica) -> PathBuf {
        self.dir
            .path()
            .join(format!("net/config/{}.toml", replica.name))
    }

    /// Starts `replica` again from its config (after a kill) and waits until it answers
    /// `/status`.
    pub async fn restart(&mut self, replica: &Replica) -> Result<()> {
        let config = self.config_path(replica);
        let process = NodeProcess::spawn(
            &replica.name,
            &self.ordo,
            &[
                replica.role(),
                "--config",
                config.to_str().unwrap_or_default(),
            ],
            &self
                .dir
                .path()
                .join(format!("{}-restarted.log", replica.name)),
        )?;
        wait_for(
            &format!("{} to answer /status", replica.name),
            Duration::from_secs(60),
            || async { replica.status().await.ok() },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; its log:\n{}", process.log()))?;
        self.restarted.insert(replica.name.clone(), process);
        Ok(())
    }

    /// The log of `replica` (as `ordo up` started it).
    pub fn log(&self, replica: &Replica) -> String {
        let path = self
            .dir
            .path()
            .join(format!("net/logs/{}.log", replica.name));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

// --- the load ------------------------------------------------------------------------

/// What became of one submitted command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed {
        update_id: String,
    },
    Rejected {
        code: tonic::Code,
        message: String,
    },
    /// No definite answer (e.g. no active replica within the client's deadline).
    Unknown {
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct Record {
    pub worker: usize,
    pub command_id: String,
    pub submitted_at: Instant,
    pub answered_at: Instant,
    pub outcome: Outcome,
}

/// The parties, the package and one Iou per worker, each moving between a holder on
/// shard-1 and one on shard-2, issued by `bank` (shard-1, USD) or `ecb` (shard-2, EUR).
pub struct Ledger {
    pub network: Network,
    pub workers: usize,
    /// Per issuer and currency, the total issued.
    pub issued: BTreeMap<(String, String), f64>,
    /// Per worker, its Iou's current contract id and owner.
    pub ious: Vec<Mutex<(String, String)>>,
    /// Transfers committed so far.
    pub committed: AtomicUsize,
    clients: BTreeMap<String, Arc<ShardClient>>,
}

fn cid_of(submission: &Submission) -> String {
    match &submission.command {
        Command::Exercise { contract_id, .. } => contract_id.clone(),
        _ => String::new(),
    }
}

fn holders(worker: usize) -> [(String, &'static str); 2] {
    [
        (format!("a{worker}"), "shard-1"),
        (format!("b{worker}"), "shard-2"),
    ]
}

impl Ledger {
    pub async fn setup(network: &Network, workers: usize) -> Result<Self> {
        let mut parties: Vec<(String, &str)> = ISSUERS
            .iter()
            .map(|(p, s, _)| ((*p).to_owned(), *s))
            .collect();
        for w in 0..workers {
            parties.extend(holders(w));
        }
        for shard in ["shard-1", "shard-2"] {
            let client = network.client_for_shard(shard).await?;
            for (p, _) in parties.iter().filter(|(_, s)| *s == shard) {
                client.allocate_party(p).await?;
            }
        }
        let shard1 = network.client_for_shard("shard-1").await?;
        shard1.upload_package(PACKAGE.to_vec()).await?;
        let shard2 = network.client_for_shard("shard-2").await?;
        wait_for(
            "shard-2 to vet the package",
            Duration::from_secs(30),
            || async { shard2.list_packages().await.ok().filter(|p| !p.is_empty()) },
        )
        .await?;

        let mut clients = BTreeMap::new();
        for (p, shard) in &parties {
            let token = network.party_token(&[p.as_str()])?;
            clients.insert(p.clone(), Arc::new(network.shard_client(shard, &token)?));
        }
        let mut ledger = Self {
            network: network.clone(),
            workers,
            issued: BTreeMap::new(),
            ious: Vec::new(),
            committed: AtomicUsize::new(0),
            clients,
        };
        for w in 0..workers {
            let (issuer, _, currency) = ISSUERS[w % ISSUERS.len()];
            let owner = holders(w)[0].0.clone();
            let amount = (w + 1) as f64 * 10.0;
            let payload = serde_json::json!({
                "issuer": issuer, "owner": owner, "currency": currency, "amount": format!("{amount}"),
            });
            let client = ledger.client(issuer)?;
            let tx = wait_for(
                &format!("{issuer} to issue worker {w}'s Iou"),
                Duration::from_secs(30),
                || async {
                    client
                        .submit(Submission::new(
                            issuer,
                            Command::Create {
                                template_id: IOU.into(),
                                payload: payload.clone(),
                            },
                        ))
                        .await
                        .ok()
                },
            )
            .await?;
            let cid = tx.created_of(IOU)[0].to_owned();
            *ledger
                .issued
                .entry((issuer.to_owned(), currency.to_owned()))
                .or_default() += amount;
            ledger.ious.push(Mutex::new((cid, owner)));
        }
        Ok(ledger)
    }

    fn client(&self, party: &str) -> Result<Arc<ShardClient>> {
        self.clients
            .get(party)
            .cloned()
            .with_context(|| format!("no client for {party}"))
    }

    /// Transfers worker `w`'s Iou to its other holder; the outcome.
    pub async fn transfer(&self, w: usize) -> Result<Record> {
        let (cid, owner) = self.ious[w].lock().clone();
        let [(a, _), (b, _)] = holders(w);
        let to = if owner == a { b } else { a };
        let command_id = new_command_id();
        let mut submission = Submission::new(
            owner.clone(),
            Command::Exercise {
                template_id: IOU.into(),
                contract_id: cid,
                choice: "Transfer".into(),
                argument: serde_json::json!({ "newOwner": to }),
            },
        );
        submission.command_id = Some(command_id.clone());
        let client = self.client(&owner)?;
        // A transfer commits on the submitting shard first; the new owner's shard applies
        // it moments later. Submit once the owner's shard sees the Iou.
        visible(&client, &owner, &cid_of(&submission)).await?;
        let submitted_at = Instant::now();
        let result = client.submit(submission).await;
        let outcome = match result {
            Ok(tx) => {
                let new_cid = tx
                    .exercise_result
                    .as_ref()
                    .and_then(|r| r.as_str())
                    .with_context(|| format!("no new Iou id in {tx:?}"))?
                    .to_owned();
                *self.ious[w].lock() = (new_cid, to);
                self.committed.fetch_add(1, Ordering::SeqCst);
                Outcome::Committed {
                    update_id: tx.update_id,
                }
            }
            Err(e) if is_definite(&e) => Outcome::Rejected {
                code: e.code(),
                message: e.to_string(),
            },
            Err(e) => Outcome::Unknown {
                message: e.to_string(),
            },
        };
        Ok(Record {
            worker: w,
            command_id,
            submitted_at,
            answered_at: Instant::now(),
            outcome,
        })
    }

    /// Runs every worker's transfers back to back until `stop` is set; every record.
    pub fn run(self: &Arc<Self>, stop: Arc<AtomicBool>) -> JoinHandle<Result<Vec<Record>>> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let tasks: Vec<_> = (0..ledger.workers)
                .map(|w| {
                    let (ledger, stop) = (ledger.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut records = Vec::new();
                        while !stop.load(Ordering::SeqCst) {
                            records.push(ledger.transfer(w).await?);
                        }
                        Ok::<_, anyhow::Error>(records)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            Ok(all)
        })
    }

    /// Every transaction on `shard` that any of the load's parties sees: (offset, update id,
    /// command id).
    pub async fn update_log(&self, shard: &str) -> Result<Vec<(i64, String, String)>> {
        let parties = self.parties();
        let names: Vec<&str> = parties.iter().map(String::as_str).collect();
        let token = self.network.party_token(&names)?;
        let client = self
            .network
            .client_for_shard_with_token(shard, &token)
            .await?;
        let mut filter = Filter::party(&parties[0]);
        filter.parties = parties.clone();
        let mut stream = client.updates(&filter, 0, false).await?;
        let mut log = Vec::new();
        while let Some(tx) = stream.next().await {
            let tx = tx?;
            log.push((tx.offset, tx.update_id, tx.command_id));
        }
        Ok(log)
    }

    fn parties(&self) -> Vec<String> {
        let mut parties: Vec<String> = ISSUERS.iter().map(|(p, _, _)| (*p).to_owned()).collect();
        for w in 0..self.workers {
            parties.extend(holders(w).into_iter().map(|(p, _)| p));
        }
        parties
    }

    /// The checks every HA test makes after its load: every command got a definite
    /// outcome; each shard's update log is gapless with every update once; the committed
    /// transfers are exactly the load's transactions on both shards (none lost, none
    /// twice, none the client was told failed); each worker's Iou exists exactly once,
    /// where the client last saw it; each issuer's total per currency is conserved.
    pub async fn check(&self, records: &[Record]) -> Result<Summary> {
        let unknown: Vec<_> = records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Unknown { .. }))
            .collect();
        ensure!(
            unknown.is_empty(),
            "commands without a definite outcome: {unknown:#?}"
        );
        let committed: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Committed { update_id } => Some(update_id.as_str()),
                _ => None,
            })
            .collect();
        let load_commands: BTreeSet<&str> = records.iter().map(|r| r.command_id.as_str()).collect();
        for shard in ["shard-1", "shard-2"] {
            let log = wait_for_log(self, shard, committed.len()).await?;
            for (i, (offset, _, _)) in log.iter().enumerate() {
                ensure!(
                    *offset == i as i64 + 1,
                    "{shard}'s log has a gap or repeat at {offset}: {log:?}"
                );
            }
            let ids: Vec<&str> = log.iter().map(|(_, u, _)| u.as_str()).collect();
            let unique: BTreeSet<&str> = ids.iter().copied().collect();
            ensure!(unique.len() == ids.len(), "{shard}'s log repeats an update");
            // Issues come first (one per worker, on its issuer's shard); the rest are the
            // load's transfers, each visible on both shards.
            let transfers: BTreeSet<&str> = log
                .iter()
                .filter(|(_, u, c)| {
                    committed.contains(u.as_str()) || load_commands.contains(c.as_str())
                })
                .map(|(_, u, _)| u.as_str())
                .collect();
            let issues = self.issues_on(shard);
            ensure!(
                log.len() == issues + committed.len(),
                "{shard}'s log has {} transactions, expected {issues} issues and {} committed transfers",
                log.len(),
                committed.len()
            );
            ensure!(
                transfers == committed,
                "{shard}'s transfers differ from the committed ones: only in the log {:?}, only committed {:?}",
                transfers.difference(&committed).collect::<Vec<_>>(),
                committed.difference(&transfers).collect::<Vec<_>>()
            );
        }
        let totals = self.conserved().await?;
        let mut reasons = BTreeMap::new();
        for r in records {
            if let Outcome::Rejected { code, message } = &r.outcome {
                let general: String = message
                    .split_whitespace()
                    .map(|w| {
                        if w.len() >= 16 && w.chars().any(|c| c.is_ascii_digit()) {
                            "…"
                        } else {
                            w
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                *reasons.entry(format!("{code:?}: {general}")).or_default() += 1;
            }
        }
        Ok(Summary {
            reasons,
            commands: records.len(),
            committed: committed.len(),
            rejected: records.len() - committed.len(),
            totals,
        })
    }

    fn issues_on(&self, shard: &str) -> usize {
        (0..self.workers)
            .filter(|w| ISSUERS[w % ISSUERS.len()].1 == shard)
            .count()
            // A transfer from a shard-1 holder to a shard-2 holder is seen on both; the
            // issue only on the shards of its stakeholders: issuer and first holder
            // (shard-1).
            + if shard == "shard-1" {
                (0..self.workers)
                    .filter(|w| ISSUERS[w % ISSUERS.len()].1 != shard)
                    .count()
            } else {
                0
            }
    }

    /// Every worker's Iou is active exactly once (on the shards of its stakeholders) with
    /// the id and owner the client last saw, and each issuer's total per currency is what
    /// was issued.
    async fn conserved(&self) -> Result<BTreeMap<(String, String), f64>> {
        let parties = self.parties();
        let names: Vec<&str> = parties.iter().map(String::as_str).collect();
        let token = self.network.party_token(&names)?;
        let mut contracts = BTreeMap::new();
        for shard in ["shard-1", "shard-2"] {
            let client = self
                .network
                .client_for_shard_with_token(shard, &token)
                .await?;
            let mut filter = Filter::party(&parties[0]);
            filter.parties = parties.clone();
            for c in client.active_contracts(&filter).await?.contracts {
                contracts.insert(c.contract_id.clone(), c.payload);
            }
        }
        ensure!(
            contracts.len() == self.workers,
            "{} Ious are active, expected one per worker ({})",
            contracts.len(),
            self.workers
        );
        for (w, iou) in self.ious.iter().enumerate() {
            let (cid, owner) = iou.lock().clone();
            let payload = contracts
                .get(&cid)
                .with_context(|| format!("worker {w}'s Iou {cid} is not active"))?;
            ensure!(
                payload["owner"] == owner.as_str(),
                "worker {w}'s Iou: {payload}"
            );
        }
        let mut totals: BTreeMap<(String, String), f64> = BTreeMap::new();
        for payload in contracts.values() {
            let amount: f64 = payload["amount"]
                .as_str()
                .context("amount is a decimal string")?
                .parse()?;
            *totals
                .entry((
                    payload["issuer"].as_str().unwrap_or_default().to_owned(),
                    payload["currency"].as_str().unwrap_or_default().to_owned(),
                ))
                .or_default() += amount;
        }
        ensure!(
            totals == self.issued,
            "totals {totals:?} differ from issued {:?}",
            self.issued
        );
        Ok(totals)
    }
}

/// The shard's update log once it holds at least every committed transfer (the other
/// shard may still be applying the last verdicts).
async fn wait_for_log(
    ledger: &Ledger,
    shard: &str,
    committed: usize,
) -> Result<Vec<(i64, String, String)>> {
    let expected = ledger.issues_on(shard) + committed;
    wait_for(
        &format!("{shard}'s log to hold {expected} transactions"),
        Duration::from_secs(30),
        || async {
            let log = ledger.update_log(shard).await.ok()?;
            (log.len() >= expected).then_some(log)
        },
    )
    .await
}

/// An answer of the ledger itself (the command did not commit) rather than a failure to
/// reach a replica.
fn is_definite(e: &LedgerError) -> bool {
    !ordo_ledger_client::is_failover_error(e)
}

#[derive(Debug)]
pub struct Summary {
    pub commands: usize,
    pub committed: usize,
    pub rejected: usize,
    /// Rejections by code and message (contract ids and request times elided).
    pub reasons: BTreeMap<String, usize>,
    pub totals: BTreeMap<(String, String), f64>,
}

impl Ledger {
    /// Waits until `more` transfers committed after this call.
    pub async fn commits(&self, more: usize, timeout: Duration) -> Result<()> {
        let target = self.committed.load(Ordering::SeqCst) + more;
        wait_for(
            &format!("{more} more committed transfers"),
            timeout,
            || async { (self.committed.load(Ordering::SeqCst) >= target).then_some(()) },
        )
        .await
    }
}

/// Records answered after `at`.
pub fn after(records: &[Record], at: Instant) -> impl Iterator<Item = &Record> {
    records.iter().filter(move |r| r.answered_at > at)
}

/// Waits until `party`'s shard lists `cid` among its active contracts.
pub async fn visible(client: &ShardClient, party: &str, cid: &str) -> Result<()> {
    let filter = Filter::party(party);
    wait_for(
        &format!("{party}'s shard to show {cid}"),
        Duration::from_secs(30),
        || async {
            let acs = client
                .read(|c| {
                    let filter = filter.clone();
                    async move { c.active_contracts(&filter).await }
                })
                .await
                .ok()?;
            acs.contracts
                .iter()
                .any(|c| c.contract_id == cid)
                .then_some(())
        },
    )
    .await
}
