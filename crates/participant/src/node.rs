//! Provisioning (`init`) and the operational node (`run`).

use std::future::Future;
use std::sync::Arc;

use ordo_core::{KeyPair, MemberId, PublicKey, Timestamp};
use ordo_ledger::PackageStore;
pub use ordo_node::Listeners;
use ordo_node::Servers;
use ordo_protocol::TopologyState;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use parking_lot::RwLock;
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::auth::Authenticator;
use crate::config::ParticipantConfig;
use crate::error::ParticipantError;
use crate::store;

/// The health service name (besides "" for the whole server): the command service.
pub const HEALTH_SERVICE: &str = ordo_proto::ledger::v1::command_service_server::SERVICE_NAME;

/// What `init` did, and who the participant is (the lead's `ordo up` registers it with
/// the topology manager: `RegisterParticipant{name, public_key, shard}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    pub member: MemberId,
    pub public_key: PublicKey,
    /// True when this call provisioned the database; false when it already was.
    pub created: bool,
}

/// Creates the key file when missing, runs the migrations and records the member.
/// Idempotent; replicas initialising at once are serialised by an advisory lock.
pub async fn init(config: &ParticipantConfig) -> Result<InitOutcome, ParticipantError> {
    config.validate_for_init()?;
    let (key, _) = ordo_node::key::load_or_create(config.key_file.clone()).await?;
    let member = MemberId::new(&config.node_name, &key.public())?;
    let created = store::init(config, &member, &key.public()).await?;
    tracing::info!(%member, created, db = %ordo_node::db::redact_url(&config.database_url), "participant provisioned");
    Ok(InitOutcome {
        member,
        public_key: key.public(),
        created,
    })
}

/// Topology as of the last processed event, with the package store built from its vetted
/// packages. A cache of what the database holds, replaced after every commit that
/// changed it.
pub struct Snapshot {
    pub topology: TopologyState,
    pub packages: Arc<PackageStore>,
    /// The last processed sequencing timestamp.
    pub cursor: Timestamp,
}

/// What the node's tasks and services share.
pub struct Shared {
    pub config: ParticipantConfig,
    pub pool: PgPool,
    pub member: MemberId,
    pub key: Arc<KeyPair>,
    pub topology_manager: MemberId,
    pub auth: Authenticator,
    pub sequencer: SequencerClient,
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// Wakes waiters whenever the processor committed an event (value: its timestamp).
    pub processed: watch::Sender<Timestamp>,
    /// The ledger end (last update offset).
    pub ledger_end: watch::Sender<i64>,
    /// The last completion offset.
    pub completion_end: watch::Sender<i64>,
    pub outbox_wake: Notify,
}

impl Shared {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }
}

/// Runs the node until `shutdown` resolves; then reports NOT_SERVING, stops accepting,
/// drains and returns. Refuses to run on a database `init` never provisioned.
pub async fn run(
    config: ParticipantConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ParticipantError> {
    config.validate()?;
    let key = Arc::new(KeyPair::read_file(&config.key_file)?);
    let member = MemberId::new(&config.node_name, &key.public())?;
    let topology_manager: MemberId = config.topology_manager.parse()?;
    let pool = store::connect(&config).await?;
    store::check_provisioned(&pool, &config.database_url, &member).await?;
    let auth = Authenticator::new(&config.auth)?;
    let mut conn = pool.acquire().await?;
    let state = store::load_state(&mut conn).await?;
    drop(conn);
    let packages = Arc::new(crate::processor::package_store(&state.topology));
    let sequencer = SequencerClient::connect(ClientConfig::new(
        config.sequencers.clone(),
        member.clone(),
        key.clone(),
    ))
    .await?;

    let shared = Arc::new(Shared {
        snapshot: RwLock::new(Arc::new(Snapshot {
            topology: state.topology.clone(),
            packages,
            cursor: state.cursor,
        })),
        processed: watch::Sender::new(state.cursor),
        ledger_end: watch::Sender::new(state.ledger_end),
        completion_end: watch::Sender::new(state.completion_end),
        outbox_wake: Notify::new(),
        config,
        pool: pool.clone(),
        member: member.clone(),
        key,
        topology_manager,
        auth,
        sequencer,
    });

    let stop = CancellationToken::new();
    let processor = tokio::spawn(crate::processor::run(shared.clone(), stop.clone()));
    let outbox = tokio::spawn(crate::outbox::run(shared.clone(), stop.clone()));

    let (health, health_service) = ordo_node::Health::new(vec![HEALTH_SERVICE]).await;
    let (ready_tx, ready_rx) = watch::channel(false);
    let servers = Servers::spawn(
        api::router(shared.clone(), health_service),
        listeners,
        ready_rx,
    );
    health.set(true).await;
    let _ = ready_tx.send(true);
    tracing::info!(%member, shard = %shared.config.shard, "participant running");

    shutdown.await;
    tracing::info!(%member, "participant shutting down");
    health.set(false).await;
    let _ = ready_tx.send(false);
    stop.cancel();
    let served = servers.drain().await;
    let _ = processor.await;
    let _ = outbox.await;
    pool.close().await;
    served.map_err(|e| ParticipantError::Server(e.to_string()))
}
