use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ordo_core::{KeyPair, MemberId, Timestamp};
use ordo_lease::{ReplicaConfig, ReplicaStatus};
use ordo_node::http_client::StatusCode;
use ordo_proto::admin::v1 as pb;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_protocol::{Message, SignedMessage, TopologyState, TopologyTransaction};
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{PgCluster, PgOptions};
use ordo_topology::{TopologyConfig, TopologyError};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const SEQ_ADMIN: &str = "sequencer-admin-secret";
pub const ADMIN: &str = "topology-admin-secret";

/// A node running in-process, stopped through a oneshot.
pub struct Running<E> {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), E>>>,
}

impl<E: std::fmt::Debug> Running<E> {
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Stops the node and returns what `run` returned.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        Ok(())
    }
}

/// Postgres, one sequencer database with `sequencers` nodes, and a topology database.
pub struct Net {
    pub _pg: PgCluster,
    pub sequencers: Vec<Running<ordo_sequencer::SequencerError>>,
    pub topology_url: String,
    pub dir: tempfile::TempDir,
}

impl Net {
    pub async fn start(sequencers: usize) -> Result<Self> {
        ordo_testkit::init_tracing();
        let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
        let seq_url = pg.create_database("sequencer").await?;
        let topology_url = pg.create_database("topology").await?;
        ordo_sequencer::init(&seq_config(&seq_url, "init")).await?;
        let mut nodes = Vec::new();
        for i in 0..sequencers {
            nodes.push(start_sequencer(seq_config(&seq_url, &format!("seq-{i}"))).await?);
        }
        Ok(Self {
            _pg: pg,
            sequencers: nodes,
            topology_url,
            dir: tempfile::tempdir()?,
        })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.sequencers.iter().map(Running::url).collect()
    }

    pub fn topology_config(&self) -> TopologyConfig {
        TopologyConfig {
            node_name: "topology".into(),
            database_url: self.topology_url.clone(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            key_file: self.dir.path().join("topology.key"),
            sequencers: self.endpoints(),
            sequencer_admin_token: SEQ_ADMIN.into(),
            admin_token: ADMIN.into(),
            request_timeout: Duration::from_secs(10),
            acknowledge_interval: Duration::from_millis(200),
            ..Default::default()
        }
    }

    pub async fn sequencer_admin(&self) -> Result<AdminClient> {
        Ok(AdminClient::connect(self.sequencers[0].url(), SEQ_ADMIN).await?)
    }

    pub async fn topology_db(&self) -> Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.topology_url).await?)
    }
}

pub fn seq_config(url: &str, name: &str) -> ordo_sequencer::SequencerConfig {
    ordo_sequencer::SequencerConfig {
        node_name: name.into(),
        database_url: url.into(),
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: SEQ_ADMIN.into(),
        pool_size: 6,
        tail_buffer_events: 1000,
        ..Default::default()
    }
}

pub async fn start_sequencer(
    cfg: ordo_sequencer::SequencerConfig,
) -> Result<Running<ordo_sequencer::SequencerError>> {
    let listeners = ordo_sequencer::Listeners::bind(&cfg).await?;
    let grpc = listeners.grpc.local_addr()?;
    let http = listeners.http.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(ordo_sequencer::run(cfg, listeners, async move {
        let _ = rx.await;
    }));
    let node = Running {
        grpc,
        http,
        stop: Some(tx),
        task: Some(task),
    };
    wait_serving(grpc, ordo_sequencer::HEALTH_SERVICE).await?;
    Ok(node)
}

/// Starts the manager (after `init`) and waits until it reports SERVING.
pub async fn start_topology(cfg: TopologyConfig) -> Result<Running<TopologyError>> {
    ordo_topology::init(&cfg).await?;
    let listeners = ordo_topology::Listeners::bind(&cfg).await?;
    let grpc = listeners.grpc.local_addr()?;
    let http = listeners.http.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(ordo_topology::run(cfg, listeners, async move {
        let _ = rx.await;
    }));
    let node = Running {
        grpc,
        http,
        stop: Some(tx),
        task: Some(task),
    };
    wait_serving(grpc, ordo_topology::HEALTH_SERVICE).await?;
    Ok(node)
}

pub async fn wait_serving(addr: SocketAddr, service: &str) -> Result<()> {
    let endpoint = format!("http://{addr}");
    ordo_testkit::wait_for(
        &format!("{service} SERVING"),
        Duration::from_secs(30),
        || async { ordo_node::serving(&endpoint, service).await.then_some(()) },
    )
    .await
}

pub async fn admin(node: &Running<TopologyError>) -> Result<TopologyAdminServiceClient<Channel>> {
    let ch = Channel::from_shared(node.url())?.connect().await?;
    Ok(TopologyAdminServiceClient::new(ch))
}

pub fn authed<T>(msg: T) -> tonic::Request<T> {
    with_token(msg, ADMIN)
}

pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

pub async fn topology(
    c: &mut TopologyAdminServiceClient<Channel>,
) -> Result<(TopologyState, pb::GetTopologyResponse)> {
    let r = c
        .get_topology(authed(pb::GetTopologyRequest {}))
        .await?
        .into_inner();
    let state: TopologyState = serde_json::from_str(&r.state_json)?;
    assert_eq!(state.serial, r.serial);
    assert_eq!(state.timestamp.micros(), r.timestamp);
    Ok((state, r))
}

pub async fn register_participant(
    c: &mut TopologyAdminServiceClient<Channel>,
    name: &str,
    key: &KeyPair,
    shard: &str,
) -> Result<pb::RegisterParticipantResponse, tonic::Status> {
    c.register_participant(authed(pb::RegisterParticipantRequest {
        name: name.into(),
        public_key: key.public().as_bytes().to_vec(),
        shard: shard.into(),
    }))
    .await
    .map(|r| r.into_inner())
}

pub async fn allocate(
    c: &mut TopologyAdminServiceClient<Channel>,
    party: &str,
    shard: &str,
) -> Result<pb::AllocatePartyResponse, tonic::Status> {
    c.allocate_party(authed(pb::AllocatePartyRequest {
        party: party.into(),
        shard: shard.into(),
    }))
    .await
    .map(|r| r.into_inner())
}

/// A member's own view of topology, folded from its subscription the way every member
/// does it: only transactions signed by the manager (its key taken from its own AddMember,
/// serial 1), signature verified, in order.
pub struct Follower {
    /// Keeps the connection's background tasks alive.
    _client: SequencerClient,
    subscription: ordo_sequencer_client::Subscription,
    pub manager: MemberId,
    pub state: TopologyState,
    /// Every topology transaction seen: (serial, sequencing timestamp).
    pub seen: Vec<(u64, Timestamp)>,
    /// Topology transactions the fold refused: (serial, reason).
    pub refused: Vec<(u64, String)>,
}

impl Follower {
    pub async fn connect(
        endpoints: Vec<String>,
        name: &str,
        key: Arc<KeyPair>,
        manager: MemberId,
    ) -> Result<Self> {
        let member = MemberId::new(name, &key.public())?;
        let client = SequencerClient::connect(ClientConfig::new(endpoints, member, key)).await?;
        let subscription = client.subscribe(Timestamp::MIN);
        Ok(Self {
            _client: client,
            subscription,
            manager,
            state: TopologyState::default(),
            seen: Vec::new(),
            refused: Vec::new(),
        })
    }

    /// Folds events until the state reaches `serial`.
    pub async fn follow_until(&mut self, serial: u64) -> Result<()> {
        while self.state.serial < serial {
            let event = tokio::time::timeout(Duration::from_secs(20), self.subscription.next())
                .await
                .with_context(|| format!("no event while at serial {}", self.state.serial))??;
            for envelope in &event.envelopes {
                let msg = SignedMessage::decode(&envelope.content)?;
                let Message::Topology(tx) = &msg.message else {
                    continue;
                };
                if msg.signer != self.manager {
                    bail!(
                        "topology transaction signed by {}, not the manager",
                        msg.signer
                    );
                }
                self.fold(&msg, tx, event.timestamp)?;
            }
        }
        Ok(())
    }

    fn fold(&mut self, msg: &SignedMessage, tx: &TopologyTransaction, at: Timestamp) -> Result<()> {
        let mut next = self.state.clone();
        if let Err(e) = next.apply(tx, at) {
            // Every member skips a transaction the fold refuses.
            self.refused.push((tx.serial, e.to_string()));
            return Ok(());
        }
        // Serial 1 introduces the manager's key; later ones are checked against it.
        let key = if self.state.serial == 0 {
            next.key_of(&self.manager)
                .context("serial 1 must add the manager itself")?
        } else {
            self.state
                .key_of(&self.manager)
                .context("manager unknown")?
        };
        msg.verify(&key)?;
        self.state = next;
        self.seen.push((tx.serial, at));
        Ok(())
    }
}

/// Row count and pending count of topology_transactions.
pub async fn db_counts(pool: &sqlx::PgPool) -> Result<(i64, i64)> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM topology_transactions")
        .fetch_one(pool)
        .await?;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM topology_transactions WHERE sequenced_at IS NULL")
            .fetch_one(pool)
            .await?;
    Ok((total, pending))
}

/// Lease timing of the replicas in the failover tests: a crashed active is replaced within
/// about two seconds.
pub fn short_lease(name: &str, admin_token_file: Option<std::path::PathBuf>) -> ReplicaConfig {
    ReplicaConfig {
        name: name.into(),
        ttl: Duration::from_millis(1500),
        renew_period: Duration::from_millis(300),
        safety_margin: Duration::from_millis(300),
        admin_token_file,
    }
}

/// A manager replica running in its own tokio runtime, so that a test can crash it:
/// shutting the runtime down drops every task at once — the lease runtime's too, so the
/// lease is not released and the others must wait for it to expire.
pub struct ReplicaNode {
    pub name: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), TopologyError>>>,
}

impl ReplicaNode {
    /// Starts a replica named `name` of the manager `cfg` describes (after `init`); it may
    /// be active or passive.
    pub async fn start(
        cfg: &TopologyConfig,
        name: &str,
        admin_token_file: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let cfg = TopologyConfig {
            replica: short_lease(name, admin_token_file),
            ..cfg.clone()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        let bind = cfg.clone();
        let listeners = runtime
            .spawn(async move { ordo_topology::Listeners::bind(&bind).await })
            .await??;
        let grpc = listeners.grpc.local_addr()?;
        let http = listeners.http.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = runtime.spawn(ordo_topology::run(cfg, listeners, async move {
            let _ = rx.await;
        }));
        let node = Self {
            name: name.into(),
            grpc,
            http,
            runtime: Some(runtime),
            stop: Some(tx),
            task: Some(task),
        };
        ordo_testkit::wait_for("the replica's /status", Duration::from_secs(20), || async {
            node.status().await.ok()
        })
        .await?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn serving(&self) -> bool {
        ordo_node::serving(&self.url(), ordo_topology::HEALTH_SERVICE).await
    }

    pub async fn admin(&self) -> Result<TopologyAdminServiceClient<Channel>> {
        let ch = Channel::from_shared(self.url())?.connect().await?;
        Ok(TopologyAdminServiceClient::new(ch))
    }

    pub async fn status(&self) -> Result<ReplicaStatus> {
        ordo_lease::client::status(&format!("http://{}", self.http))
            .await
            .with_context(|| format!("the status of {}", self.name))
    }

    /// `POST /admin/step-down` with `token`.
    pub async fn step_down(&self, token: &str) -> Result<(StatusCode, String)> {
        Ok(ordo_lease::client::step_down(&format!("http://{}", self.http), token).await?)
    }

    /// Kills the replica without any goodbye.
    pub fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        Ok(())
    }
}

impl Drop for ReplicaNode {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Waits until exactly one of `replicas` is SERVING; returns its index.
pub async fn one_serving(replicas: &[&ReplicaNode]) -> Result<usize> {
    ordo_testkit::wait_for(
        "exactly one serving replica",
        Duration::from_secs(30),
        || async {
            let mut serving = Vec::new();
            for (i, r) in replicas.iter().enumerate() {
                if r.serving().await {
                    serving.push(i);
                }
            }
            (serving.len() == 1).then(|| serving[0])
        },
    )
    .await
}
