//! `ordo up`: a whole local network in one command. It starts a private Postgres in the
//! data directory (unless given a database URL) with one database per node, writes each
//! node's config (`DIR/config`) and key (`DIR/keys`), provisions every node (`ordo <role>
//! init`), starts the sequencers, then the topology manager, registers the mediator and
//! the participant shards with it, starts them, and writes `DIR/network.json` once every
//! node reports SERVING. A second `ordo up` on the same directory resumes the same network
//! with its data, keys and secrets. Ctrl-C or SIGTERM stops the nodes (members first, then
//! the sequencers; SIGTERM, then a grace period), then Postgres.

mod configs;
mod nodes;
mod register;

use std::path::{Path, PathBuf};

use anyhow::Context;
use ordo_core::MemberId;
use ordo_testkit::{PgCluster, PgOptions};

use self::configs::{Databases, ParticipantLinks, Secrets};
use self::nodes::{Launch, Node};
use self::register::{Member, Registrar};
use crate::Failure;
use crate::cli::UpArgs;
use crate::network::{Auth, NetworkFile, PostgresEntry};

/// Participant shards of the local network (`shard-1` … served by `participant-1` …).
const SHARDS: usize = 2;

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
    for sub in ["logs", "config", "keys"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let _lock = lock_data_dir(&dir)?;
    let network_json = dir.join("network.json");
    // A file left by a crashed run describes processes that are gone.
    let _ = std::fs::remove_file(&network_json);

    let (pg, dbs) = postgres(&dir, args.database_url.as_deref()).await?;
    let secrets = Secrets::load_or_create(&dir)?;
    let exe = std::env::current_exe().context("locating the ordo binary")?;

    tokio::pin!(shutdown);
    let mut nodes = Vec::new();
    let env = Env {
        exe: &exe,
        dir: &dir,
        dbs: &dbs,
        secrets: &secrets,
        managed_postgres: pg.is_some(),
    };
    let started = tokio::select! {
        r = start(&env, args.sequencers, &mut nodes) => Some(r),
        () = &mut shutdown => None,
    };
    let file = match started {
        Some(Ok(file)) => file,
        Some(Err(e)) => {
            nodes::stop_all(&mut nodes).await;
            return Err(e);
        }
        None => {
            println!("interrupted while starting; stopping what was started");
            nodes::stop_all(&mut nodes).await;
            return Ok(());
        }
    };
    write_atomically(&network_json, &serde_json::to_vec_pretty(&file)?)?;
    println!("ordo network is up");
    for n in &nodes {
        println!(
            "  {:<14} grpc {}  metrics {}",
            n.entry.name, n.entry.grpc, n.entry.metrics
        );
    }
    println!(
        "  {:<14} {}",
        "postgres",
        ordo_sequencer::redact_url(&dbs.sequencer)
    );
    println!("network file: {}", network_json.display());
    println!("logs:         {}", dir.join("logs").display());
    println!(
        "a Ledger API token: `ordo token --act-as PARTY --network {}`",
        network_json.display()
    );
    println!(
        "Ctrl-C stops the network; `ordo up --data-dir {}` resumes it.",
        args.data_dir.display()
    );

    nodes::supervise(&mut nodes, shutdown).await;
    let _ = std::fs::remove_file(&network_json);
    nodes::stop_all(&mut nodes).await;
    drop(pg);
    println!("ordo network stopped");
    Ok(())
}

/// What every step of the start needs.
struct Env<'a> {
    exe: &'a Path,
    dir: &'a Path,
    dbs: &'a Databases,
    secrets: &'a Secrets,
    /// Whether `ordo up` runs the Postgres (for network.json).
    managed_postgres: bool,
}

impl Env<'_> {
    async fn init(&self, role: &str, name: &str, config: &Path) -> anyhow::Result<Member> {
        let report = nodes::provision(self.exe, self.dir, role, name, config).await?;
        Member::from_report(&report)
    }

    fn spawn(&self, launch: Launch, nodes: &mut Vec<Node>) -> anyhow::Result<()> {
        nodes.push(nodes::spawn(self.exe, self.dir, launch)?);
        Ok(())
    }
}

/// Provisions and starts every node in dependency order, pushing each started one to
/// `nodes` (so the caller stops them whatever happens). Returns the network file.
async fn start(
    env: &Env<'_>,
    sequencers: usize,
    nodes: &mut Vec<Node>,
) -> anyhow::Result<NetworkFile> {
    let (dir, secrets) = (env.dir, env.secrets);

    // Configs and provisioning; the members' configs name the topology manager's id.
    let mut seq_configs = Vec::new();
    for i in 1..=sequencers {
        seq_configs.push(configs::sequencer(dir, i, &env.dbs.sequencer, secrets)?);
    }
    let endpoints: Vec<String> = seq_configs
        .iter()
        .map(|(c, _)| format!("http://{}", c.grpc_listen))
        .collect();
    nodes::provision(env.exe, dir, "sequencer", "sequencer-1", &seq_configs[0].1).await?;
    let (topo, topo_path) = configs::topology(dir, &env.dbs.topology, &endpoints, secrets)?;
    let manager: MemberId = env
        .init("topology", "topology", &topo_path)
        .await?
        .member
        .parse()
        .context("the topology manager's member id")?;
    let (med, med_path) = configs::mediator(dir, &env.dbs.mediator, &endpoints, &manager)?;
    let mediator = env.init("mediator", "mediator", &med_path).await?;
    let links = ParticipantLinks {
        sequencers: &endpoints,
        topology_manager: &manager,
        topology_admin: format!("http://{}", topo.grpc_listen),
        secrets,
    };
    let mut participants = Vec::new();
    for (i, url) in env.dbs.shards.iter().enumerate() {
        let (config, path) = configs::participant(dir, i + 1, url, &links)?;
        let member = env.init("participant", &config.node_name, &path).await?;
        participants.push((config, path, member));
    }

    // The sequencers, then the manager (it registers itself in them and bootstraps).
    for (c, path) in &seq_configs {
        env.spawn(
            Launch {
                role: "sequencer",
                name: c.node_name.clone(),
                shard: None,
                config: path.clone(),
                grpc: c.grpc_listen,
                http: c.http_listen,
                health: ordo_sequencer::HEALTH_SERVICE,
                tier: 0,
            },
            nodes,
        )?;
    }
    nodes::wait_ready(nodes).await?;
    env.spawn(
        Launch {
            role: "topology",
            name: topo.node_name.clone(),
            shard: None,
            config: topo_path,
            grpc: topo.grpc_listen,
            http: topo.http_listen,
            health: ordo_topology::HEALTH_SERVICE,
            tier: 1,
        },
        nodes,
    )?;
    nodes::wait_ready(nodes).await?;

    // Members must be in topology (and so in the sequencer) before they connect.
    let mut registrar = Registrar::connect(&links.topology_admin, &secrets.topology_admin).await?;
    registrar.register(&mediator, None).await?;
    for (c, _, member) in &participants {
        registrar.register(member, Some(&c.shard)).await?;
    }
    env.spawn(
        Launch {
            role: "mediator",
            name: med.node_name.clone(),
            shard: None,
            config: med_path,
            grpc: med.grpc_listen,
            http: med.http_listen,
            health: ordo_mediator::HEALTH_SERVICE,
            tier: 2,
        },
        nodes,
    )?;
    for (c, path, _) in participants {
        env.spawn(
            Launch {
                role: "participant",
                name: c.node_name.clone(),
                shard: Some(c.shard.clone()),
                config: path,
                grpc: c.grpc_listen,
                http: c.http_listen,
                health: ordo_participant::HEALTH_SERVICE,
                tier: 2,
            },
            nodes,
        )?;
    }
    nodes::wait_ready(nodes).await?;

    let entries = |role: &str| {
        nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.entry.clone())
            .collect::<Vec<_>>()
    };
    Ok(NetworkFile {
        postgres: PostgresEntry {
            url: env.dbs.sequencer.clone(),
            managed: env.managed_postgres,
        },
        sequencers: entries("sequencer"),
        topology: entries("topology"),
        mediators: entries("mediator"),
        participants: entries("participant"),
        gateways: vec![],
        auth: Auth {
            algorithm: "HS256".into(),
            secret: secrets.ledger.clone(),
            sequencer_admin_token: secrets.sequencer_admin.clone(),
            topology_admin_token: secrets.topology_admin.clone(),
        },
    })
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

/// The private Postgres in `DIR/postgres` (created on first use), or the given server,
/// with every node's database.
async fn postgres(dir: &Path, url: Option<&str>) -> anyhow::Result<(Option<PgCluster>, Databases)> {
    if let Some(url) = url {
        let dbs = Databases::ensure(url, url.to_owned(), SHARDS).await?;
        return Ok((None, dbs));
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
    let sequencer = pg.ensure_database("ordo_sequencer").await?;
    let dbs = Databases::ensure(&pg.url("postgres"), sequencer, SHARDS).await?;
    Ok((Some(pg), dbs))
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
