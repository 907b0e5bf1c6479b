//! Provisioning (`init`) and the operational node (`run`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

pub use ordo_node::Listeners;
use ordo_node::Servers;
use ordo_node::db::redact_url;
use ordo_node::serve::DRAIN_TIMEOUT;
use ordo_proto::sequencer::v1::sequencer_admin_service_server::SequencerAdminServiceServer;
use ordo_proto::sequencer::v1::sequencer_auth_service_server::SequencerAuthServiceServer;
use ordo_proto::sequencer::v1::sequencer_service_server::{self, SequencerServiceServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminApi;
use crate::auth::Authenticator;
use crate::config::SequencerConfig;
use crate::error::SequencerError;
use crate::registry::Registry;
use crate::service::{AuthApi, SequencerApi, Shared};
use crate::subscription::Subscriptions;
use crate::tail::{self, Tail};
use crate::{store, writer};

/// The health service name clients watch (besides "" for the whole server).
pub const HEALTH_SERVICE: &str = sequencer_service_server::SERVICE_NAME;

/// What `init` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    /// True when this call provisioned the database; false when it already was.
    pub created: bool,
}

/// Provisions the schema (migrations) and the domain's token secret. Idempotent, and safe
/// when several nodes run it at once (an advisory lock serialises them).
pub async fn init(config: &SequencerConfig) -> Result<InitOutcome, SequencerError> {
    config.validate()?;
    let created = store::init(config).await?;
    tracing::info!(created, db = %redact_url(&config.database_url), "sequencer database provisioned");
    Ok(InitOutcome { created })
}

/// Runs the node until `shutdown` resolves; then reports NOT_SERVING, stops accepting,
/// drains and returns. Refuses to run on a database `init` never provisioned.
pub async fn run(
    config: SequencerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SequencerError> {
    config.validate()?;
    let node = config.node_name.clone();
    crate::metrics::describe(&node);
    let (pool, writer_pool) = store::connect(&config).await?;
    let secret = store::check_provisioned(&pool, &config.database_url).await?;
    let registry = Arc::new(Registry::new(pool.clone()));
    registry.refresh().await?;
    let tail = Tail::new(
        store::head(&pool).await?,
        config.tail_buffer_events,
        config.tail_buffer_bytes,
    );

    let stop = CancellationToken::new();
    let (healthy_tx, healthy_rx) = watch::channel(false);
    let reader = tokio::spawn(tail::run_reader(
        tail.clone(),
        pool.clone(),
        stop.clone(),
        healthy_tx,
        node.clone(),
    ));
    let listener = tokio::spawn(tail::run_listener(
        tail.clone(),
        registry.clone(),
        pool.clone(),
        stop.clone(),
    ));
    let (writer, writer_task) = writer::spawn(
        writer_pool.clone(),
        config.max_batch,
        tail.clone(),
        node.clone(),
    );

    let shared = Arc::new(Shared {
        limits: crate::limits::Limits::new(&config.limits),
        pool: pool.clone(),
        registry: registry.clone(),
        auth: Authenticator::new(secret),
        writer,
        tail: tail.clone(),
        subscriptions: Subscriptions {
            pool: pool.clone(),
            registry,
            tail,
            stop: stop.clone(),
            active: Arc::new(AtomicI64::new(0)),
            node: node.clone(),
        },
        config,
    });

    let (health, health_service) = ordo_node::Health::new(vec![HEALTH_SERVICE]).await;
    let (ready_tx, ready_rx) = watch::channel(false);
    let health_task = tokio::spawn(mirror_health(
        healthy_rx,
        health.clone(),
        ready_tx,
        stop.clone(),
    ));
    let servers = Servers::spawn(grpc_router(shared, health_service), listeners, ready_rx);
    tracing::info!(node = %node, "sequencer node running");

    shutdown.await;
    tracing::info!(node = %node, "sequencer node shutting down");
    let running = Running {
        health,
        stop,
        health_task,
        servers,
        writer_task,
        background: [reader, listener],
        pools: [writer_pool, pool],
    };
    running.drain().await
}

/// A running node's tasks, stopped in order by [`Running::drain`].
struct Running {
    health: ordo_node::Health,
    stop: CancellationToken,
    health_task: JoinHandle<()>,
    servers: Servers,
    writer_task: JoinHandle<()>,
    background: [JoinHandle<()>; 2],
    pools: [sqlx::PgPool; 2],
}

impl Running {
    async fn drain(self) -> Result<(), SequencerError> {
        // NOT_SERVING first so clients move away; then end streams, stop accepting, and
        // let in-flight calls finish.
        self.health.set(false).await;
        self.stop.cancel();
        let _ = self.health_task.await;
        let served = self.servers.drain().await;
        // The services (and their writer handles) are gone once the server returned, so
        // the writer finishes what was queued and stops.
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.writer_task).await;
        for task in self.background {
            let _ = task.await;
        }
        for pool in self.pools {
            pool.close().await;
        }
        served.map_err(|e| SequencerError::Server(e.to_string()))
    }
}

/// SERVING while the tail reader can read the database; ends (NOT_SERVING) on stop.
async fn mirror_health(
    mut healthy: watch::Receiver<bool>,
    health: ordo_node::Health,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let ok = *healthy.borrow_and_update();
        let _ = ready.send(ok);
        health.set(ok).await;
        tokio::select! {
            () = stop.cancelled() => break,
            changed = healthy.changed() => if changed.is_err() { break },
        }
    }
    let _ = ready.send(false);
    health.set(false).await;
}

fn grpc_router(
    shared: Arc<Shared>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::transport::server::Router {
    // A message over max_batch_bytes is refused from its length prefix, before it is read;
    // a submission within it but over max_request_bytes gets the precise
    // RESOURCE_EXHAUSTED of `validate`.
    let limit = shared.config.max_batch_bytes;
    let mut builder = ordo_node::grpc_server();
    let mut router = builder
        .add_service(health)
        .add_service(
            SequencerServiceServer::new(SequencerApi(shared.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(SequencerAuthServiceServer::new(AuthApi(shared.clone())))
        .add_service(SequencerAdminServiceServer::new(AdminApi(shared)));
    router = ordo_node::with_reflection(
        router,
        &[
            "ordo.sequencer.v1.SequencerService",
            "ordo.sequencer.v1.SequencerAuthService",
            "ordo.sequencer.v1.SequencerAdminService",
        ],
    );
    router
}
