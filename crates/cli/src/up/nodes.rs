//! The node processes of `ordo up`: each role runs as a child process of this binary
//! (`ordo <role> --config FILE`), its output in `DIR/logs/<name>.log`. A sequencer is
//! ready when it reports SERVING; an active-passive service when every replica answers
//! `GET /status` and one of them (the active) reports SERVING; a gateway when its
//! `GET /readyz` answers 200.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ordo_node::http_client;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::network::NodeEntry;
use crate::node::InitReport;
use ordo_lease::client as replica_http;

/// How long a node may take to report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the replicas' roles are polled for network.json.
const ROLE_POLL: Duration = Duration::from_millis(500);
/// How long a gateway's `/readyz` may take to answer one poll.
const READYZ_TIMEOUT: Duration = Duration::from_secs(1);
/// The service of the sequencer nodes (active-active).
pub const SEQUENCER: &str = "sequencer";
/// The service of the gateways (active-active, stateless towards the ledger).
pub const GATEWAY: &str = "gateway";
pub const ACTIVE: &str = "active";
pub const PASSIVE: &str = "passive";

/// How a node tells it is ready.
#[derive(Clone, Copy)]
pub enum Health {
    /// This grpc.health.v1 service reports SERVING.
    Grpc(&'static str),
    /// `GET /readyz` on the HTTP port answers 200.
    Readyz,
}

/// What to start: a role's node with its written config.
pub struct Launch {
    /// The subcommand: `sequencer`, `topology`, `mediator`, `participant`, `gateway`.
    pub role: &'static str,
    /// The process's name: a sequencer's node name, or a replica's name.
    pub name: String,
    /// The logical service (`sequencer`, `topology`, `mediator`, `shard-1`, …).
    pub service: String,
    pub shard: Option<String>,
    pub config: PathBuf,
    /// None for a gateway (HTTP only).
    pub grpc: Option<SocketAddr>,
    pub http: SocketAddr,
    pub health: Health,
    /// Nodes stop in the reverse order of their tier (gateways, then members, then the
    /// sequencers).
    pub tier: u8,
}

impl Launch {
    /// A sequencer node (tier 0: stopped last).
    pub fn sequencer(name: String, config: PathBuf, listen: (SocketAddr, SocketAddr)) -> Self {
        Self {
            role: "sequencer",
            name,
            service: SEQUENCER.into(),
            shard: None,
            config,
            grpc: Some(listen.0),
            http: listen.1,
            health: Health::Grpc(ordo_sequencer::HEALTH_SERVICE),
            tier: 0,
        }
    }

    /// A gateway (tier 3: stopped first, before the shards it calls).
    pub fn gateway(name: String, config: PathBuf, http: SocketAddr) -> Self {
        Self {
            role: "gateway",
            name,
            service: GATEWAY.into(),
            shard: None,
            config,
            grpc: None,
            http,
            health: Health::Readyz,
            tier: 3,
        }
    }

    /// A replica of an active-passive service: the topology manager (tier 1), the mediator
    /// or a participant (tier 2). `listen` is its gRPC and HTTP address.
    pub fn replica(
        role: &'static str,
        name: String,
        service: &str,
        config: PathBuf,
        listen: (SocketAddr, SocketAddr),
    ) -> Self {
        let (health, tier) = match role {
            "topology" => (ordo_topology::HEALTH_SERVICE, 1),
            "mediator" => (ordo_mediator::HEALTH_SERVICE, 2),
            _ => (ordo_participant::HEALTH_SERVICE, 2),
        };
        Self {
            role,
            name,
            service: service.to_owned(),
            shard: (role == "participant").then(|| service.to_owned()),
            config,
            grpc: Some(listen.0),
            http: listen.1,
            health: Health::Grpc(health),
            tier,
        }
    }
}

pub struct Node {
    pub entry: NodeEntry,
    pub role: &'static str,
    /// A replica of an active-passive service (it has a lease and `/status`), not a
    /// sequencer or a gateway.
    pub replicated: bool,
    child: Child,
    health: Health,
    tier: u8,
}

fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))
}

/// Runs `ordo <role> init --config FILE --json` (its log lines go to the node's log) and
/// returns what it printed.
pub async fn provision(
    exe: &Path,
    dir: &Path,
    role: &str,
    name: &str,
    config: &Path,
) -> anyhow::Result<InitReport> {
    let log = log_file(dir, name);
    // `output()` would capture stderr too; the log lines belong in the node's log.
    let out = Command::new(exe)
        .args([role, "init", "--json", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(open_log(&log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running `ordo {role} init` for {name}"))?
        .wait_with_output()
        .await?;
    if !out.status.success() {
        bail!(
            "provisioning {name} failed ({}); the end of its log ({}):\n{}",
            out.status,
            log.display(),
            log_tail(&log)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    line.and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| {
            format!("`ordo {role} init --json` for {name} printed no report: {stdout:?}")
        })
}

/// Starts the node; [`wait_ready`] then waits for it.
/// Starts `launch`; `url` gives the URL of an address it listens on (the scheme says
/// whether the network runs TLS).
pub fn spawn(
    exe: &Path,
    dir: &Path,
    launch: Launch,
    url: impl Fn(SocketAddr) -> String,
) -> anyhow::Result<Node> {
    let log = log_file(dir, &launch.name);
    let out = open_log(&log)?;
    let child = Command::new(exe)
        .args([launch.role, "--config"])
        .arg(&launch.config)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", launch.name))?;
    let replicated = !matches!(launch.service.as_str(), SEQUENCER | GATEWAY);
    Ok(Node {
        entry: NodeEntry {
            name: launch.name,
            // Until the first poll: sequencers and gateways are all active, replicas
            // assumed passive.
            role: if replicated { PASSIVE } else { ACTIVE }.into(),
            service: launch.service,
            shard: launch.shard,
            pid: child.id(),
            grpc: launch.grpc.map_or_else(String::new, &url),
            http: url(launch.http),
            metrics: format!("{}/metrics", url(launch.http)),
            log,
        },
        role: launch.role,
        replicated,
        child,
        health: launch.health,
        tier: launch.tier,
    })
}

/// Waits until every sequencer reports SERVING, every gateway's `/readyz` answers 200, and
/// every active-passive service has all its replicas answering `/status` and one of them
/// SERVING; fails early if a node exits.
pub async fn wait_ready(nodes: &mut [Node]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        for node in nodes.iter_mut() {
            if let Some(status) = node.child.try_wait()? {
                bail!(
                    "{} exited ({status}) while starting; the end of its log ({}):\n{}",
                    node.entry.name,
                    node.entry.log.display(),
                    log_tail(&node.entry.log)
                );
            }
        }
        let waiting = not_ready(nodes).await;
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "not ready within {READY_TIMEOUT:?}: {}; see the logs in {}",
                waiting.join("; "),
                nodes[0]
                    .entry
                    .log
                    .parent()
                    .unwrap_or(Path::new("."))
                    .display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What is not ready yet, one phrase each.
async fn not_ready(nodes: &[Node]) -> Vec<String> {
    let checks = nodes.iter().map(|n| async move {
        let serving = match n.health {
            Health::Grpc(service) => ordo_node::serving(&n.entry.grpc, service).await,
            Health::Readyz => readyz(&n.entry.http).await,
        };
        let answers = !n.replicated || replica_http::status(&n.entry.http).await.is_ok();
        (serving, answers)
    });
    let checks = futures::future::join_all(checks).await;
    let mut waiting = Vec::new();
    let mut services: BTreeMap<&str, bool> = BTreeMap::new();
    for (n, (serving, answers)) in nodes.iter().zip(checks) {
        if !n.replicated {
            if !serving {
                waiting.push(match n.health {
                    Health::Grpc(_) => format!("{} is not SERVING", n.entry.name),
                    Health::Readyz => format!("{} does not answer /readyz 200", n.entry.name),
                });
            }
            continue;
        }
        if !answers {
            waiting.push(format!("{} does not answer GET /status", n.entry.name));
        }
        *services.entry(&n.entry.service).or_default() |= serving;
    }
    for (service, serving) in services {
        if !serving {
            waiting.push(format!("no replica of {service} is SERVING"));
        }
    }
    waiting
}

/// `GET <http>/readyz` answers 200.
pub async fn readyz(http: &str) -> bool {
    let Ok(url) = http_client::url(http, "/readyz") else {
        return false;
    };
    http_client::request(http_client::Method::GET, &url, None, READYZ_TIMEOUT)
        .await
        .is_ok_and(|a| a.status == http_client::StatusCode::OK)
}

/// Started and ready nodes handed to [`supervise`] (a shard added while the network runs);
/// `done` is answered once `changed` has seen them.
pub struct Handoff {
    pub nodes: Vec<Node>,
    pub done: oneshot::Sender<()>,
}

/// Runs until the shutdown signal, reporting nodes that exit on their own, taking over the
/// nodes handed over through `added`, and calling `changed` whenever a replica's role (or
/// process) changed or nodes were added; see [`refresh_roles`].
pub async fn supervise(
    nodes: &mut Vec<Node>,
    shutdown: impl Future<Output = ()>,
    added: &mut mpsc::Receiver<Handoff>,
    mut changed: impl FnMut(&[Node]),
) {
    tokio::pin!(shutdown);
    let mut reported = vec![false; nodes.len()];
    let mut tick = tokio::time::interval(ROLE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            Some(handoff) = added.recv() => {
                nodes.extend(handoff.nodes);
                reported.resize(nodes.len(), false);
                changed(nodes);
                let _ = handoff.done.send(());
                continue;
            }
            _ = tick.tick() => {}
        }
        for (node, reported) in nodes.iter_mut().zip(reported.iter_mut()) {
            if *reported {
                continue;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                *reported = true;
                tracing::error!(
                    node = %node.entry.name, %status, log = %node.entry.log.display(),
                    "node exited; the others keep running (restart the network to bring it back)"
                );
            }
        }
        let refreshed = tokio::select! {
            () = &mut shutdown => return,
            refreshed = refresh_roles(nodes) => refreshed,
        };
        if refreshed {
            changed(nodes);
        }
    }
}

/// Asks every replica for its role and pid (`GET /status`) and records them in its
/// entry: a replica that does not answer is `passive` (it serves nothing). Whether
/// anything changed.
pub async fn refresh_roles(nodes: &mut [Node]) -> bool {
    let polled: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].replicated).collect();
    let answers = futures::future::join_all(
        polled
            .iter()
            .map(|&i| replica_http::status(&nodes[i].entry.http)),
    )
    .await;
    let mut changed = false;
    for (i, answer) in polled.into_iter().zip(answers) {
        let entry = &mut nodes[i].entry;
        let (role, pid) = match answer {
            Ok(s) if s.role == ACTIVE => (ACTIVE, Some(s.pid)),
            Ok(s) => (PASSIVE, Some(s.pid)),
            Err(_) => (PASSIVE, entry.pid),
        };
        if entry.role != role || entry.pid != pid {
            tracing::info!(node = %entry.name, service = %entry.service, role, "replica role changed");
            entry.role = role.to_owned();
            entry.pid = pid;
            changed = true;
        }
    }
    changed
}

/// Stops the nodes tier by tier, highest first (the gateways, then the participants and
/// the mediator, then the topology manager, then the sequencers they talk to): SIGTERM to each node of a tier,
/// then wait for each (killing it after the grace period).
pub async fn stop_all(nodes: &mut [Node]) {
    let mut tiers: Vec<u8> = nodes.iter().map(|n| n.tier).collect();
    tiers.sort_unstable();
    tiers.dedup();
    for tier in tiers.into_iter().rev() {
        for node in nodes.iter().filter(|n| n.tier == tier) {
            if let Some(pid) = node.child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for node in nodes.iter_mut().filter(|n| n.tier == tier) {
            if tokio::time::timeout(STOP_GRACE, node.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(node = %node.entry.name, "did not stop within {STOP_GRACE:?}; killing it");
                let _ = node.child.kill().await;
            }
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
