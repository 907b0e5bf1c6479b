//! The change pipeline: one topology change at a time is decided against the applied
//! state, written as a proposal, broadcast through the sequencer and awaited until the
//! manager's own subscription applied it (see `processor`).
//!
//! Invariants:
//! - Proposals are sent in serial order, one in flight: a caller holds the `turn` mutex
//!   from deciding until its change is applied, and first re-sends whatever an earlier
//!   caller (or a crashed process) left unsequenced.
//! - A proposal row exists before its first send, so a crash never loses a change that
//!   may have been sequenced; re-sends use the same message id, which the sequencer
//!   recognises, so nothing is sequenced twice.
//! - A member is registered in the sequencer before its AddMember is proposed.
//! - Only the active replica (the topology lease's holder) changes anything: the pipeline
//!   works within a *term* (its sequencer client and stop token), every write is fenced,
//!   and a passive replica answers every admin call UNAVAILABLE naming the active one.

use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Envelope, KeyPair, MemberId, PublicKey, Recipients, Submission, Timestamp};
use ordo_lease::Replica;
use ordo_protocol::{MemberRole, Message, SignedMessage, TopologyChange, TopologyState};
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientError, Disposition, SequencerClient, classify};
use sqlx::PgPool;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::config::TopologyConfig;
use crate::error::TopologyError;
use crate::plan::{self, Decision};
use crate::store;

/// What the processor publishes after every topology transaction of ours it saw.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The applied topology.
    pub state: Arc<TopologyState>,
    /// The last of our transactions the fold refused: its serial, sequencing timestamp and
    /// the reason.
    pub refused: Option<(u64, Timestamp, String)>,
}

/// Where an admin change stands.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The transaction that made the change (or made it earlier, when `created` is false).
    pub serial: u64,
    /// Its sequencing timestamp (`Timestamp::MIN` if unknown).
    pub timestamp: Timestamp,
    pub created: bool,
    /// The topology once the change is in effect.
    pub state: Arc<TopologyState>,
}

/// The current term of this replica as the active one.
struct ActiveTerm {
    client: SequencerClient,
    /// Cancelled when the term ends: waits of in-flight changes give up.
    stop: CancellationToken,
    /// Bootstrapped and flushed: admin calls are served.
    ready: bool,
}

pub struct Manager {
    pub config: TopologyConfig,
    pub pool: PgPool,
    pub member: MemberId,
    pub key: Arc<KeyPair>,
    pub progress: watch::Receiver<Progress>,
    pub registry: SequencerRegistry,
    /// The lease: whether this replica is active, and the fence of every write.
    pub replica: Replica,
    term: parking_lot::Mutex<Option<ActiveTerm>>,
    /// One change in flight at a time.
    turn: Mutex<()>,
}

/// Ends the manager's term when dropped (with the term's session).
pub struct TermGuard<'a>(&'a Manager);

impl Drop for TermGuard<'_> {
    fn drop(&mut self) {
        *self.0.term.lock() = None;
    }
}

impl Manager {
    pub fn new(
        config: TopologyConfig,
        pool: PgPool,
        member: MemberId,
        key: Arc<KeyPair>,
        progress: watch::Receiver<Progress>,
        replica: Replica,
        tls: Option<ordo_node::tls::ClientTls>,
    ) -> Self {
        let registry = SequencerRegistry {
            endpoints: config.sequencers.clone(),
            token: config.sequencer_admin_token.clone(),
            tls,
        };
        Self {
            config,
            pool,
            member,
            key,
            progress,
            registry,
            replica,
            term: parking_lot::Mutex::new(None),
            turn: Mutex::new(()),
        }
    }

    /// The applied topology.
    pub fn current(&self) -> Arc<TopologyState> {
        self.progress.borrow().state.clone()
    }

    /// A term begins: changes go through `client` until `stop` or the guard's drop.
    pub fn begin_term(&self, client: SequencerClient, stop: CancellationToken) -> TermGuard<'_> {
        *self.term.lock() = Some(ActiveTerm {
            client,
            stop,
            ready: false,
        });
        TermGuard(self)
    }

    /// The term's bootstrap and flush are done: admin calls are served.
    pub fn set_ready(&self) {
        if let Some(term) = self.term.lock().as_mut() {
            term.ready = true;
        }
    }

    /// Ok when this replica serves admin calls: it holds the lease and its term is ready.
    /// Otherwise UNAVAILABLE, naming the active replica when this one is passive. The one
    /// check of every admin call.
    pub async fn available(&self) -> Result<(), TopologyError> {
        if !self.replica.is_active() {
            return Err(TopologyError::Passive(
                self.replica.unavailable_message().await,
            ));
        }
        match self.term.lock().as_ref() {
            Some(term) if term.ready => Ok(()),
            _ => Err(starting()),
        }
    }

    /// The term's client and stop token, once the term is ready.
    fn ready_term(&self) -> Result<(SequencerClient, CancellationToken), TopologyError> {
        match self.term.lock().as_ref() {
            Some(term) if term.ready => Ok((term.client.clone(), term.stop.clone())),
            _ => Err(starting()),
        }
    }

    /// Decides a change with `decide` against the applied topology and, unless it is
    /// already in effect, broadcasts it and waits until it is applied.
    pub async fn change<T>(
        &self,
        decide: impl FnOnce(&TopologyState) -> Result<(T, Decision), TopologyError>,
    ) -> Result<(T, Outcome), TopologyError> {
        let _turn = self.turn.lock().await;
        let (client, stop) = self.ready_term()?;
        self.flush(&client, &stop).await?;
        let state = self.current();
        let (value, decision) = decide(&state)?;
        let outcome = match decision {
            Decision::Unchanged(change) => {
                let (serial, timestamp) = store::effective_at(&self.pool, &change)
                    .await?
                    .unwrap_or((state.serial, Timestamp::MIN));
                Outcome {
                    serial,
                    timestamp,
                    created: false,
                    state,
                }
            }
            Decision::Propose(change) => {
                let tx = plan::next_transaction(&state, change)?;
                self.register_in_sequencer(&tx.change).await?;
                let ids = store::insert_proposals(
                    &self.pool,
                    &self.replica,
                    std::slice::from_ref(&tx),
                    now(),
                )
                .await?;
                let proposal = store::Proposal {
                    tx,
                    message_id: ids.into_iter().next().unwrap_or_default(),
                };
                let timestamp = self.send_and_wait(&client, &stop, &proposal).await?;
                let tx = proposal.tx;
                Outcome {
                    serial: tx.serial,
                    timestamp,
                    created: true,
                    state: self.current(),
                }
            }
        };
        Ok((value, outcome))
    }

    /// On a fresh database, proposes the bootstrap: the manager itself (serial 1), the
    /// domain parameters (2) and the sequencer endpoints (3). All three rows or none.
    /// Idempotent across replicas and terms: it asks the database (which the term reloaded
    /// the state from) whether anything was ever proposed, and the write is fenced.
    pub async fn bootstrap(&self) -> Result<bool, TopologyError> {
        let _turn = self.turn.lock().await;
        let state = self.current();
        if state.serial > 0 || store::has_transactions(&self.pool).await? {
            return Ok(false);
        }
        let changes = [
            TopologyChange::AddMember {
                member: self.member.clone(),
                public_key: ordo_protocol::topology::encode_key(&self.key.public()),
                role: MemberRole::TopologyManager,
            },
            TopologyChange::SetParameters {
                parameters: self.config.parameters.domain_parameters(),
            },
            TopologyChange::SetSequencers {
                endpoints: self.config.sequencers.clone(),
            },
        ];
        let mut probe = (*state).clone();
        let mut txs = Vec::new();
        for change in changes {
            let tx = plan::next_transaction(&probe, change)?;
            probe
                .apply(&tx, Timestamp(probe.timestamp.0 + 1))
                .map_err(|e| TopologyError::Internal(format!("bootstrap: {e}")))?;
            txs.push(tx);
        }
        store::insert_proposals(&self.pool, &self.replica, &txs, now()).await?;
        tracing::info!(member = %self.member, "topology bootstrap proposed");
        Ok(true)
    }

    /// Sends every unsequenced proposal, in serial order, waiting for each to be applied.
    /// Called at the start of a term (after `begin_term`, before `set_ready`): proposals the
    /// previous active replica left unsent are sent now.
    pub async fn flush_pending(&self) -> Result<(), TopologyError> {
        let _turn = self.turn.lock().await;
        let (client, stop) = self
            .term
            .lock()
            .as_ref()
            .map(|t| (t.client.clone(), t.stop.clone()))
            .ok_or_else(|| TopologyError::Unavailable("no active term".into()))?;
        self.flush(&client, &stop).await
    }

    async fn flush(
        &self,
        client: &SequencerClient,
        stop: &CancellationToken,
    ) -> Result<(), TopologyError> {
        for proposal in store::pending(&self.pool).await? {
            let serial = proposal.tx.serial;
            if serial <= self.current().serial {
                // Applied since the query: the processor's write raced it.
                continue;
            }
            tracing::info!(serial, "sending an unsequenced topology transaction");
            self.register_in_sequencer(&proposal.tx.change).await?;
            self.send_and_wait(client, stop, &proposal).await?;
        }
        Ok(())
    }

    /// The sequencer's member registry follows topology: a member is registered there
    /// before anyone learns of it.
    async fn register_in_sequencer(&self, change: &TopologyChange) -> Result<(), TopologyError> {
        let TopologyChange::AddMember {
            member, public_key, ..
        } = change
        else {
            return Ok(());
        };
        let key = decode_key(public_key)?;
        let registered = self.registry.register(member.name(), &key).await?;
        if registered != *member {
            return Err(TopologyError::Internal(format!(
                "the sequencer registered {registered}, expected {member}"
            )));
        }
        Ok(())
    }

    /// Broadcasts a proposal and waits until the processor applied (or refused) it, or the
    /// term ends (`stop`). Returns its sequencing timestamp.
    async fn send_and_wait(
        &self,
        client: &SequencerClient,
        stop: &CancellationToken,
        proposal: &store::Proposal,
    ) -> Result<Timestamp, TopologyError> {
        let tx = &proposal.tx;
        let content =
            SignedMessage::encode(&self.member, &self.key, &Message::Topology(tx.clone()));
        let submission = Submission {
            message_id: proposal.message_id.clone(),
            max_sequencing_time: now().plus(self.config.request_timeout),
            envelopes: vec![Envelope {
                recipients: Recipients::broadcast(),
                content,
            }],
        };
        let sequenced = match client.send(submission).await {
            Ok(s) => s,
            Err(ClientError::Rejected(status)) => {
                // A definite answer: nothing was sequenced, so the serial is free again.
                store::delete_pending(&self.pool, &self.replica, tx.serial).await?;
                return Err(TopologyError::FailedPrecondition(format!(
                    "the sequencer refused topology transaction {} ({:?}): {}",
                    tx.serial,
                    status.code(),
                    status.message()
                )));
            }
            Err(e) => {
                return Err(TopologyError::Unavailable(format!(
                    "topology transaction {} is not sequenced yet ({e}); it is re-sent with \
                     the next change or after a restart",
                    tx.serial
                )));
            }
        };
        let at = sequenced.timestamp;
        let mut progress = self.progress.clone();
        let applied = progress.wait_for(|p| {
            p.state.serial >= tx.serial
                || p.refused
                    .as_ref()
                    .is_some_and(|(serial, ts, _)| *serial == tx.serial && *ts == at)
        });
        let waited = tokio::select! {
            () = stop.cancelled() => {
                return Err(TopologyError::Unavailable(format!(
                    "this replica stopped being the active topology manager while topology \
                     transaction {} (sequenced at {at}) was being applied; it takes effect at \
                     that timestamp, and the active replica answers for it: retry there",
                    tx.serial
                )));
            }
            waited = tokio::time::timeout(self.config.request_timeout, applied) => waited,
        };
        let done = match waited {
            Err(_) => {
                return Err(TopologyError::DeadlineExceeded(format!(
                    "topology transaction {} was sequenced at {at} but is not applied yet; \
                     it takes effect at that timestamp for every member",
                    tx.serial
                )));
            }
            Ok(Err(_)) => {
                return Err(TopologyError::Unavailable(
                    "the topology manager is shutting down".into(),
                ));
            }
            Ok(Ok(p)) => p.clone(),
        };
        if done.state.serial >= tx.serial {
            Ok(at)
        } else {
            let reason = done.refused.map(|r| r.2).unwrap_or_default();
            Err(TopologyError::FailedPrecondition(format!(
                "topology transaction {} was sequenced at {at} but refused: {reason}",
                tx.serial
            )))
        }
    }
}

fn starting() -> TopologyError {
    TopologyError::Unavailable(
        "the topology manager is starting its term as the active replica: it is not yet \
         connected to the sequencer and bootstrapped; retry shortly"
            .into(),
    )
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

fn decode_key(hex_key: &str) -> Result<PublicKey, TopologyError> {
    let bytes = hex::decode(hex_key)
        .map_err(|e| TopologyError::Internal(format!("public key {hex_key:?}: {e}")))?;
    PublicKey::from_bytes(&bytes).map_err(|e| TopologyError::Internal(e.to_string()))
}

/// The sequencers' member registry, written through their admin API.
pub struct SequencerRegistry {
    endpoints: Vec<String>,
    token: String,
    /// The client side of the manager's `[tls]`: the sequencers require its certificate.
    pub tls: Option<ordo_node::tls::ClientTls>,
}

impl SequencerRegistry {
    /// Registers `name` with `key` (idempotent), on the first sequencer node that answers.
    pub async fn register(&self, name: &str, key: &PublicKey) -> Result<MemberId, TopologyError> {
        let mut last = String::from("no sequencer endpoint configured");
        for endpoint in &self.endpoints {
            let attempt = async {
                let admin = AdminClient::connect_with_tls(
                    endpoint.clone(),
                    self.token.clone(),
                    self.tls.as_ref(),
                )
                .await?;
                admin.register_member(name, key).await
            };
            let outcome = tokio::time::timeout(Duration::from_secs(10), attempt).await;
            match outcome {
                Ok(Ok((member, created))) => {
                    if created {
                        tracing::info!(%member, %endpoint, "member registered in the sequencer");
                    }
                    return Ok(member);
                }
                Ok(Err(ClientError::Rejected(status)))
                    if classify(status.code()) != Disposition::Retry =>
                {
                    return Err(TopologyError::FailedPrecondition(format!(
                        "sequencer {endpoint} refused to register member {name} ({:?}): {}; \
                         check the manager's sequencer_admin_token",
                        status.code(),
                        status.message()
                    )));
                }
                Ok(Err(e)) => last = format!("{endpoint}: {e}"),
                Err(_) => last = format!("{endpoint}: timed out"),
            }
        }
        Err(TopologyError::Unavailable(format!(
            "no sequencer registered member {name}: {last}"
        )))
    }
}
