//! `ordo up`: a whole local network in one command. It starts a private Postgres in the
//! data directory (unless given a database URL) with one database per service, writes
//! each node's config (`DIR/config`) and key (`DIR/keys`), provisions every service
//! (`ordo <role> init`), starts the sequencers (active-active), then two replicas of the
//! topology manager, registers the mediator and the participant shards with it, starts two
//! replicas of each, and writes `DIR/network.json` once every sequencer and every
//! service's active replica reports SERVING (and every passive one answers `/status`).
//! Then it starts the JSON API gateway (`gateway-1`, which routes by network.json) and,
//! once its `/readyz` answers, lists it in network.json too.
//!
//! While it runs it keeps each replica's `role` in network.json current, and serves its
//! control API (`control.rs`), through which `ordo admin shard add` adds a shard to the
//! running network (kept in `DIR/shards.json`, see `shards.rs`). A second `ordo up` on the
//! same directory resumes the same network with its data, keys, secrets and added shards.
//! Ctrl-C or SIGTERM stops the nodes (the gateway, then the members, then the sequencers;
//! SIGTERM, then a grace period), then Postgres.

mod configs;
mod control;
mod nodes;
mod pki;
pub(crate) mod register;
mod shards;

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::net::SocketAddr;

use anyhow::Context;
use ordo_core::MemberId;
use ordo_ledger_client::network::TlsEntry;
use ordo_node::tls::{ClientAuth, TlsConfig};
use ordo_testkit::{PgCluster, PgOptions};
use tokio::sync::mpsc;

use self::configs::{Databases, ParticipantLinks, Secrets};
use self::control::Control;
use self::nodes::{Launch, Node};
use self::pki::Pki;
use self::register::{Member, Registrar};
use self::shards::Shard;
use crate::Failure;
use crate::cli::UpArgs;
use crate::network::{Auth, ControlEntry, NetworkFile, PostgresEntry};

/// For `ordo admin shard add`: the token file next to network.json, and a shard's
/// replicas unless told otherwise.
pub(crate) use self::configs::CONTROL_TOKEN;
/// For `ordo admin status`: whether a gateway is ready.
pub(crate) use self::nodes::readyz;
pub(crate) use self::shards::DEFAULT_REPLICAS;

/// The gateway `ordo up` runs.
const GATEWAY: &str = "gateway-1";

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
    // Owner-only: keys, configs with secrets, logs. (The data directory itself stays
    // reachable: run as root, the private Postgres runs as `postgres` below it; every
    // file in it that holds a secret is itself owner-only.)
    for sub in ["logs", "config", "keys"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    let _lock = lock_data_dir(&dir)?;
    let network_json = dir.join("network.json");
    // A file left by a crashed run describes processes that are gone.
    let _ = std::fs::remove_file(&network_json);

    let secrets = Secrets::load_or_create(&dir)?;
    let (pg, dbs) = postgres(&dir, args.database_url.as_deref(), &secrets.postgres).await?;
    let exe = std::env::current_exe().context("locating the ordo binary")?;
    let (pki, operator) = if args.insecure {
        tracing::warn!(
            "--insecure: every node serves plain text; tokens and ledger data cross the network in clear"
        );
        println!("WARNING: --insecure: the network runs without TLS");
        (None, None)
    } else {
        let pki = Pki::load_or_create(&dir)?;
        let operator = pki.operator()?;
        // `ordo up` itself calls the nodes (readiness, roles, registration) as the operator.
        ordo_node::tls::trust(ordo_node::tls::ClientTls::load(
            &operator.ca,
            Some((&operator.cert, &operator.key)),
        )?);
        (Some(pki), Some(operator))
    };
    let env = Arc::new(Env {
        exe,
        dir,
        dbs,
        secrets,
        managed_postgres: pg.is_some(),
        pki,
        operator,
    });

    let mut nodes = Vec::new();
    let outcome = run(&env, &args, &mut nodes, shutdown).await;
    if let Ok(Phase::Starting) = outcome {
        println!("interrupted while starting; stopping what was started");
    }
    let _ = std::fs::remove_file(&network_json);
    nodes::stop_all(&mut nodes).await;
    drop(pg);
    if let Ok(Phase::Running) = outcome {
        println!("ordo network stopped");
    }
    outcome.map(|_| ())
}

/// When the shutdown signal came.
enum Phase {
    Starting,
    Running,
}

/// Starts the network into `nodes`, then keeps network.json current and serves the control
/// API until the shutdown signal. The caller stops the nodes whatever this returns.
async fn run(
    env: &Arc<Env>,
    args: &UpArgs,
    nodes: &mut Vec<Node>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Phase> {
    tokio::pin!(shutdown);
    let started = tokio::select! {
        r = start(env, args.sequencers, nodes) => r?,
        () = &mut shutdown => return Ok(Phase::Starting),
    };
    let (handoff, mut added) = mpsc::channel(1);
    let control = Control::serve(control::Adder::new(
        env.clone(),
        started.links,
        started.registrar,
        handoff,
    ))
    .await?;
    let network_json = env.dir.join("network.json");
    let write =
        |nodes: &[Node]| write_network(&network_json, &network_file(env, nodes, &control.http));
    // The gateway routes by network.json, so the file comes first, with the ledger nodes.
    write(nodes)?;
    tokio::select! {
        r = start_gateway(env, &network_json, nodes) => r?,
        () = &mut shutdown => return Ok(Phase::Starting),
    }
    write(nodes)?;
    let refresh = tokio::spawn(refresh_feed_tokens(env.clone()));
    print_started(args, &env.dbs, nodes, &network_json, &control.http);

    // network.json follows the replicas' roles and the added shards while the network runs.
    nodes::supervise(nodes, shutdown, &mut added, |nodes| {
        if let Err(e) = write(nodes) {
            tracing::error!(error = %e, "cannot update network.json");
        }
    })
    .await;
    refresh.abort();
    Ok(Phase::Running)
}

fn print_started(
    args: &UpArgs,
    dbs: &Databases,
    nodes: &[Node],
    network_json: &Path,
    control: &str,
) {
    println!("ordo network is up");
    for n in nodes {
        let e = &n.entry;
        if e.grpc.is_empty() {
            println!(
                "  {:<16} {:<10} {:<8} http {}  metrics {}",
                e.name, e.service, e.role, e.http, e.metrics
            );
        } else {
            println!(
                "  {:<16} {:<10} {:<8} grpc {}  metrics {}",
                e.name, e.service, e.role, e.grpc, e.metrics
            );
        }
    }
    println!(
        "  {:<16} {}",
        "postgres",
        ordo_sequencer::redact_url(&dbs.sequencer)
    );
    println!("  {:<16} {control}", "control");
    let file = network_json.display();
    println!("network file: {file}");
    println!(
        "logs:         {}",
        network_json.with_file_name("logs").display()
    );
    println!("a Ledger API token: `ordo token --act-as PARTY --network {file}`");
    println!("every node's role and health: `ordo admin status --network {file}`");
    println!("another shard: `ordo admin shard add --name shard-3 --network {file}`");
    println!(
        "Ctrl-C stops the network; `ordo up --data-dir {}` resumes it.",
        args.data_dir.display()
    );
}

/// What every step of the start (and every shard added later) needs.
pub struct Env {
    exe: PathBuf,
    dir: PathBuf,
    dbs: Databases,
    secrets: Secrets,
    /// Whether `ordo up` runs the Postgres (for network.json).
    managed_postgres: bool,
    /// The local CA, unless `--insecure`.
    pki: Option<Pki>,
    /// The operator's certificate, for network.json.
    operator: Option<TlsEntry>,
}

impl Env {
    /// The URL of a node listening on `addr`: `https://` unless `--insecure`.
    fn url(&self, addr: SocketAddr) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// A fresh certificate for node `name` acting for `member`, unless `--insecure`.
    fn tls(
        &self,
        name: &str,
        member: Option<&str>,
        client_auth: ClientAuth,
    ) -> anyhow::Result<Option<TlsConfig>> {
        self.pki
            .as_ref()
            .map(|p| p.node(name, member, client_auth))
            .transpose()
    }

    /// Provisions the service of the node `launch` would start; the member it reports.
    async fn init(&self, launch: &Launch) -> anyhow::Result<Member> {
        let report = nodes::provision(
            &self.exe,
            &self.dir,
            launch.role,
            &launch.name,
            &launch.config,
        )
        .await?;
        Member::from_report(&report)
    }

    fn spawn(&self, launch: Launch, nodes: &mut Vec<Node>) -> anyhow::Result<()> {
        nodes.push(nodes::spawn(&self.exe, &self.dir, launch, |a| self.url(a))?);
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
    /// The mediator's and the participants' replicas.
    members: Vec<Launch>,
    mediator: Member,
    /// Each shard with its participant.
    participants: Vec<(String, Member)>,
    links: ParticipantLinks,
}

/// What adding a shard later needs from the start.
struct Started {
    links: ParticipantLinks,
    registrar: Registrar,
}

/// Provisions and starts every node in dependency order, pushing each started one to
/// `nodes` (so the caller stops them whatever happens).
async fn start(env: &Env, sequencers: usize, nodes: &mut Vec<Node>) -> anyhow::Result<Started> {
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
    let mut registrar =
        Registrar::connect(&plan.links.topology_admin, &env.secrets.topology_admin)?;
    registrar.register(&plan.mediator, None).await?;
    for (shard, member) in &plan.participants {
        registrar.register(member, Some(shard)).await?;
    }
    for launch in plan.members {
        env.spawn(launch, nodes)?;
    }
    nodes::wait_ready(nodes).await?;
    nodes::refresh_roles(nodes).await;
    Ok(Started {
        links: plan.links,
        registrar,
    })
}

/// Writes every node's config and provisions every service once (through its first
/// replica's config: the replicas share the database and key). The members' configs name
/// the topology manager's id, which its provisioning reports.
async fn prepare(env: &Env, sequencers: usize) -> anyhow::Result<Plan> {
    let (dir, secrets) = (env.dir.as_path(), &env.secrets);
    let mut plan_sequencers = Vec::new();
    for i in 1..=sequencers {
        // Members call the sequencers: a certificate is required of every caller.
        let tls = env.tls(&format!("sequencer-{i}"), None, ClientAuth::Required)?;
        let (c, path) = configs::sequencer(dir, i, &env.dbs.sequencer, secrets, tls)?;
        let listen = (c.grpc_listen, c.http_listen);
        plan_sequencers.push(Launch::sequencer(c.node_name, path, listen));
    }
    let endpoints: Vec<String> = plan_sequencers
        .iter()
        .filter_map(|l| l.grpc)
        .map(|a| env.url(a))
        .collect();
    let first = &plan_sequencers[0];
    nodes::provision(&env.exe, dir, "sequencer", &first.name, &first.config).await?;

    let mut topology = Vec::new();
    for name in replica_names("topology") {
        let tls = env.tls(&name, Some("topology"), ClientAuth::Required)?;
        let url = &env.dbs.topology;
        let (c, path) = configs::topology(dir, &name, url, &endpoints, secrets, tls)?;
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
        let tls = env.tls(&name, Some("mediator"), ClientAuth::Required)?;
        let (c, path) = configs::mediator(dir, &name, url, &endpoints, &manager, secrets, tls)?;
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
        sequencers: endpoints,
        topology_manager: manager,
        topology_admin: topology
            .iter()
            .filter_map(|l| l.grpc)
            .map(|a| env.url(a))
            .collect(),
    };
    let mut participants = Vec::new();
    let mut shards = Shard::initial();
    shards.extend(shards::added(dir)?);
    for shard in &shards {
        let (launches, member) = prepare_shard(env, &links, shard).await?;
        members.extend(launches);
        participants.push((shard.name(), member));
    }
    Ok(Plan {
        sequencers: plan_sequencers,
        topology,
        members,
        mediator,
        participants,
        links,
    })
}

/// Makes `shard`'s database, writes its replicas' configs and provisions its participant
/// (schema and key); the replicas to start and the member to register. The same for the
/// shards of the start and for a shard added later.
async fn prepare_shard(
    env: &Env,
    links: &ParticipantLinks,
    shard: &Shard,
) -> anyhow::Result<(Vec<Launch>, Member)> {
    let url = env.dbs.shard(shard.number).await?;
    let mut launches = Vec::new();
    for name in shard.replica_names() {
        // Applications may use the Ledger API with server-only TLS.
        let tls = env.tls(&name, Some(&shard.member()), ClientAuth::Optional)?;
        let (c, path) =
            configs::participant(&env.dir, shard, &name, &url, links, &env.secrets, tls)?;
        launches.push(Launch::replica(
            "participant",
            name,
            &c.shard,
            path,
            (c.grpc_listen, c.http_listen),
        ));
    }
    let member = env.init(&launches[0]).await?;
    Ok((launches, member))
}

/// Starts the gateway, which routes by `network_json`, and waits for its `/readyz`.
async fn start_gateway(
    env: &Env,
    network_json: &Path,
    nodes: &mut Vec<Node>,
) -> anyhow::Result<()> {
    // The JSON API is for browsers and applications: server-only TLS.
    let tls = env.tls(GATEWAY, None, ClientAuth::None)?;
    let (c, path) = configs::gateway(&env.dir, GATEWAY, network_json, &env.secrets, tls)?;
    env.spawn(Launch::gateway(GATEWAY.into(), path, c.http_listen), nodes)?;
    nodes::wait_ready(nodes).await
}

/// Writes the gateway's cache token afresh every quarter of its lifetime (the gateway
/// picks the file up when it changes), for as long as the network runs.
async fn refresh_feed_tokens(env: Arc<Env>) {
    let mut every = tokio::time::interval(configs::FEED_TOKEN_LIFETIME / 4);
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(e) = configs::write_feed_token(&env.dir, GATEWAY, &env.secrets) {
            tracing::error!(error = %e, "cannot refresh the gateway's cache token");
        }
    }
}

/// What network.json says about the running nodes and the control API.
fn network_file(env: &Env, nodes: &[Node], control: &str) -> NetworkFile {
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
        gateways: entries("gateway"),
        control: ControlEntry {
            http: control.to_owned(),
        },
        auth: Auth {
            algorithm: "EdDSA".into(),
            secret: String::new(),
            signing_key_file: Some(env.secrets.token_signing_key.clone()),
            public_key_file: Some(env.secrets.token_public_key.clone()),
            sequencer_admin_token: env.secrets.sequencer_admin.clone(),
            topology_admin_token: env.secrets.topology_admin.clone(),
            replica_admin_token: env.secrets.replica_admin.clone(),
        },
        tls: env.operator.clone(),
    }
}

/// Writes network.json (atomically), owner-only: it holds the admin tokens and the token
/// secret.
fn write_network(path: &Path, file: &NetworkFile) -> anyhow::Result<()> {
    write_private(path, &serde_json::to_vec_pretty(file)?)
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

/// The private Postgres in `DIR/postgres` (created on first use, its `ordo` role with
/// `password`, SCRAM, no connection trusted), or the given server, with every node's
/// database.
async fn postgres(
    dir: &Path,
    url: Option<&str>,
    password: &str,
) -> anyhow::Result<(Option<PgCluster>, Databases)> {
    if let Some(url) = url {
        let dbs = Databases::ensure(url, url.to_owned()).await?;
        return Ok((None, dbs));
    }
    let root = dir.join("postgres");
    let password = password.to_owned();
    let pg = tokio::task::spawn_blocking(move || {
        PgCluster::open(
            &root,
            ordo_testkit::free_port(),
            PgOptions {
                durable: true,
                password: Some(password),
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
    let dbs = Databases::ensure(&pg.url("postgres"), sequencer).await?;
    Ok((Some(pg), dbs))
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a secret like [`write_atomically`], readable and writable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
