//! The node processes of `ordo up`: each role runs as a child process of this binary
//! (`ordo <role> --config FILE`), its output in `DIR/logs/<name>.log`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::network::NodeEntry;
use crate::node::InitReport;

/// How long a node may take to report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to start: a role's node with its written config.
pub struct Launch {
    /// The subcommand: `sequencer`, `topology`, `mediator`, `participant`.
    pub role: &'static str,
    pub name: String,
    pub shard: Option<String>,
    pub config: PathBuf,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The grpc.health.v1 service that reports the node ready.
    pub health: &'static str,
    /// Nodes stop in the reverse order of their tier (members before sequencers).
    pub tier: u8,
}

pub struct Node {
    pub entry: NodeEntry,
    pub role: &'static str,
    child: Child,
    health: &'static str,
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
pub fn spawn(exe: &Path, dir: &Path, launch: Launch) -> anyhow::Result<Node> {
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
    Ok(Node {
        entry: NodeEntry {
            name: launch.name,
            shard: launch.shard,
            pid: child.id(),
            grpc: format!("http://{}", launch.grpc),
            http: format!("http://{}", launch.http),
            metrics: format!("http://{}/metrics", launch.http),
            log,
        },
        role: launch.role,
        child,
        health: launch.health,
        tier: launch.tier,
    })
}

/// Waits until every node's gRPC health reports SERVING, failing early if one exits.
pub async fn wait_ready(nodes: &mut [Node]) -> anyhow::Result<()> {
    for node in nodes {
        wait_one(node).await?;
    }
    Ok(())
}

async fn wait_one(node: &mut Node) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = node.child.try_wait()? {
            bail!(
                "{} exited ({status}) while starting; the end of its log ({}):\n{}",
                node.entry.name,
                node.entry.log.display(),
                log_tail(&node.entry.log)
            );
        }
        if ordo_node::serving(&node.entry.grpc, node.health).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} did not become ready within {READY_TIMEOUT:?}; see {}",
                node.entry.name,
                node.entry.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs until the shutdown signal, reporting nodes that exit on their own.
pub async fn supervise(nodes: &mut [Node], shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut reported = vec![false; nodes.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
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
            }
        }
    }
}

/// Stops the nodes tier by tier, highest first (participants and mediator, then the
/// topology manager, then the sequencers they talk to): SIGTERM to each node of a tier,
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
