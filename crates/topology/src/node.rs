//! Provisioning (`init`) and the operational node (`run`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{KeyPair, MemberId, PublicKey};
pub use ordo_node::Listeners;
use ordo_node::Servers;
use ordo_proto::admin::v1::topology_admin_service_server::{self, TopologyAdminServiceServer};
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminApi;
use crate::config::TopologyConfig;
use crate::error::TopologyError;
use crate::manager::{Manager, Progress};
use crate::{processor, store};

/// The health service name clients watch (besides "" for the whole server).
pub const HEALTH_SERVICE: &str = topology_admin_service_server::SERVICE_NAME;

/// What `init` did, and who the manager is (for `ordo up` to print and to configure the
/// other members' `topology_manager`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    /// True when this call provisioned the database; false when it already was.
    pub created: bool,
    /// The manager's member id: topology transactions are accepted only when signed by it.
    pub member: MemberId,
    pub public_key: PublicKey,
}

/// Provisions the schema, the key file (generated when missing, never overwritten) and the
/// manager's member id. Idempotent, and safe when run concurrently (an advisory lock
/// serialises the database part).
pub async fn init(config: &TopologyConfig) -> Result<InitOutcome, TopologyError> {
    config.validate()?;
    let (key, _) = ordo_node::key::load_or_create(config.key_file.clone()).await?;
    let public_key = key.public();
    let member = MemberId::new(&config.node_name, &public_key)?;
    let (created, meta) = store::init(config, member.as_str(), public_key.as_bytes()).await?;
    check_member(config, &meta, &member)?;
    tracing::info!(created, %member, db = %store::redact_url(&config.database_url), "topology manager provisioned");
    Ok(InitOutcome {
        created,
        member,
        public_key,
    })
}

fn check_member(
    config: &TopologyConfig,
    meta: &store::Meta,
    member: &MemberId,
) -> Result<(), TopologyError> {
    if meta.member_id != member.as_str() {
        return Err(TopologyError::KeyMismatch {
            key_file: config.key_file.display().to_string(),
            url: store::redact_url(&config.database_url),
            expected: meta.member_id.clone(),
            found: member.to_string(),
        });
    }
    Ok(())
}

/// Runs the node until `shutdown` resolves; then reports NOT_SERVING, stops accepting,
/// drains and returns. Refuses to run on a database `init` never provisioned, or with a
/// key file that is not the database's.
///
/// In the background it registers itself in the sequencer, follows its subscription from
/// the stored cursor, bootstraps a fresh topology (serials 1–3), re-sends unsequenced
/// proposals, and then reports SERVING.
pub async fn run(
    config: TopologyConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TopologyError> {
    config.validate()?;
    let pool = store::connect(&config).await?;
    let meta = store::check_provisioned(&pool, &config.database_url).await?;
    let key = Arc::new(KeyPair::read_file(&config.key_file)?);
    let member = MemberId::new(&config.node_name, &key.public())?;
    check_member(&config, &meta, &member)?;
    let (state, _) = store::load_state(&pool).await?;
    metrics::gauge!("ordo_topology_serial").set(state.serial as f64);
    let (progress_tx, progress_rx) = watch::channel(Progress {
        state: Arc::new(state),
        refused: None,
    });
    let manager = Arc::new(Manager::new(
        config.clone(),
        pool.clone(),
        member.clone(),
        key,
        progress_rx,
    ));

    let (health, health_service) = ordo_node::Health::new(vec![HEALTH_SERVICE]).await;
    let (ready_tx, ready_rx) = watch::channel(false);
    let stop = CancellationToken::new();

    let mut builder = tonic::transport::Server::builder();
    let mut router = builder
        .add_service(health_service)
        .add_service(TopologyAdminServiceServer::new(AdminApi(manager.clone())));
    if let Some(r) = ordo_node::reflection() {
        router = router.add_service(r);
    }
    let servers = Servers::spawn(router, listeners, ready_rx);

    let startup = tokio::spawn(start(
        manager.clone(),
        progress_tx,
        stop.clone(),
        health.clone(),
        ready_tx.clone(),
    ));
    tracing::info!(%member, "topology manager running");

    shutdown.await;
    tracing::info!(%member, "topology manager shutting down");
    // NOT_SERVING first so clients move away; then stop the processor, stop accepting and
    // let in-flight calls finish.
    health.set(false).await;
    let _ = ready_tx.send(false);
    stop.cancel();
    if let Ok(Some(processor)) = startup.await {
        let _ = processor.await;
    }
    let served = servers.drain().await;
    drop(manager);
    pool.close().await;
    served.map_err(|e| TopologyError::Server(e.to_string()))
}

/// Connects to the sequencer, starts the processor, bootstraps and flushes; then reports
/// SERVING. Each step is retried until it succeeds or the node stops. Returns the
/// processor task.
async fn start(
    manager: Arc<Manager>,
    progress: watch::Sender<Progress>,
    stop: CancellationToken,
    health: ordo_node::Health,
    ready: watch::Sender<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let m = &manager;
    let public = m.key.public();
    let name = m.member.name().to_owned();
    retry(&stop, "registering in the sequencer", || {
        m.registry.register(&name, &public)
    })
    .await?;
    let client = retry(&stop, "connecting to the sequencer", || async {
        let mut cfg =
            ClientConfig::new(m.config.sequencers.clone(), m.member.clone(), m.key.clone());
        cfg.request_timeout = m.config.request_timeout;
        SequencerClient::connect(cfg)
            .await
            .map_err(|e| TopologyError::Unavailable(e.to_string()))
    })
    .await?;
    manager.set_client(client.clone());
    let processor = tokio::spawn(processor::run(
        manager.clone(),
        client,
        progress,
        stop.clone(),
    ));
    let started = async {
        retry(&stop, "bootstrapping topology", || m.bootstrap()).await?;
        retry(&stop, "sending pending topology transactions", || {
            m.flush_pending()
        })
        .await
    };
    if started.await.is_some() {
        manager.set_ready();
        health.set(true).await;
        let _ = ready.send(true);
        tracing::info!(serial = manager.current().serial, "topology manager ready");
    }
    Some(processor)
}

/// Runs `step` until it succeeds (`Some`) or `stop` (`None`), backing off between tries.
async fn retry<T, F, Fut>(stop: &CancellationToken, what: &str, mut step: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TopologyError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return None,
            outcome = step() => outcome,
        };
        match outcome {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying in {backoff:?}"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
