//! Provisioning (`init`) and the operational node (`run`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use ordo_core::{KeyPair, MemberId, PublicKey, Timestamp};
use ordo_lease::Replica;
use ordo_ledger::PackageStore;
pub use ordo_node::Listeners;
use ordo_node::Servers;
use ordo_protocol::TopologyState;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use parking_lot::RwLock;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::auth::Authenticator;
use crate::config::{NODE, ParticipantConfig};
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
    /// Shared by the snapshots until a topology transaction changes it.
    pub topology: Arc<TopologyState>,
    pub packages: Arc<PackageStore>,
    /// The last processed sequencing timestamp.
    pub cursor: Timestamp,
}

/// Contracts that confirmation requests pending on this participant create if approved.
#[derive(Default)]
pub(crate) struct Creating {
    by_contract: HashMap<String, Timestamp>,
    /// Each request's deadline and contracts.
    by_request: HashMap<Timestamp, (Timestamp, Vec<String>)>,
}

/// The logs a reader streams, which pruning shortens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    Updates,
    Completions,
}

/// What the node's tasks and services share.
pub struct Shared {
    pub config: ParticipantConfig,
    pub pool: PgPool,
    pub member: MemberId,
    pub key: Arc<KeyPair>,
    pub topology_manager: MemberId,
    pub auth: Authenticator,
    /// Ledger API calls per token (`[limits] token_requests`).
    pub token_limits: ordo_node::limits::Limiter<u64>,
    pub sequencer: SequencerClient,
    /// The client side of the node's `[tls]` (calls to the topology manager).
    pub tls: Option<ordo_node::tls::ClientTls>,
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// Wakes waiters whenever the processor committed an event (value: its timestamp).
    pub processed: watch::Sender<Timestamp>,
    /// The ledger end (last update offset).
    pub ledger_end: watch::Sender<i64>,
    /// The last completion offset.
    pub completion_end: watch::Sender<i64>,
    /// How far the logs were pruned, published before any row goes.
    pub pruned: watch::Sender<store::prune::Pruned>,
    /// One pruning at a time.
    pub(crate) pruning: tokio::sync::Mutex<()>,
    pub outbox_wake: Notify,
    /// Calls waiting for their command's completion (`completion_waiter`).
    waiters: parking_lot::Mutex<HashMap<store::CommandKey, Vec<oneshot::Sender<Completed>>>>,
    /// Writes accepted commands, a group per transaction.
    pub(crate) writer: crate::writer::Writer,
    /// Contracts created by requests pending here (read your writes across shards).
    creating: parking_lot::Mutex<Creating>,
    /// Outbox rows committed and not yet taken by the sender (`hand_over`).
    outbox_ready: parking_lot::Mutex<Vec<store::OutboxRow>>,
    /// Outbox rows the sequencer answered definitely, to delete with the next batch's
    /// commit (`sent`, `take_sent`).
    outbox_sent: parking_lot::Mutex<Vec<String>>,
    /// This replica of the shard: its lease (the fence of every write), health and status.
    pub replica: Replica,
    /// While this replica serves (active and resumed from the database): a token cancelled
    /// when its term ends. `None` while passive or taking over.
    pub term: watch::Sender<Option<CancellationToken>>,
}

/// A completion handed to a waiting call by the commit that made it durable, with the
/// stored transaction of a successful command (`None` if the batch did not append it).
#[derive(Clone, Debug)]
pub struct Completed {
    pub row: store::CompletionRow,
    pub update: Option<Arc<Vec<u8>>>,
}

impl Shared {
    /// The rights of the call's bearer token, within the token's rate limit: a call over
    /// it is refused late, RESOURCE_EXHAUSTED with the time after which a retry can pass.
    /// A user token's rights are its user's in this participant's topology, resolved on
    /// every call, so a revoked right or a deleted user takes effect with the next call.
    pub async fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<crate::auth::Rights, tonic::Status> {
        let mut rights = self.auth.authenticate(metadata)?;
        // A user token carries no rights of its own: the user's, as of now.
        if let Some(user) = rights.user.clone() {
            rights = rights.of_user(self.snapshot().topology.users.get(&user))?;
        }
        let key = ordo_node::limits::token_key(
            metadata
                .get("authorization")
                .map_or(&[][..], |v| v.as_bytes()),
        );
        if let Err(throttled) = self.token_limits.check(&key) {
            throttled.delay().await;
            return Err(throttled.status("the token"));
        }
        Ok(rights)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }

    /// The term this replica serves in, if it serves.
    pub fn serving_term(&self) -> Option<CancellationToken> {
        self.term.borrow().clone().filter(|t| !t.is_cancelled())
    }

    /// The term this replica serves in, or UNAVAILABLE naming the active replica.
    pub async fn require_serving(&self) -> Result<CancellationToken, ParticipantError> {
        match self.serving_term() {
            Some(term) => Ok(term),
            None => Err(ParticipantError::Passive(self.unavailable_message().await)),
        }
    }

    /// Why this replica does not serve now, naming the active replica when there is one.
    pub async fn unavailable_message(&self) -> String {
        if self.replica.is_active() {
            format!(
                "replica {} of {} is taking over and resumes from the database; retry shortly",
                self.replica.name(),
                self.config.shard
            )
        } else {
            self.replica.unavailable_message().await
        }
    }

    /// PARTICIPANT_PRUNED_DATA_ACCESSED if reading `log` after offset `after` needs rows
    /// that were pruned.
    pub fn unpruned(&self, log: Log, after: i64) -> Result<(), ParticipantError> {
        let pruned = *self.pruned.borrow();
        let up_to = match log {
            Log::Updates => pruned.updates,
            Log::Completions => pruned.completions,
        };
        if after >= up_to {
            return Ok(());
        }
        let (what, next) = match log {
            Log::Updates => (
                "updates",
                format!(
                    "stream from begin_exclusive {up_to} or later, after a snapshot of the active contracts (GetActiveContracts)"
                ),
            ),
            Log::Completions => (
                "completions",
                format!("stream from completion offset {up_to} or later"),
            ),
        };
        Err(ParticipantError::Pruned(format!(
            "{what} up to offset {up_to} of {} were pruned; reading after offset {after} needs them: {next}",
            self.config.shard
        )))
    }

    /// The answer to a call whose replica stopped being the active one while it ran;
    /// `what_next` tells the caller how to go on.
    pub fn term_ended(&self, what_next: &str) -> ParticipantError {
        ParticipantError::Unavailable(format!(
            "replica {} of {} is no longer the active replica; {what_next}",
            self.replica.name(),
            self.config.shard
        ))
    }

    /// Commits a state-changing transaction if this replica still holds the shard's lease
    /// (the fence, checked in the transaction itself); otherwise it rolls back and the
    /// error (UNAVAILABLE) says the replica is not the active one.
    pub async fn commit(&self, mut tx: Transaction<'_, Postgres>) -> Result<(), ParticipantError> {
        self.replica.fence(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets what pending requests create, when the state may have changed elsewhere (a
    /// term starts, the stored cursor is not this replica's): requests made pending before
    /// are not waited for (a command using their contracts fails NOT_FOUND as it would
    /// without the wait).
    pub(crate) fn forget_pending_creates(&self) {
        *self.creating.lock() = Creating::default();
    }

    /// The processor committed a pending request that creates `contracts` if approved.
    pub(crate) fn creating(&self, request: Timestamp, deadline: Timestamp, contracts: Vec<String>) {
        let mut creating = self.creating.lock();
        for c in &contracts {
            creating.by_contract.insert(c.clone(), request);
        }
        creating.by_request.insert(request, (deadline, contracts));
    }

    /// The processor committed the outcome of `request` (its contracts exist now, or never
    /// will).
    pub(crate) fn resolved(&self, request: Timestamp) {
        let mut creating = self.creating.lock();
        if let Some((_, contracts)) = creating.by_request.remove(&request) {
            for c in contracts {
                creating.by_contract.remove(&c);
            }
        }
    }

    /// Waits until this participant has processed everything sequenced before now (a
    /// time proof to itself marks "now"), then while `contract` is created by a request
    /// pending here, at most until that request's deadline; all within `cap`. Whether
    /// looking `contract` up again may find what the first lookup did not.
    pub(crate) async fn await_created(&self, contract: &str, cap: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + cap;
        let mut processed = self.processed.subscribe();
        let now = match self
            .time_proof("tp-read", std::time::Duration::from_secs(10))
            .await
        {
            Ok(ts) => ts,
            Err(e) => {
                tracing::debug!(error = %e, "no time proof; not waiting for pending requests");
                return false;
            }
        };
        let caught_up = tokio::time::timeout_at(until, processed.wait_for(|t| *t >= now))
            .await
            .is_ok_and(|r| r.is_ok());
        if !caught_up {
            return false;
        }
        let deadline = {
            let creating = self.creating.lock();
            match creating.by_contract.get(contract) {
                // Not created by anything pending: what the ACS holds now is the answer.
                None => return true,
                Some(request) => creating.by_request.get(request).map(|(d, _)| *d),
            }
        };
        let Some(deadline) = deadline else {
            return true;
        };
        let wall = Timestamp::from_system_time(std::time::SystemTime::now());
        let left = std::time::Duration::from_micros(
            u64::try_from(deadline.micros().saturating_sub(wall.micros())).unwrap_or(0),
        );
        let until = until.min(tokio::time::Instant::now() + left);
        loop {
            processed.borrow_and_update();
            if !self.creating.lock().by_contract.contains_key(contract) {
                return true;
            }
            match tokio::time::timeout_at(until, processed.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// Sequences a time proof addressed to this participant, with a message id starting
    /// with `tag` and sequenced within `window`: its timestamp. The event it makes moves
    /// the processor's clock past everything sequenced before it.
    pub(crate) async fn time_proof(
        &self,
        tag: &str,
        window: std::time::Duration,
    ) -> Result<Timestamp, ordo_sequencer_client::ClientError> {
        let nonce: u64 = rand::random();
        let content = ordo_protocol::SignedMessage::encode(
            &self.member,
            &self.key,
            &ordo_protocol::Message::TimeProof(ordo_protocol::TimeProof { nonce }),
        );
        let submission = ordo_core::Submission {
            message_id: format!("{tag}-{nonce:016x}"),
            max_sequencing_time: Timestamp::from_system_time(std::time::SystemTime::now())
                .plus(window),
            envelopes: vec![ordo_core::Envelope {
                recipients: ordo_core::Recipients::members([self.member.clone()]),
                content,
            }],
        };
        Ok(self.sequencer.send(submission).await?.timestamp)
    }

    /// A receiver of `key`'s completion, delivered by the commit that makes it durable
    /// ([`Shared::deliver`]). Register before looking in the database, so that no
    /// completion falls between the two.
    pub(crate) fn completion_waiter(
        &self,
        key: &store::CommandKey,
    ) -> oneshot::Receiver<Completed> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock();
        let list = waiters.entry(key.clone()).or_default();
        // Calls that gave up (timed out, disconnected) leave closed senders behind.
        list.retain(|w| !w.is_closed());
        list.push(tx);
        rx
    }

    /// Hands committed completions to the calls waiting on them, each with its update
    /// when `updates` (offset, update id, stored transaction) holds it.
    pub(crate) fn deliver(
        &self,
        completions: Vec<store::CompletionRow>,
        updates: &[(i64, String, Vec<u8>)],
    ) {
        if completions.is_empty() {
            return;
        }
        crate::metrics::completed(&completions);
        let mut waiters = self.waiters.lock();
        for c in completions {
            let key = store::CommandKey {
                application_id: c.application_id.clone(),
                command_id: c.command_id.clone(),
                act_as: c.act_as.clone(),
            };
            let Some(list) = waiters.remove(&key) else {
                continue;
            };
            let update = (c.outcome.code == 0)
                .then(|| updates.iter().find(|(_, id, _)| *id == c.outcome.update_id))
                .flatten()
                .map(|(_, _, tx)| Arc::new(tx.clone()));
            for waiter in list {
                let _ = waiter.send(Completed {
                    row: c.clone(),
                    update: update.clone(),
                });
            }
        }
        // Entries whose every caller gave up.
        if waiters.len() > 1024 {
            waiters.retain(|_, list| list.iter().any(|w| !w.is_closed()));
        }
    }

    /// Gives the sender rows that a commit made durable, so that it sends them without
    /// reading the table.
    pub(crate) fn hand_over(&self, rows: Vec<store::OutboxRow>) {
        if rows.is_empty() {
            return;
        }
        self.outbox_ready.lock().extend(rows);
        self.outbox_wake.notify_one();
    }

    /// The rows handed over since the last call.
    pub(crate) fn handed_over(&self) -> Vec<store::OutboxRow> {
        std::mem::take(&mut *self.outbox_ready.lock())
    }

    /// Outbox rows the sequencer answered definitely: deleted by the next batch's commit
    /// (or by the sender's sweep, when no batch comes).
    pub(crate) fn sent(&self, ids: impl IntoIterator<Item = String>) {
        self.outbox_sent.lock().extend(ids);
    }

    /// The sent rows to delete, taken by whoever deletes them (given back with
    /// [`Shared::sent`] if that fails).
    pub(crate) fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *self.outbox_sent.lock())
    }

    /// Replaces the cached snapshot and the watched ends with `state` as stored.
    pub(crate) fn reload(&self, state: store::ProcessingState) {
        let old = self.snapshot();
        let packages = if old.topology.packages == state.topology.packages {
            old.packages.clone()
        } else {
            Arc::new(crate::processor::package_store(&state.topology))
        };
        *self.snapshot.write() = Arc::new(Snapshot {
            topology: Arc::new(state.topology),
            packages,
            cursor: state.cursor,
        });
        self.processed.send_replace(state.cursor);
        self.ledger_end.send_replace(state.ledger_end);
        crate::metrics::ledger_end_is(state.ledger_end);
        self.completion_end.send_replace(state.completion_end);
        self.pruned.send_replace(state.pruned);
    }
}

/// Runs the node until `shutdown` resolves. The replica competes for the shard's lease:
/// passive, it keeps its database pool and sequencer connection open and answers the
/// Ledger API UNAVAILABLE; in each term as the active replica it resumes from the database
/// and processes (`session`). On shutdown it finishes the term, releases the lease (the
/// other replica takes over at once), drains and returns. Refuses to run on a database
/// `init` never provisioned.
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
    let active_contracts = store::count_active_contracts(&mut conn).await?;
    drop(conn);
    crate::metrics::describe(state.ledger_end, active_contracts);
    let packages = Arc::new(crate::processor::package_store(&state.topology));
    let tls = ordo_node::config::client_tls(config.tls.as_ref()).map_err(|e| e.of(NODE))?;
    let sequencer = SequencerClient::connect(ClientConfig {
        tls: tls.clone(),
        ..ClientConfig::new(config.sequencers.clone(), member.clone(), key.clone())
    })
    .await?;

    let (health, health_service) = ordo_node::Health::new(vec![HEALTH_SERVICE]).await;
    let (ready_tx, ready_rx) = watch::channel(false);
    let (replica, lease_task) = Replica::start(
        pool.clone(),
        &config.shard,
        &config.replica,
        &config.node_name,
        health,
        ready_tx,
    )
    .await?;

    let shared = Arc::new(Shared {
        token_limits: ordo_node::limits::Limiter::new(
            "token_requests",
            config.limits.token_requests,
        ),
        snapshot: RwLock::new(Arc::new(Snapshot {
            topology: Arc::new(state.topology.clone()),
            packages,
            cursor: state.cursor,
        })),
        processed: watch::Sender::new(state.cursor),
        ledger_end: watch::Sender::new(state.ledger_end),
        completion_end: watch::Sender::new(state.completion_end),
        pruned: watch::Sender::new(state.pruned),
        pruning: tokio::sync::Mutex::new(()),
        outbox_wake: Notify::new(),
        outbox_ready: parking_lot::Mutex::new(Vec::new()),
        outbox_sent: parking_lot::Mutex::new(Vec::new()),
        waiters: parking_lot::Mutex::new(HashMap::new()),
        creating: parking_lot::Mutex::new(Creating::default()),
        writer: crate::writer::Writer::start(pool.clone(), replica.clone()),
        tls,
        config,
        pool: pool.clone(),
        member: member.clone(),
        key,
        topology_manager,
        auth,
        sequencer,
        replica: replica.clone(),
        term: watch::Sender::new(None),
    });

    let servers = Servers::spawn_with_routes(
        api::router(shared.clone(), health_service),
        replica.routes(),
        listeners,
        ready_rx,
    );
    tracing::info!(%member, shard = %shared.config.shard, replica = %replica.name(), "participant running; competing for the shard's lease");

    let stop = CancellationToken::new();
    let mut terms = {
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            // A failed session is retried once the lease had a chance to be checked.
            let retry = shared.config.replica.renew_period;
            let replica = shared.replica.clone();
            replica
                .run_terms(&stop, retry, |term| {
                    crate::session::run(shared.clone(), term)
                })
                .await;
        })
    };
    // The terms end only on `stop`, unless the lease runtime died: then the node cannot
    // serve any more and stops with an error.
    let lease_died = tokio::select! {
        () = shutdown => false,
        _ = &mut terms => true,
    };
    tracing::info!(%member, "participant shutting down");
    stop.cancel();
    if !lease_died {
        let _ = terms.await;
    }
    if let Err(e) = replica.step_down().await {
        tracing::warn!(error = %e, "releasing the shard's lease failed; it expires by itself");
    }
    let served = servers.drain().await;
    // The lease is released: nothing is left for its runtime to do.
    lease_task.abort();
    pool.close().await;
    if lease_died {
        return Err(ParticipantError::Lease(ordo_lease::LeaseError::Stopped {
            service: shared.config.shard.clone(),
        }));
    }
    served.map_err(|e| ParticipantError::Server(e.to_string()))
}
