//! A small domain for the mediator: a throwaway Postgres, one in-process sequencer node,
//! the test itself as topology manager and as two participants (p1 on shard-1 hosting
//! alice, p2 on shard-2 hosting bob), and the mediator under test, in-process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use ordo_core::Clock;
use ordo_core::{
    Envelope, KeyPair, MemberId, PartyId, Recipients, Submission, SystemClock, Timestamp,
};
use ordo_lease::{ReplicaConfig, ReplicaStatus};
use ordo_mediator::MediatorConfig;
use ordo_node::http_client::StatusCode;
use ordo_protocol::topology::encode_key;
use ordo_protocol::{
    ConfirmationResponse, DomainParameters, InformeeTree, MemberRole, Message, ResponseOutcome,
    SignedMessage, TopologyChange, TopologyTransaction, Verdict, ViewCommitment, merkle,
};
use ordo_sequencer::SequencerConfig;
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{PgCluster, PgOptions, wait_for};
use sqlx::PgPool;
use tokio::sync::oneshot;

pub const ADMIN: &str = "admin-secret";
/// The participant response timeout the topology sets.
pub const RESPONSE_TIMEOUT_US: i64 = 2_000_000;

/// A member played by the test.
pub struct Member {
    pub id: MemberId,
    pub key: Arc<KeyPair>,
    pub client: SequencerClient,
}

impl Member {
    pub fn sign(&self, message: &Message) -> Vec<u8> {
        SignedMessage::encode(&self.id, &self.key, message)
    }

    /// Sends `content` to `to` and returns its sequencing timestamp.
    pub async fn send(
        &self,
        message_id: &str,
        to: Recipients,
        content: Vec<u8>,
    ) -> Result<Timestamp> {
        let s = self
            .client
            .send(Submission {
                message_id: message_id.into(),
                max_sequencing_time: SystemClock.now().plus(Duration::from_secs(30)),
                envelopes: vec![Envelope {
                    recipients: to,
                    content,
                }],
            })
            .await?;
        Ok(s.timestamp)
    }
}

/// Something a participant received.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Timestamp,
    pub message: Message,
    pub signed: SignedMessage,
}

/// Every event a participant received, decoded.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Received>>>);

impl Inbox {
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The verdicts for `request` received so far, with their sequencing timestamps; each
    /// must verify against the mediator's key.
    pub fn verdicts_for(
        &self,
        request: Timestamp,
        mediator: &ordo_core::PublicKey,
    ) -> Vec<(Timestamp, Verdict)> {
        self.all()
            .into_iter()
            .filter_map(|r| match r.message {
                Message::Verdict(v) if v.request == request => {
                    assert!(
                        r.signed.verify(mediator).is_ok(),
                        "verdict not signed by the mediator"
                    );
                    Some((r.at, v))
                }
                _ => None,
            })
            .collect()
    }

    pub async fn wait_verdict(
        &self,
        request: Timestamp,
        mediator: &ordo_core::PublicKey,
    ) -> Result<(Timestamp, Verdict)> {
        wait_for("a verdict", Duration::from_secs(20), || async {
            self.verdicts_for(request, mediator).into_iter().next()
        })
        .await
    }
}

pub struct MediatorNode {
    pub http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ordo_mediator::MediatorError>>,
}

impl MediatorNode {
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

pub struct Domain {
    pub _pg: PgCluster,
    pub _dir: tempfile::TempDir,
    pub _sequencer: oneshot::Sender<()>,
    /// The topology manager, played by the test.
    pub _topology: Member,
    pub p1: Member,
    pub p2: Member,
    pub mediator_id: MemberId,
    pub mediator_key: ordo_core::PublicKey,
    pub mediator_config: MediatorConfig,
    /// The mediator's own database.
    pub db: PgPool,
    pub inbox1: Inbox,
    pub inbox2: Inbox,
    pub alice: PartyId,
    pub bob: PartyId,
}

async fn member(admin: &AdminClient, endpoint: &str, name: &str) -> Result<Member> {
    let key = Arc::new(KeyPair::generate());
    let (id, _) = admin.register_member(name, &key.public()).await?;
    let client = SequencerClient::connect(ClientConfig::new(
        vec![endpoint.into()],
        id.clone(),
        key.clone(),
    ))
    .await?;
    Ok(Member { id, key, client })
}

impl Domain {
    pub async fn start() -> Result<Self> {
        Self::start_with(RESPONSE_TIMEOUT_US).await
    }

    /// A domain whose participant response timeout is `response_timeout_us`.
    pub async fn start_with(response_timeout_us: i64) -> Result<Self> {
        ordo_testkit::init_tracing();
        let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
        let seq_url = pg.create_database("sequencer").await?;
        let med_url = pg.create_database("mediator").await?;

        let seq_config = SequencerConfig {
            node_name: "seq-0".into(),
            database_url: seq_url,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: ADMIN.into(),
            pool_size: 6,
            tail_buffer_events: 1000,
            ..Default::default()
        };
        ordo_sequencer::init(&seq_config).await?;
        let listeners = ordo_sequencer::Listeners::bind(&seq_config).await?;
        let endpoint = format!("http://{}", listeners.grpc.local_addr()?);
        let (seq_stop, seq_rx) = oneshot::channel::<()>();
        tokio::spawn(ordo_sequencer::run(seq_config, listeners, async move {
            let _ = seq_rx.await;
        }));
        let admin = wait_for(
            "the sequencer admin API",
            Duration::from_secs(20),
            || async { AdminClient::connect(endpoint.clone(), ADMIN).await.ok() },
        )
        .await?;

        let topology = member(&admin, &endpoint, "topology").await?;
        let p1 = member(&admin, &endpoint, "p1").await?;
        let p2 = member(&admin, &endpoint, "p2").await?;

        // The mediator: init creates its key and database; the "operator" registers it.
        let dir = tempfile::tempdir()?;
        let mediator_config = MediatorConfig {
            database_url: med_url.clone(),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            key_file: dir.path().join("keys").join("mediator.key"),
            sequencers: vec![endpoint.clone()],
            topology_manager: Some(topology.id.clone()),
            time_proof_interval: Duration::from_millis(100),
            ack_interval: Duration::from_millis(500),
            ..Default::default()
        };
        let init = ordo_mediator::init(&mediator_config).await?;
        assert!(init.created && init.key_created);
        let (registered, _) = admin
            .register_member(init.member.name(), &init.public_key)
            .await?;
        assert_eq!(registered, init.member);

        let alice = PartyId::new("alice")?;
        let bob = PartyId::new("bob")?;
        let participant = |m: &Member, shard: &str| TopologyChange::AddMember {
            member: m.id.clone(),
            public_key: encode_key(&m.key.public()),
            role: MemberRole::Participant {
                shard: shard.into(),
            },
        };
        let changes = vec![
            TopologyChange::AddMember {
                member: topology.id.clone(),
                public_key: encode_key(&topology.key.public()),
                role: MemberRole::TopologyManager,
            },
            participant(&p1, "shard-1"),
            participant(&p2, "shard-2"),
            TopologyChange::AddMember {
                member: init.member.clone(),
                public_key: encode_key(&init.public_key),
                role: MemberRole::Mediator,
            },
            TopologyChange::AllocateParty {
                party: alice.clone(),
                shard: "shard-1".into(),
            },
            TopologyChange::AllocateParty {
                party: bob.clone(),
                shard: "shard-2".into(),
            },
            TopologyChange::SetParameters {
                parameters: DomainParameters {
                    participant_response_timeout_us: response_timeout_us,
                    ..Default::default()
                },
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let serial = i as u64 + 1;
            let content = topology.sign(&Message::Topology(TopologyTransaction { serial, change }));
            topology
                .send(
                    &format!("topology-{serial}"),
                    Recipients::broadcast(),
                    content,
                )
                .await?;
        }

        let db = PgPool::connect(&med_url).await?;
        let inbox1 = collect(&p1);
        let inbox2 = collect(&p2);
        Ok(Self {
            _pg: pg,
            _dir: dir,
            _sequencer: seq_stop,
            _topology: topology,
            p1,
            p2,
            mediator_id: init.member,
            mediator_key: init.public_key,
            mediator_config,
            db,
            inbox1,
            inbox2,
            alice,
            bob,
        })
    }

    /// Starts the mediator and waits until it reports SERVING.
    pub async fn start_mediator(&self) -> Result<MediatorNode> {
        let listeners = ordo_mediator::Listeners::bind(&self.mediator_config).await?;
        let grpc = listeners.grpc.local_addr()?;
        let http = listeners.http.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ordo_mediator::run(
            self.mediator_config.clone(),
            listeners,
            async move {
                let _ = rx.await;
            },
        ));
        wait_serving(grpc).await?;
        Ok(MediatorNode { http, stop, task })
    }

    /// The informee tree of the request `label`, submitted by p1: a view for p1 where
    /// alice confirms and one for p2 where bob confirms (their hashes stand for views made
    /// up from `label`).
    pub fn tree(&self, label: &str) -> InformeeTree {
        let view = |m: &Member, party: &PartyId| {
            ViewCommitment::new(
                m.id.clone(),
                &ordo_core::Hash::of_parts([label.as_bytes(), m.id.as_str().as_bytes()]),
                [party.clone()].into(),
                [party.clone()].into(),
            )
        };
        let views = vec![view(&self.p1, &self.alice), view(&self.p2, &self.bob)];
        let root = merkle::build(&self.p1.id, &views)
            .map(|(_, root)| root.to_hex())
            .unwrap_or_default();
        InformeeTree {
            root_hash: root,
            submitter: self.p1.id.clone(),
            views,
        }
    }

    /// The root hash of the request `label`.
    pub fn root_of(&self, label: &str) -> String {
        self.tree(label).root_hash
    }

    /// p1 submits the confirmation request `label`, whose informee tree names alice and bob
    /// as confirming parties; returns its request id.
    pub async fn request(&self, label: &str) -> Result<Timestamp> {
        let content = self.p1.sign(&Message::InformeeTree(self.tree(label)));
        self.p1
            .send(
                &format!("request-{label}"),
                Recipients::members([self.mediator_id.clone()]),
                content,
            )
            .await
    }

    /// `from` answers for `party` of `request`, naming the root hash of the request
    /// `label`.
    pub async fn respond(
        &self,
        from: &Member,
        request: Timestamp,
        label: &str,
        party: &PartyId,
        outcome: ResponseOutcome,
    ) -> Result<Timestamp> {
        let response = ConfirmationResponse {
            request,
            root_hash: self.root_of(label),
            parties: [party.clone()].into(),
            outcome,
        };
        let content = from.sign(&Message::Response(response));
        let id = format!("response-{}-{}-{}", request.micros(), party, rand_suffix());
        from.send(
            &id,
            Recipients::members([self.mediator_id.clone()]),
            content,
        )
        .await
    }

    /// Waits until the mediator has processed every event up to `at`.
    pub async fn wait_processed(&self, at: Timestamp) -> Result<()> {
        wait_for("the mediator's cursor", Duration::from_secs(20), || async {
            let cursor: i64 = sqlx::query_scalar("SELECT ts FROM mediator_cursor WHERE id = 1")
                .fetch_one(&self.db)
                .await
                .ok()?;
            (cursor >= at.micros()).then_some(())
        })
        .await
    }

    pub async fn verdict_rows(&self, request: Timestamp) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT outcome, decided_at FROM verdicts WHERE request_id = $1")
                .bind(request.micros())
                .fetch_all(&self.db)
                .await?,
        )
    }

    pub async fn answered(&self, request: Timestamp) -> Result<Vec<(String, bool)>> {
        Ok(sqlx::query_as(
            "SELECT party, answered FROM pending_answers WHERE request_id = $1 ORDER BY party",
        )
        .bind(request.micros())
        .fetch_all(&self.db)
        .await?)
    }

    pub async fn outbox_len(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.db)
            .await?)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Records, decoded, every event `m` receives (its signatures are not the point here).
fn collect(m: &Member) -> Inbox {
    let inbox = Inbox::default();
    let mut subscription = m.client.subscribe(Timestamp::MIN);
    let sink = inbox.clone();
    tokio::spawn(async move {
        while let Ok(event) = subscription.next().await {
            for envelope in event.envelopes {
                if let Ok(signed) = SignedMessage::decode(&envelope.content)
                    && let Ok(mut all) = sink.0.lock()
                {
                    all.push(Received {
                        at: event.timestamp,
                        message: signed.message.clone(),
                        signed,
                    });
                }
            }
        }
    });
    inbox
}

pub async fn wait_serving(grpc: SocketAddr) -> Result<()> {
    let endpoint = format!("http://{grpc}");
    wait_for("mediator SERVING", Duration::from_secs(20), || async {
        ordo_node::serving(&endpoint, ordo_mediator::HEALTH_SERVICE)
            .await
            .then_some(())
    })
    .await
    .context("waiting for the mediator to serve")
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

/// A mediator replica running in its own tokio runtime, so that a test can crash it:
/// shutting the runtime down drops every task at once — the lease runtime's too, so the
/// lease is not released and the others must wait for it to expire.
pub struct ReplicaNode {
    pub name: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ordo_mediator::MediatorError>>>,
}

impl ReplicaNode {
    pub async fn serving(&self) -> bool {
        ordo_node::serving(
            &format!("http://{}", self.grpc),
            ordo_mediator::HEALTH_SERVICE,
        )
        .await
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
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

impl Domain {
    /// Starts a replica of the mediator named `name` (same database and key as every
    /// other) with [`short_lease`] timing; it may be active or passive.
    pub async fn start_replica(
        &self,
        name: &str,
        admin_token_file: Option<std::path::PathBuf>,
    ) -> Result<ReplicaNode> {
        let config = MediatorConfig {
            replica: short_lease(name, admin_token_file),
            ..self.mediator_config.clone()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        let bind_config = config.clone();
        let listeners = runtime
            .spawn(async move { ordo_mediator::Listeners::bind(&bind_config).await })
            .await??;
        let grpc = listeners.grpc.local_addr()?;
        let http_addr = listeners.http.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let task = runtime.spawn(ordo_mediator::run(config, listeners, async move {
            let _ = rx.await;
        }));
        let node = ReplicaNode {
            name: name.into(),
            grpc,
            http: http_addr,
            runtime: Some(runtime),
            stop: Some(stop),
            task: Some(task),
        };
        wait_for("the replica's /status", Duration::from_secs(20), || async {
            node.status().await.ok()
        })
        .await?;
        Ok(node)
    }

    /// The mediator's cursor in its database.
    pub async fn cursor(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT ts FROM mediator_cursor WHERE id = 1")
                .fetch_one(&self.db)
                .await?,
        )
    }
}

/// Waits until exactly one of `replicas` is SERVING; returns its index.
pub async fn one_serving(replicas: &[&ReplicaNode]) -> Result<usize> {
    wait_for(
        "exactly one serving replica",
        Duration::from_secs(20),
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
