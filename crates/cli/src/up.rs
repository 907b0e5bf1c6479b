//! `ordo up`: a whole local network in one command. It starts a private Postgres in the
//! data directory (unless given a database URL), provisions it, starts every node as a child
//! process of its own binary, and writes `DIR/network.json` once every node is ready. A
//! second `ordo up` on the same directory resumes the same network with its data. Ctrl-C
//! or SIGTERM stops the nodes (SIGTERM, then a grace period), then Postgres.
//!
//! Today the network is the sequencer nodes; the ledger's roles join it as they land.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ordo_testkit::{PgCluster, PgOptions, free_addr};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::Failure;
use crate::cli::UpArgs;

/// How long a node may take to report SERVING.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct NetworkFile {
    postgres: PostgresEntry,
    sequencers: Vec<NodeEntry>,
    topology: Vec<NodeEntry>,
    mediators: Vec<NodeEntry>,
    participants: Vec<NodeEntry>,
    gateways: Vec<NodeEntry>,
    auth: Auth,
}

#[derive(Serialize)]
struct PostgresEntry {
    url: String,
    /// Whether `ordo up` runs this Postgres (false when given `--database-url`).
    managed: bool,
}

#[derive(Serialize)]
struct NodeEntry {
    name: String,
    pid: Option<u32>,
    grpc: String,
    http: String,
    metrics: String,
    log: PathBuf,
}

#[derive(Serialize)]
struct Auth {
    /// Bearer token of the sequencers' admin API (SequencerAdminService).
    sequencer_admin_token: String,
}

struct Node {
    entry: NodeEntry,
    child: Child,
}

pub fn main(args: UpArgs) -> Result<(), Failure> {
    if args.sequencers == 0 {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--sequencers must be at least 1"
        )));
    }
    crate::runtime()?
        .block_on(async {
            // Installed first, so a Ctrl-C during start-up still stops what was started.
            let shutdown = crate::shutdown_signal()?;
            up(args, shutdown).await
        })
        .map_err(Failure::Runtime)
}

async fn up(args: UpArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let dir = absolute(&args.data_dir)?;
    for sub in ["logs", "config"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let _lock = lock_data_dir(&dir)?;
    let network_json = dir.join("network.json");
    // A file left by a crashed run describes processes that are gone.
    let _ = std::fs::remove_file(&network_json);

    let (pg, url) = postgres(&dir, args.database_url.as_deref()).await?;
    let admin_token = admin_token(&dir)?;
    let exe = std::env::current_exe().context("locating the ordo binary")?;

    let mut configs = Vec::new();
    for i in 1..=args.sequencers {
        configs.push(write_sequencer_config(&dir, i, &url, &admin_token)?);
    }
    provision_sequencer(&exe, &configs[0]).await?;

    let mut nodes = Vec::new();
    let started = start_all(&exe, &dir, &configs, &mut nodes).await;
    if let Err(e) = started {
        stop_all(&mut nodes).await;
        return Err(e);
    }

    let file = NetworkFile {
        postgres: PostgresEntry {
            url: url.clone(),
            managed: pg.is_some(),
        },
        sequencers: nodes.iter().map(|n| clone_entry(&n.entry)).collect(),
        topology: vec![],
        mediators: vec![],
        participants: vec![],
        gateways: vec![],
        auth: Auth {
            sequencer_admin_token: admin_token,
        },
    };
    write_atomically(&network_json, &serde_json::to_vec_pretty(&file)?)?;
    println!("ordo network is up ({} sequencer nodes)", nodes.len());
    for n in &nodes {
        println!(
            "  {:<12} grpc {}  metrics {}",
            n.entry.name, n.entry.grpc, n.entry.metrics
        );
    }
    println!("  postgres     {url}");
    println!("network file: {}", network_json.display());
    println!("logs:         {}", dir.join("logs").display());
    println!(
        "Ctrl-C stops the network; `ordo up --data-dir {}` resumes it.",
        args.data_dir.display()
    );

    supervise(&mut nodes, shutdown).await;
    let _ = std::fs::remove_file(&network_json);
    stop_all(&mut nodes).await;
    drop(pg);
    println!("ordo network stopped");
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// One `ordo up` per data directory: an exclusive `flock` held while it runs.
fn lock_data_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("up.lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another `ordo up` is running on {}; stop it first or use another --data-dir",
            dir.display()
        )
    })
}

/// The private Postgres in `DIR/postgres` (created on first use), or the given database.
async fn postgres(dir: &Path, url: Option<&str>) -> anyhow::Result<(Option<PgCluster>, String)> {
    if let Some(url) = url {
        return Ok((None, url.to_owned()));
    }
    let root = dir.join("postgres");
    let pg = tokio::task::spawn_blocking(move || {
        PgCluster::open(
            &root,
            ordo_testkit::free_port(),
            PgOptions {
                durable: true,
                ..PgOptions::default()
            },
        )
    })
    .await?
    .context(
        "cannot start the local Postgres (pass --database-url to use an existing server; \
         as root, the data directory must be reachable by the `postgres` user)",
    )?;
    let url = pg.ensure_database("ordo_sequencer").await?;
    Ok((Some(pg), url))
}

/// The sequencers' admin token, made once per data directory.
fn admin_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_owned());
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_atomically(&path, token.as_bytes())?;
    Ok(token)
}

fn write_sequencer_config(dir: &Path, i: usize, url: &str, token: &str) -> anyhow::Result<PathBuf> {
    let config = ordo_sequencer::SequencerConfig {
        node_name: format!("sequencer-{i}"),
        database_url: url.to_owned(),
        grpc_listen: free_addr(),
        http_listen: free_addr(),
        admin_token: token.to_owned(),
        ..Default::default()
    };
    config.validate()?;
    let path = dir.join("config").join(format!("sequencer-{i}.toml"));
    write_atomically(&path, toml::to_string(&config)?.as_bytes())?;
    Ok(path)
}

async fn provision_sequencer(exe: &Path, config: &Path) -> anyhow::Result<()> {
    let out = Command::new(exe)
        .args(["sequencer", "init", "--config"])
        .arg(config)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "provisioning the sequencer database failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn start_all(
    exe: &Path,
    dir: &Path,
    configs: &[PathBuf],
    nodes: &mut Vec<Node>,
) -> anyhow::Result<()> {
    for config in configs {
        let parsed: ordo_sequencer::SequencerConfig =
            toml::from_str(&std::fs::read_to_string(config)?)?;
        let name = parsed.node_name.clone();
        let log = dir.join("logs").join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(exe)
            .args(["sequencer", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        nodes.push(Node {
            entry: NodeEntry {
                name,
                pid: child.id(),
                grpc: format!("http://{}", parsed.grpc_listen),
                http: format!("http://{}", parsed.http_listen),
                metrics: format!("http://{}/metrics", parsed.http_listen),
                log,
            },
            child,
        });
    }
    for node in nodes.iter_mut() {
        wait_ready(node).await?;
    }
    Ok(())
}

/// Waits until the node's gRPC health reports SERVING, failing early if it exits.
async fn wait_ready(node: &mut Node) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
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
        let serving = async {
            let channel = tonic::transport::Endpoint::from_shared(node.entry.grpc.clone())?
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await?;
            let reply = tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: ordo_sequencer::HEALTH_SERVICE.into(),
                })
                .await?;
            Ok::<_, anyhow::Error>(reply.get_ref().status == ServingStatus::Serving as i32)
        };
        if matches!(serving.await, Ok(true)) {
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
async fn supervise(nodes: &mut [Node], shutdown: impl Future<Output = ()>) {
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

/// SIGTERM every node, then wait for each (killing it after the grace period).
async fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter() {
        if let Some(pid) = node.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for node in nodes.iter_mut() {
        if tokio::time::timeout(STOP_GRACE, node.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = %node.entry.name, "did not stop within {STOP_GRACE:?}; killing it");
            let _ = node.child.kill().await;
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn clone_entry(e: &NodeEntry) -> NodeEntry {
    NodeEntry {
        name: e.name.clone(),
        pid: e.pid,
        grpc: e.grpc.clone(),
        http: e.http.clone(),
        metrics: e.metrics.clone(),
        log: e.log.clone(),
    }
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
