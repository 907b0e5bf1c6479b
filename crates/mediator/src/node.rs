//! Provisioning (`init`) and the operational node (`run`).
//!
//! `run` serves health, reflection, metrics and the replica's `/status`, and competes for
//! the mediator's lease (DESIGN §3): the mediator is active-passive, one replica active at
//! a time. While active it runs *sessions*: a session loads the state from the database
//! (cursor, topology, pending requests with their answers and decision times), subscribes
//! after the cursor and processes events strictly in order, committing each event's
//! changes with the cursor in one fenced transaction. Any failure ends the session; the
//! next one — in this replica or, after a failover, in another — resumes from the
//! database, so nothing half-done in memory ever counts and no in-flight request is lost.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_core::{
    Clock, Envelope, KeyPair, MemberId, PublicKey, Recipients, Submission, SystemClock,
};
use ordo_lease::{Replica, Term};
pub use ordo_node::Listeners;
use ordo_node::Servers;
use ordo_protocol::{Message, SignedMessage, TimeProof};
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::MediatorConfig;
use crate::error::MediatorError;
use crate::process::Processor;
use crate::store::Changes;
use crate::{metrics, outbox, store};

/// The `grpc.health.v1` service name of the mediator (besides "" for the whole server):
/// SERVING while it is subscribed and processing events.
pub const HEALTH_SERVICE: &str = "ordo.mediator.v1.Mediator";
/// The lease service the mediator's replicas compete for (one lease per domain mediator).
pub const LEASE_SERVICE: &str = "mediator";
/// Pause before a new session after a failed one.
const SESSION_RETRY: Duration = Duration::from_secs(1);
/// The most events processed and committed as one batch: it bounds a batch's
/// transaction well under the lease's TTL.
const MAX_BATCH: usize = 512;
/// How far past the wall clock a time proof may still be sequenced.
const TIME_PROOF_WINDOW: Duration = Duration::from_secs(10);

/// What `init` did, and who the mediator is (so that `ordo up` can register it with the
/// sequencer and add it to topology through the topology manager).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    /// True when this call provisioned the database; false when it already was.
    pub created: bool,
    /// True when this call generated the key file.
    pub key_created: bool,
    pub member: MemberId,
    pub public_key: PublicKey,
}

/// Creates the key file when missing (never overwrites it) and provisions the schema.
/// Idempotent, and safe when replicas run it at once (an advisory lock serialises them).
pub async fn init(config: &MediatorConfig) -> Result<InitOutcome, MediatorError> {
    config.validate_for_init()?;
    let (key, key_created) = ordo_node::key::load_or_create(config.key_file.clone()).await?;
    let member = MemberId::new(&config.node_name, &key.public())?;
    let created = store::init(config, &member).await?;
    tracing::info!(created, key_created, %member, db = %ordo_node::db::redact_url(&config.database_url), "mediator provisioned");
    Ok(InitOutcome {
        created,
        key_created,
        member,
        public_key: key.public(),
    })
}

/// Runs the mediator replica until `shutdown` resolves. It competes for the mediator's
/// lease and processes only while it holds it (SERVING); otherwise it waits, warm and
/// NOT_SERVING. On `shutdown` it finishes the event in hand, releases the lease (so that
/// another replica takes over at once), drains and returns. Refuses to run on a database
/// `init` never provisioned (or provisioned for another key).
pub async fn run(
    config: MediatorConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MediatorError> {
    config.validate()?;
    metrics::describe();
    // Loaded once: every session's sequencer client presents it.
    let tls = ordo_node::config::client_tls(config.tls.as_ref()).map_err(|e| e.of("mediator"))?;
    let key = Arc::new(KeyPair::read_file(&config.key_file)?);
    let me = MemberId::new(&config.node_name, &key.public())?;
    let pool = store::connect(&config).await?;
    store::check_provisioned(&pool, &config, &me).await?;

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
    let mut builder = ordo_node::grpc_server();
    let mut router = builder.add_service(health_service);
    router = ordo_node::with_reflection(router, &[]);
    let servers = Servers::spawn_with_routes(router, replica.routes(), listeners, ready_rx);

    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.cancel();
        });
    }
    tracing::info!(member = %me, replica = %replica.name(), "mediator running");
    let node = Node {
        config,
        tls,
        me,
        key,
        pool: pool.clone(),
        clock: Arc::new(SystemClock),
        replica: replica.clone(),
    };
    // Returns on `stop`, once the active session finished its event.
    replica
        .run_terms(&stop, SESSION_RETRY, |term| node.term(term))
        .await;

    tracing::info!(member = %node.me, "mediator shutting down; releasing the lease");
    if let Err(e) = replica.step_down().await {
        tracing::warn!(error = %e, "releasing the lease failed; the next replica takes over when it expires");
    }
    // Released (or given up). Stop competing at once: draining may outlast a TTL, after
    // which the runtime would take the lease again with no session to run.
    lease.abort();
    let served = servers.drain().await;
    pool.close().await;
    served.map_err(|e| MediatorError::Server(e.to_string()))
}

struct Node {
    config: MediatorConfig,
    /// The client side of the node's `[tls]`.
    tls: Option<ordo_node::tls::ClientTls>,
    me: MemberId,
    key: Arc<KeyPair>,
    pool: PgPool,
    clock: Arc<dyn Clock>,
    replica: Replica,
}

impl Node {
    /// One session of a term; a failure is logged, shown in `/status`, and the session
    /// restarts (from the database) while the term lasts.
    async fn term(&self, term: Term) {
        if let Err(e) = self.session(&term).await {
            tracing::error!(error = %e, token = term.token, "mediator session failed; resuming from the database");
            self.replica.error(&e);
        }
    }

    /// Resumes from the database and processes events until the term's `stop` (`Ok`) or a
    /// failure. A failed fence (this replica was deposed) ends it at once.
    async fn session(&self, term: &Term) -> Result<(), MediatorError> {
        let topology_manager = self
            .config
            .topology_manager
            .clone()
            .ok_or_else(|| MediatorError::Internal("no topology manager configured".into()))?;
        let client = tokio::select! {
            () = term.stop.cancelled() => return Ok(()),
            c = SequencerClient::connect(ClientConfig {
                tls: self.tls.clone(),
                ..ClientConfig::new(
                    self.config.sequencers.clone(),
                    self.me.clone(),
                    self.key.clone(),
                )
            }) => c?,
        };
        let resumed = store::load(&self.pool).await?;
        let mut processor = Processor::resume(
            self.me.clone(),
            self.key.clone(),
            topology_manager.clone(),
            resumed,
        );
        metrics::pending_requests(processor.core.len());
        tracing::info!(cursor = %processor.cursor, pending = processor.core.len(), token = term.token, "mediator session resuming");

        // Background work of this session ends with it (and with the term).
        let session_stop = term.stop.child_token();
        let _guard = session_stop.clone().drop_guard();
        let (handoff, handed) = mpsc::unbounded_channel();
        let sequenced = outbox::Sequenced::default();
        tokio::spawn(outbox::run(
            self.pool.clone(),
            self.replica.clone(),
            client.clone(),
            handed,
            sequenced.clone(),
            session_stop.clone(),
        ));
        tokio::spawn(crate::retention::run(
            self.pool.clone(),
            self.replica.clone(),
            self.config.verdict_retention,
            self.config.prune_interval,
            session_stop.clone(),
        ));
        let (cursor_tx, cursor_rx) = watch::channel(processor.cursor);
        tokio::spawn(acknowledge(
            client.clone(),
            cursor_rx,
            self.config.ack_interval,
            session_stop.clone(),
        ));
        // The subscription lives in its own task, so that the loop below can wait on other
        // things without cancelling a half-received event.
        let mut batches = client.subscribe(processor.cursor).batches(MAX_BATCH);

        term.ready().await;
        let mut ticker = tokio::time::interval(self.config.time_proof_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_proof: Option<Instant> = None;
        loop {
            let batch = tokio::select! {
                biased;
                () = term.stop.cancelled() => return Ok(()),
                batch = batches.next() => batch?,
                _ = ticker.tick() => {
                    if self.time_proof_due(&processor, last_proof) {
                        last_proof = Some(Instant::now());
                        self.send_time_proof(&client, &session_stop);
                    }
                    continue;
                }
            };
            let started = Instant::now();
            let checked = processor.check(batch).await?;
            let mut changes = Changes::default();
            let mut alarms = Vec::new();
            let mut handled = 0;
            for c in &checked {
                let mut event = processor.handle(c).await?;
                let at = c.event.timestamp;
                alarms.extend(
                    event
                        .alarms
                        .drain(..)
                        .map(|a| (at, c.event.sender.clone(), a)),
                );
                changes.absorb(event);
                handled += 1;
                if c.has_topology() {
                    break;
                }
            }
            let mut checked = checked;
            batches.give_back(checked.drain(handled..).map(|c| c.event));
            let at = checked[handled - 1].event.timestamp;
            let taken = sequenced.take();
            let committed = store::commit(&self.pool, &self.replica, at, &changes, &taken).await;
            metrics::batch(handled, started.elapsed());
            match committed {
                Ok(()) => {}
                // Postgres refuses an event's data, as it would on every retry and in
                // every replica: a batch of one is skipped, not retried forever; a larger
                // one is processed again an event at a time to find the event.
                Err(e) if e.is_poison() => {
                    processor = Processor::resume(
                        self.me.clone(),
                        self.key.clone(),
                        topology_manager.clone(),
                        store::load(&self.pool).await?,
                    );
                    if handled > 1 {
                        batches.one_at_a_time(checked.into_iter().map(|c| c.event));
                        continue;
                    }
                    let sender = &checked[0].event.sender;
                    metrics::alarm(
                        "poison_event",
                        at,
                        sender,
                        &format!("the event's changes could not be written and were skipped: {e}"),
                    );
                    store::skip(&self.pool, &self.replica, at).await?;
                    processor.cursor = at;
                    self.replica.processed(at);
                    let _ = cursor_tx.send(at);
                    continue;
                }
                Err(e) => return Err(e),
            }
            for (at, sender, (kind, details)) in &alarms {
                metrics::alarm(kind, *at, sender, details);
            }
            self.replica.processed(at);
            metrics::pending_requests(processor.core.len());
            for (d, _) in &changes.decided {
                tracing::debug!(request = %d.request, outcome = d.outcome_label(), decided_at = %d.decided_at, "verdict");
                metrics::decided(d);
            }
            let _ = cursor_tx.send(at);
            if !changes.decided.is_empty() {
                let _ = handoff.send(store::groups(changes.decided.into_iter().map(|(_, m)| m)));
            }
        }
    }

    /// A pending request's decision time has passed by the wall clock (our estimate of
    /// sequencer time) but no event has proved it yet: ask the sequencer for the time, at
    /// most every `time_proof_interval`. The Timeout itself is decided only when an event
    /// at or after the decision time arrives.
    fn time_proof_due(&self, processor: &Processor, last_proof: Option<Instant>) -> bool {
        let Some(deadline) = processor.core.next_decision_time() else {
            return false;
        };
        processor.cursor < deadline
            && self.clock.now() >= deadline
            && last_proof.is_none_or(|t| t.elapsed() >= self.config.time_proof_interval)
    }

    fn send_time_proof(&self, client: &SequencerClient, stop: &CancellationToken) {
        let nonce: u64 = rand::random();
        let payload = SignedMessage::encode(
            &self.me,
            &self.key,
            &Message::TimeProof(TimeProof { nonce }),
        );
        let submission = Submission {
            message_id: format!("time-proof-{nonce:016x}"),
            max_sequencing_time: self.clock.now().plus(TIME_PROOF_WINDOW),
            envelopes: vec![Envelope {
                recipients: Recipients::members([self.me.clone()]),
                content: payload,
            }],
        };
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let sent = tokio::select! {
                () = stop.cancelled() => return,
                sent = client.send(submission) => sent,
            };
            match sent {
                Ok(s) => {
                    tracing::debug!(at = %s.timestamp, "time proof sequenced");
                    metrics::time_proof_sent();
                }
                Err(e) => tracing::warn!(error = %e, "time proof not sequenced"),
            }
        });
    }
}

/// Acknowledges the processed cursor every `interval`, when it moved.
async fn acknowledge(
    client: SequencerClient,
    mut cursor: watch::Receiver<ordo_core::Timestamp>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut acknowledged = *cursor.borrow_and_update();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let at = *cursor.borrow();
        if at > acknowledged {
            match client.acknowledge(at).await {
                Ok(()) => acknowledged = at,
                Err(e) => tracing::debug!(error = %e, "acknowledgement failed; will retry"),
            }
        }
    }
}
