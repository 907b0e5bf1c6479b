//! Provisioning (`init`) and the operational node (`run`).
//!
//! The topology manager is active-passive (DESIGN §3): replicas share the database and
//! the key, and compete for the `topology` lease. The holder runs a *term*: it registers
//! in the sequencer, reloads the state from the database (the previous active may have
//! advanced it), follows its subscription, bootstraps a fresh topology, re-sends
//! unsequenced proposals and then serves the admin API. The others stay warm and answer
//! UNAVAILABLE, naming the active replica.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{KeyPair, MemberId, PublicKey};
use ordo_lease::{Replica, Term};
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
/// The lease service the manager's replicas compete for.
pub const LEASE_SERVICE: &str = "topology";
/// Pause before a new term session after a failed one.
const SESSION_RETRY: Duration = Duration::from_secs(1);

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

/// Runs the replica until `shutdown` resolves. It competes for the topology lease and
/// serves the admin API only while it holds it (SERVING); otherwise it answers UNAVAILABLE
/// naming the active replica (NOT_SERVING). On `shutdown` it ends its term, releases the
/// lease (another replica takes over at once), drains and returns. Refuses to run on a
/// database `init` never provisioned, or with a key file that is not the database's.
pub async fn run(
    config: TopologyConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TopologyError> {
    config.validate()?;
    crate::metrics::describe();
    let pool = store::connect(&config).await?;
    let meta = store::check_provisioned(&pool, &config.database_url).await?;
    let key = Arc::new(KeyPair::read_file(&config.key_file)?);
    let member = MemberId::new(&config.node_name, &key.public())?;
    check_member(&config, &meta, &member)?;

    let (health, health_service) = ordo_node::Health::new(vec![HEALTH_SERVICE]).await;
    let (ready_tx, ready_rx) = watch::channel(false);
    let (replica, lease) = Replica::start(
        pool.clone(),
        LEASE_SERVICE,
        &config.replica,
        &config.node_name,
        health,
        ready_tx,
    )
    .await?;
    let (state, _) = store::load_state(&pool).await?;
    metrics::gauge!("ordo_topology_serial").set(state.serial as f64);
    let (progress_tx, progress_rx) = watch::channel(Progress {
        state: Arc::new(state),
        refused: None,
    });
    // Loaded once: the calls to the sequencers (registrations, the client) present it.
    let tls = ordo_node::config::client_tls(config.tls.as_ref())
        .map_err(|e| TopologyError::Config(e.of("topology manager")))?;
    let manager = Arc::new(Manager::new(
        config.clone(),
        pool.clone(),
        member.clone(),
        key,
        progress_rx,
        replica.clone(),
        tls,
    ));

    let mut builder = ordo_node::grpc_server();
    let mut router = builder
        .add_service(health_service)
        .add_service(TopologyAdminServiceServer::new(AdminApi(manager.clone())));
    router = ordo_node::with_reflection(router, &["ordo.admin.v1.TopologyAdminService"]);
    let servers = Servers::spawn_with_routes(router, replica.routes(), listeners, ready_rx);

    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
    }
    tracing::info!(%member, replica = %replica.name(), "topology manager running");
    // Returns on `stop`, once the active term's session finished (NOT_SERVING by then).
    replica
        .run_terms(&stop, SESSION_RETRY, |term| {
            run_term(&manager, &progress_tx, term)
        })
        .await;

    tracing::info!(%member, "topology manager shutting down; releasing the lease");
    if let Err(e) = replica.step_down().await {
        tracing::warn!(error = %e, "releasing the lease failed; the next replica takes over when it expires");
    }
    // Released (or given up). Stop competing at once: draining may outlast a TTL, after
    // which the runtime would take the lease again with no session to run.
    lease.abort();
    let served = servers.drain().await;
    drop(manager);
    pool.close().await;
    served.map_err(|e| TopologyError::Server(e.to_string()))
}

/// One session of a term; a failure is logged, shown in `/status`, and the session
/// restarts while the term lasts.
async fn run_term(manager: &Arc<Manager>, progress: &watch::Sender<Progress>, term: Term) {
    if let Err(e) = serve_term(manager, progress, &term).await {
        tracing::error!(error = %e, token = term.token, "topology manager session failed");
        manager.replica.error(&e);
    }
}

/// Registers in the sequencer, connects, reloads the state, starts the processor,
/// bootstraps and flushes; then reports SERVING and processes until the term's stop. Each
/// step is retried until it succeeds or the term ends; a failed fence ends it at once.
async fn serve_term(
    m: &Arc<Manager>,
    progress: &watch::Sender<Progress>,
    term: &Term,
) -> Result<(), TopologyError> {
    let stop = &term.stop;
    let public = m.key.public();
    let name = m.member.name().to_owned();
    let registered = retry(stop, "registering in the sequencer", || {
        m.registry.register(&name, &public)
    })
    .await?;
    if registered.is_none() {
        return Ok(());
    }
    let client = retry(stop, "connecting to the sequencer", || async {
        let mut cfg =
            ClientConfig::new(m.config.sequencers.clone(), m.member.clone(), m.key.clone());
        cfg.request_timeout = m.config.request_timeout;
        cfg.tls = m.registry.tls.clone();
        SequencerClient::connect(cfg)
            .await
            .map_err(|e| TopologyError::Unavailable(e.to_string()))
    })
    .await?;
    let Some(client) = client else {
        return Ok(());
    };
    // The previous active replica may have advanced the topology: start from the database.
    let (state, cursor) = store::load_state(&m.pool).await?;
    tracing::info!(serial = state.serial, %cursor, token = term.token, "topology manager term starting");
    progress.send_modify(|p| {
        p.state = Arc::new(state);
        p.refused = None;
    });
    let _term = m.begin_term(client.clone(), stop.clone());
    let processor = processor::run(m, client, progress, stop.clone());
    tokio::pin!(processor);
    let startup = async {
        if retry(stop, "bootstrapping topology", || m.bootstrap())
            .await?
            .is_none()
        {
            return Ok(None);
        }
        retry(stop, "sending pending topology transactions", || {
            m.flush_pending()
        })
        .await
    };
    tokio::select! {
        outcome = &mut processor => return outcome,
        started = startup => if started?.is_none() {
            return processor.await;
        },
    }
    m.set_ready();
    term.ready().await;
    tracing::info!(
        serial = m.current().serial,
        token = term.token,
        "topology manager ready"
    );
    processor.await
}

/// Runs `step` until it succeeds (`Some`) or `stop` (`None`), backing off between tries.
/// A failed fence is not retried: this replica was deposed, the term is over.
async fn retry<T, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut step: F,
) -> Result<Option<T>, TopologyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TopologyError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Ok(None),
            outcome = step() => outcome,
        };
        match outcome {
            Ok(v) => return Ok(Some(v)),
            Err(e @ TopologyError::Fenced(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying in {backoff:?}"),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
