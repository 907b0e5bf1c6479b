//! `ordo up`: a whole local network in one command. It starts a private Postgres in the
//! data directory (unless given a database URL) with one database per service, writes
//! each node's config (`DIR/config`) and key (`DIR/keys`), provisions every service
//! (`ordo <role> init`), starts the sequencers (active-active), then two replicas of the
//! topology manager, registers the mediator and the participant shards with it, starts two
//! replicas of each, and writes `DIR/network.json` once every sequencer and every
//! service's active replica reports SERVING (and every passive one answers `/status`).
//! While it runs it keeps each replica's `role` in network.json current. A second `ordo
//! up` on the same directory resumes the same network with its data, keys and secrets.
//! Ctrl-C or SIGTERM stops the nodes (members first, then the sequencers; SIGTERM, then a
//! grace period), then Postgres.

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
    match started {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            nodes::stop_all(&mut nodes).await;
            return Err(e);
        }
        None => {
            println!("interrupted while starting; stopping what was started");
            nodes::stop_all(&mut nodes).await;
            return Ok(());
        }
    }
    write_network(&network_json, &network_file(&env, &nodes))?;
    println!("ordo network is up");
    for n in &nodes {
        println!(
            "  {:<16} {:<10} {:<8} grpc {}  metrics {}",
            n.entry.name, n.entry.service, n.entry.role, n.entry.grpc, n.entry.metrics
        );
    }
    println!(
        "  {:<16} {}",
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
        "every node's role and health: `ordo admin status --network {}`",
        network_json.display()
    );
    println!(
        "Ctrl-C stops the network; `ordo up --data-dir {}` resumes it.",
        args.data_dir.display()
    );

    // network.json follows the replicas' roles while the network runs.
    nodes::supervise(&mut nodes, shutdown, |nodes| {
        if let Err(e) = write_network(&network_json, &network_file(&env, nodes)) {
            tracing::error!(error = %e, "cannot update network.json");
        }
    })
    .await;
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
    /// Provisions the service of the node `launch` would start; the member it reports.
    async fn init(&self, launch: &Launch) -> anyhow::Result<Member> {
        let report = nodes::provision(
            self.exe,
            self.dir,
            launch.role,
            &launch.name,
            &launch.config,
        )
        .await?;
        Member::from_report(&report)
    }

    fn spawn(&self, launch: Launch, nodes: &mut Vec<Node>) -> anyhow::Result<()> {
        nodes.push(nodes::spawn(self.exe, self.dir, launch)?);
        Ok(())
    }
}

/// The replicas of every active-passive service: `topology-a`, `topology-b`, ….
const REPLICAS: [&str; 2] = ["a", "b"];

fn replica_names(base: &str) -> Vec<String> {
    REPLICAS.iter().map(|r| format!("{base}-{r}")).collect()
}

/// Every node to start, with its written config, and the members to register.
struct Plan {
    sequencers: Vec<Launch>,
    topology: Vec<Launch>,
    /// The topology manager replicas' admin endpoints.
    topology_admin: Vec<String>,
    /// The mediator's and the participants' replicas.
    members: Vec<Launch>,
    mediator: Member,
    /// Each shard with its participant.
    participants: Vec<(String, Member)>,
}

/// Provisions and starts every node in dependency order, pushing each started one to
/// `nodes` (so the caller stops them whatever happens).
async fn start(env: &Env<'_>, sequencers: usize, nodes: &mut Vec<Node>) -> anyhow::Result<()> {
    let plan = prepare(env, sequencers).await?;
    // The sequencers, then the manager (it registers itself in them and bootstraps).
    for launch in plan.sequencers {
        env.spawn(launch, nodes)?;
    }
    nodes::wait_ready(nodes).await?;
    for launch in plan.topology {
        env.spawn(launch, nodes)?;
    }
    nodes::wait_ready(nodes).await?;
    // Members must be in topology (and so in the sequencer) before they connect.
    let mut registrar = Registrar::connect(&plan.topology_admin, &env.secrets.topology_admin)?;
    registrar.register(&plan.mediator, None).await?;
    for (shard, member) in &plan.participants {
        registrar.register(member, Some(shard)).await?;
    }
    for launch in plan.members {
        env.spawn(launch, nodes)?;
    }
    nodes::wait_ready(nodes).await?;
    nodes::refresh_roles(nodes).await;
    Ok(())
}

/// Writes every node's config and provisions every service once (through its first
/// replica's config: the replicas share the database and key). The members' configs name
/// the topology manager's id, which its provisioning reports.
async fn prepare(env: &Env<'_>, sequencers: usize) -> anyhow::Result<Plan> {
    let (dir, secrets) = (env.dir, env.secrets);
    let mut plan_sequencers = Vec::new();
    for i in 1..=sequencers {
        let (c, path) = configs::sequencer(dir, i, &env.dbs.sequencer, secrets)?;
        let listen = (c.grpc_listen, c.http_listen);
        plan_sequencers.push(Launch::sequencer(c.node_name, path, listen));
    }
    let endpoints: Vec<String> = plan_sequencers
        .iter()
        .map(|l| format!("http://{}", l.grpc))
        .collect();
    let first = &plan_sequencers[0];
    nodes::provision(env.exe, dir, "sequencer", &first.name, &first.config).await?;

    let mut topology = Vec::new();
    for name in replica_names("topology") {
        let (c, path) = configs::topology(dir, &name, &env.dbs.topology, &endpoints, secrets)?;
        topology.push(Launch::replica(
            "topology",
            name,
            "topology",
            path,
            (c.grpc_listen, c.http_listen),
        ));
    }
    let manager: MemberId = env
        .init(&topology[0])
        .await?
        .member
        .parse()
        .context("the topology manager's member id")?;

    let mut members = Vec::new();
    for name in replica_names("mediator") {
        let url = &env.dbs.mediator;
        let (c, path) = configs::mediator(dir, &name, url, &endpoints, &manager, secrets)?;
        members.push(Launch::replica(
            "mediator",
            name,
            "mediator",
            path,
            (c.grpc_listen, c.http_listen),
        ));
    }
    let mediator = env.init(&members[0]).await?;

    let links = ParticipantLinks {
        sequencers: &endpoints,
        topology_manager: &manager,
        topology_admin: topology
            .iter()
            .map(|l| format!("http://{}", l.grpc))
            .collect(),
        secrets,
    };
    let mut participants = Vec::new();
    for (i, url) in env.dbs.shards.iter().enumerate() {
        let shard = format!("shard-{}", i + 1);
        let first = members.len();
        for name in replica_names(&format!("participant-{}", i + 1)) {
            let (c, path) = configs::participant(dir, i + 1, &name, url, &links)?;
            members.push(Launch::replica(
                "participant",
                name,
                &c.shard,
                path,
                (c.grpc_listen, c.http_listen),
            ));
        }
        participants.push((shard, env.init(&members[first]).await?));
    }
    Ok(Plan {
        sequencers: plan_sequencers,
        topology_admin: links.topology_admin,
        topology,
        members,
        mediator,
        participants,
    })
}

/// What network.json says about the running nodes.
fn network_file(env: &Env<'_>, nodes: &[Node]) -> NetworkFile {
    let entries = |role: &str| {
        nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| n.entry.clone())
            .collect::<Vec<_>>()
    };
    NetworkFile {
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
            secret: env.secrets.ledger.clone(),
            sequencer_admin_token: env.secrets.sequencer_admin.clone(),
            topology_admin_token: env.secrets.topology_admin.clone(),
            replica_admin_token: env.secrets.replica_admin.clone(),
        },
    }
}

/// Writes network.json (atomically).
fn write_network(path: &Path, file: &NetworkFile) -> anyhow::Result<()> {
    write_atomically(path, &serde_json::to_vec_pretty(file)?)
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
