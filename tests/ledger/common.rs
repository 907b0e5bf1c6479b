//! `LedgerNet`: a whole domain in one test process — sequencer node(s), the topology
//! manager, the mediator and two participant shards, each in-process on its own tokio
//! runtime over a shared throwaway Postgres (one fresh set of databases per network).
//!
//! Each node runs on its own runtime so that a test can stop it gracefully (its shutdown
//! future resolves; `run` drains and returns) or crash it (the runtime is shut down: every
//! task of the node is dropped wherever it is, nothing drains), then start it again on the
//! same database, key and ports.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ordo_core::MemberId;
use ordo_lease::ReplicaConfig;
use ordo_mediator::MediatorConfig;
use ordo_node::http_client::{self, Answer, Method};
use ordo_participant::auth::{LedgerClaims, mint_hs256};
use ordo_participant::{AuthConfig, ParticipantConfig};
use ordo_proto::admin::v1 as admin;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_proto::ledger::v1 as pb;
use ordo_sequencer::SequencerConfig;
use ordo_testkit::{PgCluster, PgOptions, wait_for};
use ordo_topology::{ParametersConfig, TopologyConfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const SEQ_ADMIN: &str = "ledger-e2e-sequencer-admin";
pub const TOPOLOGY_ADMIN: &str = "ledger-e2e-topology-admin";
/// The participant replicas' `/admin/step-down` token.
pub const REPLICA_ADMIN: &str = "ledger-e2e-replica-admin";
pub const JWT_SECRET: &str = "ledger-e2e-jwt-secret-0123456789";
pub const APP: &str = "ledger-e2e";
/// The domain's participant response timeout: short, so that the timeout test is quick.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
pub const IOU: &str = include_str!("../../examples/packages/iou.toml");
pub const SHARDS: [&str; 2] = ["shard-1", "shard-2"];
/// How long a condition may take to come true before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The shared Postgres cluster
// ---------------------------------------------------------------------------------------

/// One cluster for every network alive at once (tests of the binary run in parallel); it
/// is stopped when the last network holding it is dropped.
static PG: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());
static NETWORKS: AtomicUsize = AtomicUsize::new(0);

async fn shared_pg() -> Result<Arc<PgCluster>> {
    tokio::task::spawn_blocking(|| {
        let mut slot = PG
            .lock()
            .map_err(|_| anyhow!("the Postgres slot is poisoned"))?;
        if let Some(pg) = slot.upgrade() {
            return Ok(pg);
        }
        let pg = Arc::new(PgCluster::start(PgOptions::default())?);
        *slot = Arc::downgrade(&pg);
        Ok(pg)
    })
    .await?
}

// ---------------------------------------------------------------------------------------
// TLS: one local CA for the test process
// ---------------------------------------------------------------------------------------

/// The process's CA and the files of the certificates it issued. Every network of the
/// process uses it: the harness's own calls (`http_client`, `serving`) trust one CA per
/// process, as a tool trusts one network's.
struct Pki {
    dir: tempfile::TempDir,
    ca: ordo_node::tls::LocalCa,
}

static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();

fn pki() -> &'static Pki {
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a directory for the test CA");
        let ca = ordo_node::tls::LocalCa::generate().expect("a test CA");
        ordo_testkit::write_secret(&dir.path().join("ca.pem"), ca.cert_pem()).expect("ca.pem");
        let pki = Pki { dir, ca };
        // The harness calls the nodes as an operator: a certificate naming no member.
        let operator = pki.node("operator", None, ordo_node::tls::ClientAuth::None);
        ordo_node::tls::trust(
            ordo_node::tls::ClientTls::of_node(&operator).expect("the operator's certificate"),
        );
        pki
    })
}

impl Pki {
    /// A certificate for node `name` (unique in the process) acting for `member`.
    fn node(
        &self,
        name: &str,
        member: Option<&str>,
        client_auth: ordo_node::tls::ClientAuth,
    ) -> ordo_node::tls::TlsConfig {
        let issued = self
            .ca
            .issue(&ordo_node::tls::Subject::loopback(name, member))
            .expect("a node certificate");
        let (cert, key) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        ordo_testkit::write_secret(&cert, issued.cert_pem).expect("a certificate file");
        ordo_testkit::write_secret(&key, issued.key_pem).expect("a key file");
        ordo_node::tls::TlsConfig {
            cert,
            key,
            ca: self.dir.path().join("ca.pem"),
            client_auth,
        }
    }
}

/// A channel to `url` (https) that connects on first use, as the harness's operator.
pub fn lazy_channel(url: &str) -> Result<Channel> {
    let tls = ordo_node::tls::trusted();
    Ok(ordo_node::tls::lazy_channel(url, tls.as_ref(), |e| e)?)
}

// ---------------------------------------------------------------------------------------
// Nodes on their own runtimes
// ---------------------------------------------------------------------------------------

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A node running in-process on its own runtime.
pub struct Node {
    pub name: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// Graceful stop: the shutdown future resolves, `run` drains and returns (its result
    /// must be Ok), then whatever is left of the runtime goes.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let result = match self.task.take() {
            Some(t) => tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .with_context(|| format!("{} did not stop within 30 s", self.name))?
                .map_err(|e| anyhow!("{} panicked: {e}", self.name))?
                .map_err(|e| anyhow!("{} stopped with an error: {e}", self.name)),
            None => Ok(()),
        };
        self.shutdown_runtime().await;
        result
    }

    /// Crash-like stop: the runtime is shut down, dropping every task of the node wherever
    /// it is (no drain, no NOT_SERVING, open transactions rolled back by Postgres).
    pub async fn crash(mut self) -> Result<()> {
        self.stop.take();
        self.task.take();
        self.shutdown_runtime().await;
        Ok(())
    }

    async fn shutdown_runtime(&mut self) {
        if let Some(rt) = self.rt.take() {
            let _ = tokio::task::spawn_blocking(move || {
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// When a node counts as started.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Its gRPC health reports this service SERVING.
    Serving(&'static str),
    /// Its HTTP port answers `/livez` (a passive replica never serves).
    Listening,
}

/// Starts a node on a runtime of its own: `bind` (run on that runtime, retried while the
/// ports are still held by a previous incarnation) then `run`; answers once it is started
/// as `until` says.
async fn launch<L, B, BF, R, RF, E>(name: &str, until: Until, bind: B, run: R) -> Result<Node>
where
    L: Send + 'static,
    B: Fn() -> BF,
    BF: Future<Output = std::io::Result<(L, SocketAddr, SocketAddr)>> + Send + 'static,
    R: FnOnce(L, Shutdown) -> RF + Send + 'static,
    RF: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name.to_owned())
        .enable_all()
        .build()?;
    let (listeners, grpc, http) = ordo_testkit::wait_for(
        &format!("{name} to bind its ports"),
        Duration::from_secs(20),
        || async {
            match rt.spawn(bind()).await {
                Ok(Ok(bound)) => Some(bound),
                Ok(Err(e)) => {
                    tracing::debug!(node = name, error = %e, "ports still busy; retrying");
                    None
                }
                Err(e) => {
                    tracing::warn!(node = name, error = %e, "bind task failed; retrying");
                    None
                }
            }
        },
    )
    .await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown: Shutdown = Box::pin(async move {
        let _ = stopped.await;
    });
    let task = rt.spawn(async move { run(listeners, shutdown).await.map_err(|e| e.to_string()) });
    let mut node = Node {
        name: name.to_owned(),
        grpc,
        http,
        rt: Some(rt),
        stop: Some(stop),
        task: Some(task),
    };
    let ready = ordo_testkit::wait_for(
        &format!("{name} to be started ({until:?})"),
        PATIENCE,
        || async {
            if node.task.as_ref().is_some_and(|t| t.is_finished()) {
                return Some(false);
            }
            let started = match until {
                Until::Serving(service) => {
                    ordo_node::serving(&format!("https://{grpc}"), service).await
                }
                Until::Listening => http_client::get(&format!("https://{http}/livez"))
                    .await
                    .is_ok_and(|a| a.status == 200),
            };
            started.then_some(true)
        },
    )
    .await?;
    if !ready {
        let outcome = match node.task.take() {
            Some(t) => t.await,
            None => Ok(Ok(())),
        };
        bail!("{name} ended while starting: {outcome:?}");
    }
    Ok(node)
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// ---------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------

/// A node of the network, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sequencer(usize),
    Topology,
    Mediator,
    /// Index into [`SHARDS`]: the shard's first replica.
    Participant(usize),
    /// Index into [`LedgerNet::replicas`]: a further replica of a shard.
    Replica(usize),
}

/// A further replica of a shard: same database, key and node name as the shard's first
/// replica, its own replica name and ports.
pub struct ExtraReplica {
    pub shard: usize,
    pub config: ParticipantConfig,
    pub node: Option<Node>,
}

/// How a network is set up.
#[derive(Clone, Debug)]
pub struct NetOptions {
    pub sequencer_nodes: usize,
    /// The participants' `[replica]` timing (their names and admin token file are set by
    /// the harness).
    pub replica: ReplicaConfig,
    /// The participants' automatic pruning.
    pub pruning: ordo_participant::config::PruningConfig,
    /// The mediator's `verdict_retention` and `prune_interval` (its defaults: `None`).
    pub mediator_retention: Option<(Duration, Duration)>,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            sequencer_nodes: 1,
            replica: ReplicaConfig::default(),
            pruning: Default::default(),
            mediator_retention: None,
        }
    }
}

impl NetOptions {
    /// Short lease timing, so that a crashed active replica is replaced within ~1.5 s.
    pub fn fast_failover() -> Self {
        Self {
            replica: ReplicaConfig {
                ttl: Duration::from_millis(1500),
                renew_period: Duration::from_millis(300),
                safety_margin: Duration::from_millis(300),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub struct LedgerNet {
    pub label: String,
    pub sequencer_configs: Vec<SequencerConfig>,
    pub sequencers: Vec<Option<Node>>,
    pub topology_config: TopologyConfig,
    pub topology: Option<Node>,
    pub topology_member: MemberId,
    pub mediator_config: MediatorConfig,
    pub mediator: Option<Node>,
    pub participant_configs: Vec<ParticipantConfig>,
    pub participants: Vec<Option<Node>>,
    /// Further replicas of shards ([`Role::Replica`]).
    pub replicas: Vec<ExtraReplica>,
    /// Lazily connecting channels to each participant (their ports survive restarts).
    channels: Vec<Channel>,
    /// Every party allocated through the harness, with its shard index.
    pub parties: BTreeMap<String, usize>,
    commands: AtomicUsize,
    // Dropped after the nodes (fields drop in order): keys, then the databases.
    _dir: tempfile::TempDir,
    _pg: Arc<PgCluster>,
}

impl LedgerNet {
    /// One sequencer node, the topology manager, the mediator and two participants.
    pub async fn start(label: &str) -> Result<Self> {
        Self::start_with(label, 1).await
    }

    pub async fn start_with(label: &str, sequencer_nodes: usize) -> Result<Self> {
        Self::start_opts(
            label,
            NetOptions {
                sequencer_nodes,
                ..Default::default()
            },
        )
        .await
    }

    pub async fn start_opts(label: &str, options: NetOptions) -> Result<Self> {
        let sequencer_nodes = options.sequencer_nodes;
        ordo_testkit::init_tracing();
        let pg = shared_pg().await?;
        let n = NETWORKS.fetch_add(1, Ordering::SeqCst);
        let db = |what: &str| format!("{label}_{n}_{what}");
        let dir = tempfile::Builder::new()
            .prefix(&format!("ordo-ledger-{label}-"))
            .tempdir()?;

        // Sequencer nodes over one database.
        let seq_url = pg.create_database(&db("sequencer")).await?;
        let pki = pki();
        let required = ordo_node::tls::ClientAuth::Required;
        let mut sequencer_configs = Vec::new();
        for i in 0..sequencer_nodes {
            sequencer_configs.push(SequencerConfig {
                node_name: format!("seq-{i}"),
                database_url: seq_url.clone(),
                grpc_listen: loopback(),
                http_listen: loopback(),
                admin_token: SEQ_ADMIN.into(),
                pool_size: 6,
                tail_buffer_events: 1000,
                tls: Some(pki.node(&db(&format!("seq-{i}")), None, required)),
                ..Default::default()
            });
        }
        ordo_sequencer::init(&sequencer_configs[0]).await?;
        let mut sequencers = Vec::new();
        for cfg in &mut sequencer_configs {
            let node = start_sequencer(cfg.clone()).await?;
            cfg.grpc_listen = node.grpc;
            cfg.http_listen = node.http;
            sequencers.push(Some(node));
        }
        let endpoints: Vec<String> = sequencers.iter().flatten().map(Node::url).collect();

        // The topology manager, with a short participant response timeout.
        let mut topology_config = TopologyConfig {
            node_name: "topology".into(),
            database_url: pg.create_database(&db("topology")).await?,
            grpc_listen: loopback(),
            http_listen: loopback(),
            key_file: dir.path().join("topology.key"),
            sequencers: endpoints.clone(),
            sequencer_admin_token: SEQ_ADMIN.into(),
            admin_token: TOPOLOGY_ADMIN.into(),
            parameters: ParametersConfig {
                participant_response_timeout: RESPONSE_TIMEOUT,
                ..Default::default()
            },
            request_timeout: Duration::from_secs(10),
            acknowledge_interval: Duration::from_millis(500),
            tls: Some(pki.node(&db("topology"), Some("topology"), required)),
            ..Default::default()
        };
        let tm = ordo_topology::init(&topology_config).await?;
        let topology = start_topology(topology_config.clone()).await?;
        topology_config.grpc_listen = topology.grpc;
        topology_config.http_listen = topology.http;

        // The mediator, registered through the topology admin API.
        let mut mediator_config = MediatorConfig {
            node_name: "mediator".into(),
            database_url: pg.create_database(&db("mediator")).await?,
            grpc_listen: loopback(),
            http_listen: loopback(),
            key_file: dir.path().join("mediator.key"),
            sequencers: endpoints.clone(),
            topology_manager: Some(tm.member.clone()),
            time_proof_interval: Duration::from_millis(100),
            ack_interval: Duration::from_millis(500),
            tls: Some(pki.node(&db("mediator"), Some("mediator"), required)),
            ..Default::default()
        };
        if let Some((retention, interval)) = options.mediator_retention {
            mediator_config.verdict_retention = retention;
            mediator_config.prune_interval = interval;
        }
        let med = ordo_mediator::init(&mediator_config).await?;
        let mut tadmin = topology_admin(&topology.url()).await?;
        tadmin
            .register_mediator(with_token(
                admin::RegisterMediatorRequest {
                    name: med.member.name().to_owned(),
                    public_key: med.public_key.as_bytes().to_vec(),
                },
                TOPOLOGY_ADMIN,
            ))
            .await
            .context("RegisterMediator")?;
        let mediator = start_mediator(mediator_config.clone()).await?;
        mediator_config.grpc_listen = mediator.grpc;
        mediator_config.http_listen = mediator.http;

        // The participants, registered through the topology admin API.
        let replica_token_file = dir.path().join("replica-admin-token");
        ordo_testkit::write_secret(&replica_token_file, REPLICA_ADMIN)?;
        let mut participant_configs = Vec::new();
        let mut participants = Vec::new();
        let mut channels = Vec::new();
        for (i, shard) in SHARDS.iter().enumerate() {
            let mut cfg = ParticipantConfig {
                node_name: format!("participant-{}", i + 1),
                shard: (*shard).into(),
                database_url: pg.create_database(&db(&format!("shard{}", i + 1))).await?,
                grpc_listen: loopback(),
                http_listen: loopback(),
                key_file: dir.path().join(format!("participant-{}.key", i + 1)),
                sequencers: endpoints.clone(),
                topology_manager: tm.member.to_string(),
                topology_admin: vec![topology.url()],
                topology_admin_token: TOPOLOGY_ADMIN.into(),
                auth: AuthConfig {
                    algorithm: "HS256".into(),
                    secret: JWT_SECRET.into(),
                    ..Default::default()
                },
                mediator_reaction_timeout: Duration::from_secs(5),
                submit_and_wait_timeout: Duration::from_secs(30),
                acknowledge_interval: Duration::from_millis(500),
                pruning: options.pruning.clone(),
                pool_size: 6,
                replica: ReplicaConfig {
                    name: format!("participant-{}a", i + 1),
                    admin_token_file: Some(replica_token_file.clone()),
                    ..options.replica.clone()
                },
                // Applications may call the Ledger API with server-only TLS.
                tls: Some(pki.node(
                    &db(&format!("participant-{}", i + 1)),
                    Some(&format!("participant-{}", i + 1)),
                    ordo_node::tls::ClientAuth::Optional,
                )),
                ..Default::default()
            };
            let init = ordo_participant::init(&cfg).await?;
            tadmin
                .register_participant(with_token(
                    admin::RegisterParticipantRequest {
                        name: init.member.name().to_owned(),
                        public_key: init.public_key.as_bytes().to_vec(),
                        shard: (*shard).into(),
                    },
                    TOPOLOGY_ADMIN,
                ))
                .await
                .with_context(|| format!("RegisterParticipant {shard}"))?;
            let node = start_participant(cfg.clone(), SERVING).await?;
            cfg.grpc_listen = node.grpc;
            cfg.http_listen = node.http;
            channels.push(lazy_channel(&node.url())?);
            participant_configs.push(cfg);
            participants.push(Some(node));
        }

        let net = Self {
            label: label.to_owned(),
            sequencer_configs,
            sequencers,
            topology_config,
            topology: Some(topology),
            topology_member: tm.member,
            mediator_config,
            mediator: Some(mediator),
            participant_configs,
            participants,
            replicas: Vec::new(),
            channels,
            parties: BTreeMap::new(),
            commands: AtomicUsize::new(0),
            _dir: dir,
            _pg: pg,
        };
        net.wait_topology("both shards and the mediator", |t| {
            t.mediator().is_some() && SHARDS.iter().all(|s| t.shards.contains_key(*s))
        })
        .await?;
        Ok(net)
    }

    /// The network with `iou.toml` vetted and `parties` (name, shard index) allocated.
    pub async fn with_parties(label: &str, parties: &[(&str, usize)]) -> Result<Self> {
        Self::with_parties_opts(label, NetOptions::default(), parties).await
    }

    pub async fn with_parties_opts(
        label: &str,
        options: NetOptions,
        parties: &[(&str, usize)],
    ) -> Result<Self> {
        let mut net = Self::start_opts(label, options).await?;
        net.upload_iou().await?;
        for (party, shard) in parties {
            net.allocate(party, *shard).await?;
        }
        Ok(net)
    }

    // -- node control ------------------------------------------------------------------

    fn slot(&mut self, role: Role) -> &mut Option<Node> {
        match role {
            Role::Sequencer(i) => &mut self.sequencers[i],
            Role::Topology => &mut self.topology,
            Role::Mediator => &mut self.mediator,
            Role::Participant(i) => &mut self.participants[i],
            Role::Replica(i) => &mut self.replicas[i].node,
        }
    }

    /// Stops the node gracefully.
    pub async fn stop(&mut self, role: Role) -> Result<()> {
        let node = self
            .slot(role)
            .take()
            .with_context(|| format!("{role:?} is not running"))?;
        node.stop().await
    }

    /// Crashes the node (no drain).
    pub async fn crash(&mut self, role: Role) -> Result<()> {
        let node = self
            .slot(role)
            .take()
            .with_context(|| format!("{role:?} is not running"))?;
        node.crash().await
    }

    /// Starts the node again on its database, key and ports; answers once SERVING.
    pub async fn restart(&mut self, role: Role) -> Result<()> {
        if self.slot(role).is_some() {
            bail!("{role:?} is already running");
        }
        let node = match role {
            Role::Sequencer(i) => start_sequencer(self.sequencer_configs[i].clone()).await?,
            Role::Topology => start_topology(self.topology_config.clone()).await?,
            Role::Mediator => start_mediator(self.mediator_config.clone()).await?,
            Role::Participant(_) | Role::Replica(_) => {
                start_participant(self.replica_config(role).clone(), SERVING).await?
            }
        };
        *self.slot(role) = Some(node);
        Ok(())
    }

    // -- replicas of a shard -----------------------------------------------------------

    /// The configuration of a participant replica.
    pub fn replica_config(&self, role: Role) -> &ParticipantConfig {
        match role {
            Role::Participant(i) => &self.participant_configs[i],
            Role::Replica(i) => &self.replicas[i].config,
            other => panic!("{other:?} is not a participant replica"),
        }
    }

    /// Starts another replica of `shard` named `name` on the shard's database, key and node
    /// name; answers once it listens (it starts passive while another replica is active).
    pub async fn add_replica(&mut self, shard: usize, name: &str) -> Result<Role> {
        let mut config = self.participant_configs[shard].clone();
        config.replica.name = name.to_owned();
        config.grpc_listen = loopback();
        config.http_listen = loopback();
        let node = start_participant(config.clone(), Until::Listening).await?;
        config.grpc_listen = node.grpc;
        config.http_listen = node.http;
        self.replicas.push(ExtraReplica {
            shard,
            config,
            node: Some(node),
        });
        Ok(Role::Replica(self.replicas.len() - 1))
    }

    /// Starts a stopped participant replica again; answers once it listens (it may stay
    /// passive).
    pub async fn restart_passive(&mut self, role: Role) -> Result<()> {
        if self.slot(role).is_some() {
            bail!("{role:?} is already running");
        }
        let node = start_participant(self.replica_config(role).clone(), Until::Listening).await?;
        *self.slot(role) = Some(node);
        Ok(())
    }

    /// The gRPC endpoint of a participant replica (whether running or not).
    pub fn replica_url(&self, role: Role) -> String {
        format!("https://{}", self.replica_config(role).grpc_listen)
    }

    /// Whether a participant replica reports its Ledger API SERVING.
    pub async fn is_serving(&self, role: Role) -> bool {
        ordo_node::serving(&self.replica_url(role), ordo_participant::HEALTH_SERVICE).await
    }

    /// Waits until the participant replica serves.
    pub async fn wait_serving(&self, role: Role) -> Result<()> {
        wait_for(&format!("{role:?} to serve"), PATIENCE, || async {
            self.is_serving(role).await.then_some(())
        })
        .await
    }

    /// Sends the harness's Ledger API calls for `shard` to the replica `role`.
    pub fn point_at(&mut self, shard: usize, role: Role) -> Result<()> {
        self.channels[shard] = lazy_channel(&self.replica_url(role))?;
        Ok(())
    }

    /// `POST /admin/step-down` on a participant replica's HTTP port, with the replicas'
    /// admin token.
    pub async fn step_down(&self, role: Role) -> Result<Answer> {
        self.step_down_with(role, REPLICA_ADMIN).await
    }

    /// `POST /admin/step-down` on a participant replica's HTTP port, with `token`.
    pub async fn step_down_with(&self, role: Role, token: &str) -> Result<Answer> {
        let http = self.replica_config(role).http_listen;
        let url = format!("https://{http}/admin/step-down");
        let timeout = http_client::DEFAULT_TIMEOUT;
        Ok(http_client::request(Method::POST, &url, Some(token), timeout).await?)
    }

    /// A participant replica's `GET /status`.
    pub async fn replica_status(&self, role: Role) -> Result<ordo_lease::ReplicaStatus> {
        let http = self.replica_config(role).http_listen;
        let body = http_client::get_ok(&format!("https://{http}/status"))
            .await
            .with_context(|| format!("the status of {role:?}"))?;
        Ok(serde_json::from_str(&body)?)
    }

    // -- clients -----------------------------------------------------------------------

    pub fn channel(&self, shard: usize) -> Channel {
        self.channels[shard].clone()
    }

    pub fn shard_of(&self, party: &str) -> usize {
        self.parties
            .get(party)
            .copied()
            .unwrap_or_else(|| panic!("party {party} was not allocated through the harness"))
    }

    pub fn commands(
        &self,
        shard: usize,
    ) -> pb::command_service_client::CommandServiceClient<Channel> {
        pb::command_service_client::CommandServiceClient::new(self.channel(shard))
    }

    pub fn submission(
        &self,
        shard: usize,
    ) -> pb::command_submission_service_client::CommandSubmissionServiceClient<Channel> {
        pb::command_submission_service_client::CommandSubmissionServiceClient::new(
            self.channel(shard),
        )
    }

    pub fn state(&self, shard: usize) -> pb::state_service_client::StateServiceClient<Channel> {
        pb::state_service_client::StateServiceClient::new(self.channel(shard))
    }

    pub fn updates_client(
        &self,
        shard: usize,
    ) -> pb::update_service_client::UpdateServiceClient<Channel> {
        pb::update_service_client::UpdateServiceClient::new(self.channel(shard))
    }

    pub fn packages(
        &self,
        shard: usize,
    ) -> pb::package_service_client::PackageServiceClient<Channel> {
        pb::package_service_client::PackageServiceClient::new(self.channel(shard))
    }

    pub fn party_management(
        &self,
        shard: usize,
    ) -> pb::party_management_service_client::PartyManagementServiceClient<Channel> {
        pb::party_management_service_client::PartyManagementServiceClient::new(self.channel(shard))
    }

    pub fn completions(
        &self,
        shard: usize,
    ) -> pb::command_completion_service_client::CommandCompletionServiceClient<Channel> {
        pb::command_completion_service_client::CommandCompletionServiceClient::new(
            self.channel(shard),
        )
    }

    // -- setup -------------------------------------------------------------------------

    /// Waits until the topology manager's topology satisfies `check`. (Participants are
    /// checked through what they expose: their parties and packages.)
    async fn wait_topology(
        &self,
        what: &str,
        check: impl Fn(&ordo_protocol::TopologyState) -> bool,
    ) -> Result<()> {
        let tadmin = topology_admin(&self.topology_config_url()).await?;
        wait_for(what, PATIENCE, || {
            let mut tadmin = tadmin.clone();
            let check = &check;
            async move {
                let r = tadmin
                    .get_topology(with_token(admin::GetTopologyRequest {}, TOPOLOGY_ADMIN))
                    .await
                    .ok()?
                    .into_inner();
                let state: ordo_protocol::TopologyState =
                    serde_json::from_str(&r.state_json).ok()?;
                check(&state).then_some(())
            }
        })
        .await
    }

    fn topology_config_url(&self) -> String {
        format!("https://{}", self.topology_config.grpc_listen)
    }

    pub async fn topology_admin(&self) -> Result<TopologyAdminServiceClient<Channel>> {
        topology_admin(&self.topology_config_url()).await
    }

    /// Uploads `iou.toml` on shard-1 and waits until every participant has it vetted.
    pub async fn upload_iou(&self) -> Result<String> {
        self.upload(IOU).await
    }

    /// Uploads a package file through shard-1 and waits until every shard vetted it.
    pub async fn upload(&self, package: &str) -> Result<String> {
        let id = self
            .packages(0)
            .upload_package(with_token(
                pb::UploadPackageRequest {
                    package: package.as_bytes().to_vec(),
                },
                &admin_token(),
            ))
            .await
            .context("UploadPackage")?
            .into_inner()
            .package_id;
        for (shard, name) in SHARDS.iter().enumerate() {
            let id = id.clone();
            wait_for(&format!("package {id} vetted on {name}"), PATIENCE, || {
                let mut packages = self.packages(shard);
                let id = id.clone();
                async move {
                    let list = packages
                        .list_packages(with_token(pb::ListPackagesRequest {}, &admin_token()))
                        .await
                        .ok()?
                        .into_inner();
                    list.packages
                        .iter()
                        .any(|p| p.package_id == id)
                        .then_some(())
                }
            })
            .await?;
        }
        Ok(id)
    }

    /// Allocates `party` on shard `shard` through that participant's Ledger API and waits
    /// until every participant knows it.
    pub async fn allocate(&mut self, party: &str, shard: usize) -> Result<()> {
        let details = self
            .party_management(shard)
            .allocate_party(with_token(
                pb::AllocatePartyRequest {
                    party_id_hint: party.into(),
                },
                &admin_token(),
            ))
            .await
            .with_context(|| format!("AllocateParty {party} on {}", SHARDS[shard]))?
            .into_inner()
            .party_details
            .context("no party details")?;
        assert_eq!(details.party, party);
        assert_eq!(details.shard, SHARDS[shard]);
        assert!(details.is_local);
        for (other, other_name) in SHARDS.iter().enumerate() {
            wait_for(
                &format!("party {party} known on {other_name}"),
                PATIENCE,
                || {
                    let mut pm = self.party_management(other);
                    async move {
                        let list = pm
                            .list_known_parties(with_token(
                                pb::ListKnownPartiesRequest {},
                                &admin_token(),
                            ))
                            .await
                            .ok()?
                            .into_inner();
                        list.party_details
                            .iter()
                            .any(|p| p.party == party && p.shard == SHARDS[shard])
                            .then_some(())
                    }
                },
            )
            .await?;
        }
        self.parties.insert(party.to_owned(), shard);
        Ok(())
    }

    // -- commands ----------------------------------------------------------------------

    /// A fresh command id.
    pub fn command_id(&self, what: &str) -> String {
        format!(
            "{}-{what}-{}",
            self.label,
            self.commands.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// `Commands` acting as `party`, with a fresh command id.
    pub fn commands_for(&self, party: &str, command: pb::command::Command) -> pb::Commands {
        pb::Commands {
            application_id: APP.into(),
            command_id: self.command_id(party),
            act_as: vec![party.into()],
            command: Some(pb::Command {
                command: Some(command),
            }),
            ..Default::default()
        }
    }

    /// Submits `commands` on `shard` with `token` and waits for the transaction.
    pub async fn submit_raw(
        &self,
        shard: usize,
        token: &str,
        commands: pb::Commands,
    ) -> Result<pb::Transaction, tonic::Status> {
        let response = self
            .commands(shard)
            .submit_and_wait_for_transaction(with_token(
                pb::SubmitAndWaitRequest {
                    commands: Some(commands),
                },
                token,
            ))
            .await?
            .into_inner();
        response
            .transaction
            .ok_or_else(|| tonic::Status::internal("no transaction in the response"))
    }

    /// Submits `command` as `party` on its shard (token: actAs party) and waits.
    pub async fn submit(
        &self,
        party: &str,
        command: pb::command::Command,
    ) -> Result<pb::Transaction, tonic::Status> {
        let commands = self.commands_for(party, command);
        self.submit_raw(self.shard_of(party), &token(&[party]), commands)
            .await
    }

    /// `issuer` creates an Iou for `owner`; returns its contract id.
    pub async fn issue(
        &self,
        issuer: &str,
        owner: &str,
        currency: &str,
        amount: &str,
    ) -> Result<String> {
        let tx = self
            .submit(issuer, create_iou(issuer, owner, currency, amount))
            .await
            .map_err(|s| anyhow!("{issuer} issuing an Iou to {owner}: {s:?}"))?;
        created(&tx)
            .into_iter()
            .next()
            .map(|c| c.contract_id.clone())
            .context("the issuing transaction created nothing")
    }

    /// `owner` transfers Iou `cid` to `new_owner`; returns the transaction.
    pub async fn transfer(
        &self,
        owner: &str,
        cid: &str,
        new_owner: &str,
    ) -> Result<pb::Transaction, tonic::Status> {
        self.submit(
            owner,
            exercise(
                "iou:Iou",
                cid,
                "Transfer",
                serde_json::json!({ "newOwner": new_owner }),
            ),
        )
        .await
    }

    // -- reads -------------------------------------------------------------------------

    /// `party`'s active contracts on its shard (of every template).
    pub async fn acs(&self, party: &str) -> Result<Vec<Contract>> {
        self.acs_on(self.shard_of(party), party).await
    }

    pub async fn acs_on(&self, shard: usize, party: &str) -> Result<Vec<Contract>> {
        let mut stream = self
            .state(shard)
            .get_active_contracts(with_token(
                pb::GetActiveContractsRequest {
                    filter: Some(pb::TransactionFilter {
                        parties: vec![party.into()],
                        template_ids: vec![],
                    }),
                },
                &reader_token(&[party]),
            ))
            .await
            .with_context(|| format!("GetActiveContracts of {party}"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(page) = stream.message().await? {
            for c in page.active_contracts {
                out.push(Contract::from_event(&c)?);
            }
        }
        Ok(out)
    }

    /// The Ious `party` sees as active.
    pub async fn ious(&self, party: &str) -> Result<Vec<Contract>> {
        Ok(self
            .acs(party)
            .await?
            .into_iter()
            .filter(|c| c.template_id == "iou:Iou")
            .collect())
    }

    pub async fn ledger_end(&self, shard: usize) -> Result<i64> {
        Ok(self
            .state(shard)
            .get_ledger_end(with_token(pb::GetLedgerEndRequest {}, &admin_token()))
            .await
            .with_context(|| format!("GetLedgerEnd on {}", SHARDS[shard]))?
            .into_inner()
            .offset)
    }

    pub async fn ledger_ends(&self) -> Result<Vec<i64>> {
        let mut ends = Vec::new();
        for shard in 0..SHARDS.len() {
            ends.push(self.ledger_end(shard).await?);
        }
        Ok(ends)
    }

    /// Waits until the shards' ledger ends are `expected`. SubmitAndWait answers once the
    /// submitting shard committed; the other shards commit on the same verdict, a moment
    /// later.
    pub async fn wait_ledger_ends(&self, expected: &[i64]) -> Result<()> {
        let result = wait_for(&format!("ledger ends {expected:?}"), PATIENCE, || async {
            (self.ledger_ends().await.ok()? == expected).then_some(())
        })
        .await;
        if result.is_err() {
            bail!(
                "ledger ends are {:?}, expected {expected:?}",
                self.ledger_ends().await?
            );
        }
        Ok(())
    }

    /// The updates `parties` see on `shard` after `from` up to `end`, in `shape`, read
    /// with a token reading as them.
    pub async fn update_stream(
        &self,
        shard: usize,
        parties: &[&str],
        from: i64,
        end: i64,
        shape: pb::UpdateShape,
    ) -> Result<tonic::Streaming<pb::GetUpdatesResponse>, tonic::Status> {
        Ok(self
            .updates_client(shard)
            .get_updates(with_token(
                pb::GetUpdatesRequest {
                    begin_exclusive: from,
                    end_inclusive: end,
                    filter: Some(pb::TransactionFilter {
                        parties: parties.iter().map(|p| (*p).to_owned()).collect(),
                        template_ids: vec![],
                    }),
                    shape: shape as i32,
                },
                &reader_token(parties),
            ))
            .await?
            .into_inner())
    }

    /// Every flat transaction `parties` see on `shard`, from the beginning to the current
    /// ledger end.
    pub async fn updates_on(&self, shard: usize, parties: &[&str]) -> Result<Vec<pb::Transaction>> {
        let end = self.ledger_end(shard).await?;
        if end == 0 {
            return Ok(Vec::new());
        }
        let mut stream = self
            .update_stream(shard, parties, 0, end, pb::UpdateShape::Flat)
            .await
            .with_context(|| format!("GetUpdates of {parties:?}"))?;
        let mut out = Vec::new();
        while let Some(u) = stream.message().await? {
            match u.update {
                Some(pb::get_updates_response::Update::Transaction(t)) => out.push(t),
                other => bail!("expected a flat transaction, got {other:?}"),
            }
        }
        Ok(out)
    }

    /// `party`'s flat transactions on its shard.
    pub async fn updates(&self, party: &str) -> Result<Vec<pb::Transaction>> {
        self.updates_on(self.shard_of(party), &[party]).await
    }

    /// Checks every shard's update log: offsets 1..=end without gaps, each update id once.
    pub async fn assert_logs_gapless(&self, expected_ends: &[i64]) -> Result<()> {
        assert_eq!(self.ledger_ends().await?, expected_ends, "ledger ends");
        for (shard, end) in expected_ends.iter().enumerate() {
            let parties = self.parties_on(shard);
            let updates = self.updates_on(shard, &parties).await?;
            let offsets: Vec<i64> = updates.iter().map(|t| t.offset).collect();
            assert_eq!(
                offsets,
                (1..=*end).collect::<Vec<_>>(),
                "{}: offsets are gapless",
                SHARDS[shard]
            );
            let ids: std::collections::BTreeSet<&str> =
                updates.iter().map(|t| t.update_id.as_str()).collect();
            assert_eq!(
                ids.len(),
                updates.len(),
                "{}: each update once",
                SHARDS[shard]
            );
        }
        Ok(())
    }

    /// The parties the harness allocated on `shard`.
    pub fn parties_on(&self, shard: usize) -> Vec<&str> {
        self.parties
            .iter()
            .filter(|(_, s)| **s == shard)
            .map(|(p, _)| p.as_str())
            .collect()
    }
}

async fn start_sequencer(cfg: SequencerConfig) -> Result<Node> {
    let name = cfg.node_name.clone();
    let bind_cfg = cfg.clone();
    launch(
        &name,
        Until::Serving(ordo_sequencer::HEALTH_SERVICE),
        move || {
            let cfg = bind_cfg.clone();
            async move {
                let l = ordo_sequencer::Listeners::bind(&cfg).await?;
                let (g, h) = (l.grpc.local_addr()?, l.http.local_addr()?);
                Ok((l, g, h))
            }
        },
        move |l, shutdown| ordo_sequencer::run(cfg, l, shutdown),
    )
    .await
}

async fn start_topology(cfg: TopologyConfig) -> Result<Node> {
    let bind_cfg = cfg.clone();
    launch(
        "topology",
        Until::Serving(ordo_topology::HEALTH_SERVICE),
        move || {
            let cfg = bind_cfg.clone();
            async move {
                let l = ordo_topology::Listeners::bind(&cfg).await?;
                let (g, h) = (l.grpc.local_addr()?, l.http.local_addr()?);
                Ok((l, g, h))
            }
        },
        move |l, shutdown| ordo_topology::run(cfg, l, shutdown),
    )
    .await
}

async fn start_mediator(cfg: MediatorConfig) -> Result<Node> {
    let bind_cfg = cfg.clone();
    launch(
        "mediator",
        Until::Serving(ordo_mediator::HEALTH_SERVICE),
        move || {
            let cfg = bind_cfg.clone();
            async move {
                let l = ordo_mediator::Listeners::bind(&cfg).await?;
                let (g, h) = (l.grpc.local_addr()?, l.http.local_addr()?);
                Ok((l, g, h))
            }
        },
        move |l, shutdown| ordo_mediator::run(cfg, l, shutdown),
    )
    .await
}

const SERVING: Until = Until::Serving(ordo_participant::HEALTH_SERVICE);

async fn start_participant(cfg: ParticipantConfig, until: Until) -> Result<Node> {
    let name = cfg.replica.name_or(&cfg.node_name).to_owned();
    let bind_cfg = cfg.clone();
    launch(
        &name,
        until,
        move || {
            let cfg = bind_cfg.clone();
            async move {
                let l = ordo_participant::Listeners::bind(&cfg).await?;
                let (g, h) = (l.grpc.local_addr()?, l.http.local_addr()?);
                Ok((l, g, h))
            }
        },
        move |l, shutdown| ordo_participant::run(cfg, l, shutdown),
    )
    .await
}

async fn topology_admin(url: &str) -> Result<TopologyAdminServiceClient<Channel>> {
    let tls = ordo_node::tls::trusted();
    let channel = ordo_node::tls::channel(url, tls.as_ref(), |e| e).await?;
    Ok(TopologyAdminServiceClient::new(channel))
}

// ---------------------------------------------------------------------------------------
// Tokens, commands, contracts
// ---------------------------------------------------------------------------------------

pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

fn mint(act_as: &[&str], read_as: &[&str], admin: bool) -> String {
    mint_hs256(
        JWT_SECRET,
        &LedgerClaims {
            act_as: act_as.iter().map(|s| (*s).to_owned()).collect(),
            read_as: read_as.iter().map(|s| (*s).to_owned()).collect(),
            admin,
            ..Default::default()
        },
        ordo_participant::auth::expiry_in(Duration::from_secs(3600)),
    )
}

/// A token acting as `parties`.
pub fn token(parties: &[&str]) -> String {
    mint(parties, &[], false)
}

/// A token reading as `parties`.
pub fn reader_token(parties: &[&str]) -> String {
    mint(&[], parties, false)
}

pub fn admin_token() -> String {
    mint(&[], &[], true)
}

pub fn create(template: &str, arguments: Value) -> pb::command::Command {
    pb::command::Command::Create(pb::CreateCommand {
        template_id: template.into(),
        create_arguments_json: arguments.to_string(),
    })
}

pub fn exercise(template: &str, cid: &str, choice: &str, argument: Value) -> pb::command::Command {
    pb::command::Command::Exercise(pb::ExerciseCommand {
        template_id: template.into(),
        contract_id: cid.into(),
        choice: choice.into(),
        choice_argument_json: argument.to_string(),
    })
}

pub fn create_iou(issuer: &str, owner: &str, currency: &str, amount: &str) -> pb::command::Command {
    create(
        "iou:Iou",
        serde_json::json!({
            "issuer": issuer, "owner": owner, "currency": currency, "amount": amount
        }),
    )
}

/// An active contract as a test looks at it.
#[derive(Clone, Debug, PartialEq)]
pub struct Contract {
    pub contract_id: String,
    pub template_id: String,
    pub payload: Value,
    pub signatories: Vec<String>,
    pub observers: Vec<String>,
}

impl Contract {
    pub fn from_event(c: &pb::CreatedEvent) -> Result<Self> {
        Ok(Self {
            contract_id: c.contract_id.clone(),
            template_id: c.template_id.clone(),
            payload: serde_json::from_str(&c.create_arguments_json)
                .with_context(|| format!("payload of {}", c.contract_id))?,
            signatories: c.signatories.clone(),
            observers: c.observers.clone(),
        })
    }

    pub fn field(&self, name: &str) -> &str {
        self.payload[name].as_str().unwrap_or_default()
    }
}

/// The created events of a flat transaction.
pub fn created(tx: &pb::Transaction) -> Vec<&pb::CreatedEvent> {
    tx.events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::event::Event::Created(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The archived contract ids of a flat transaction.
pub fn archived(tx: &pb::Transaction) -> Vec<&str> {
    tx.events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::event::Event::Archived(a)) => Some(a.contract_id.as_str()),
            _ => None,
        })
        .collect()
}

/// The transaction with `update_id` among `txs`.
pub fn find_tx<'a>(txs: &'a [pb::Transaction], update_id: &str) -> Option<&'a pb::Transaction> {
    txs.iter().find(|t| t.update_id == update_id)
}

/// Asserts a gRPC failure's code and that its message names every one of `names`.
#[track_caller]
pub fn assert_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: tonic::Code,
    names: &[&str],
) -> tonic::Status {
    let status = match result {
        Ok(v) => panic!("expected {code:?}, got success: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{status:?}");
    for name in names {
        assert!(
            status.message().contains(name),
            "the message should name {name:?}: {status:?}"
        );
    }
    status
}
