use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use ordo_core::{KeyPair, MemberId};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_admin_service_client::SequencerAdminServiceClient;
use ordo_proto::sequencer::v1::sequencer_auth_service_client::SequencerAuthServiceClient;
use ordo_proto::sequencer::v1::sequencer_service_client::SequencerServiceClient;
use ordo_sequencer::{Listeners, SequencerConfig, SequencerError};
use ordo_testkit::{PgCluster, PgOptions};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const ADMIN: &str = "admin-secret";
pub const FAR: i64 = i64::MAX / 2;

pub struct Node {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), SequencerError>>>,
}

impl Node {
    /// A handle that only knows the address (to use from spawned tasks).
    pub fn detached(grpc: SocketAddr) -> Self {
        Self {
            grpc,
            http: grpc,
            stop: None,
            task: None,
        }
    }

    pub async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.grpc))?
            .connect()
            .await?)
    }

    pub async fn seq(&self) -> Result<SequencerServiceClient<Channel>> {
        Ok(SequencerServiceClient::new(self.channel().await?))
    }

    pub async fn admin(&self) -> Result<SequencerAdminServiceClient<Channel>> {
        Ok(SequencerAdminServiceClient::new(self.channel().await?))
    }

    /// Stops the node and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), SequencerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(SequencerError::Internal(e.to_string()))),
            None => Ok(()),
        }
    }
}

pub struct Net {
    pub _pg: PgCluster,
    pub url: String,
    pub nodes: Vec<Node>,
}

pub fn config(url: &str, name: &str) -> SequencerConfig {
    SequencerConfig {
        node_name: name.into(),
        database_url: url.into(),
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: ADMIN.into(),
        max_request_bytes: 64 * 1024,
        pool_size: 6,
        tail_buffer_events: 1000,
        // The tests' members broadcast too.
        broadcasters: vec!["*".into()],
        ..Default::default()
    }
}

pub async fn start_pg(db: &str) -> Result<(PgCluster, String)> {
    ordo_testkit::init_tracing();
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let url = pg.create_database(db).await?;
    Ok((pg, url))
}

pub async fn start_node(url: &str, name: &str) -> Result<Node> {
    start_node_with(config(url, name)).await
}

pub async fn start_node_with(cfg: SequencerConfig) -> Result<Node> {
    let listeners = Listeners::bind(&cfg).await?;
    let grpc = listeners.grpc.local_addr()?;
    let http = listeners.http.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(ordo_sequencer::run(cfg, listeners, async move {
        let _ = rx.await;
    }));
    let node = Node {
        grpc,
        http,
        stop: Some(tx),
        task: Some(task),
    };
    wait_serving(&node).await?;
    Ok(node)
}

/// Waits until the node's health service says SERVING for the sequencer service.
pub async fn wait_serving(node: &Node) -> Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    ordo_testkit::wait_for("node SERVING", Duration::from_secs(20), || async {
        let ch = node.channel().await.ok()?;
        let resp = HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: ordo_sequencer::HEALTH_SERVICE.into(),
            })
            .await
            .ok()?;
        (resp.into_inner().status == ServingStatus::Serving as i32).then_some(())
    })
    .await
}

pub async fn start_net(db: &str, nodes: usize) -> Result<Net> {
    let (pg, url) = start_pg(db).await?;
    ordo_sequencer::init(&config(&url, "init")).await?;
    let mut started = Vec::new();
    for i in 0..nodes {
        started.push(start_node(&url, &format!("seq-{i}")).await?);
    }
    Ok(Net {
        _pg: pg,
        url,
        nodes: started,
    })
}

pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

pub struct Member {
    pub id: String,
    pub key: KeyPair,
    pub token: String,
}

/// Registers `name` through the admin API of `node` and authenticates it there.
pub async fn member(node: &Node, name: &str) -> Result<Member> {
    let key = KeyPair::generate();
    let resp = node
        .admin()
        .await?
        .register_member(with_token(
            pb::RegisterMemberRequest {
                name: name.into(),
                public_key: key.public().as_bytes().to_vec(),
            },
            ADMIN,
        ))
        .await?
        .into_inner();
    assert!(resp.created);
    assert_eq!(resp.member, MemberId::new(name, &key.public())?.to_string());
    let token = authenticate(node, &resp.member, &key).await?;
    Ok(Member {
        id: resp.member,
        key,
        token,
    })
}

pub async fn authenticate(node: &Node, id: &str, key: &KeyPair) -> Result<String> {
    let mut auth = SequencerAuthServiceClient::new(node.channel().await?);
    let ch = auth
        .challenge(pb::ChallengeRequest { member: id.into() })
        .await?
        .into_inner();
    let sig = key.sign(&ordo_sequencer::auth::signed_message(&ch.challenge));
    let tok = auth
        .authenticate(pb::AuthenticateRequest {
            member: id.into(),
            challenge: ch.challenge,
            signature: sig.to_bytes().to_vec(),
        })
        .await?
        .into_inner();
    Ok(tok.token)
}

pub fn submission(id: &str, to: &[&str], content: &[u8]) -> pb::SubmissionRequest {
    pb::SubmissionRequest {
        sender: String::new(),
        message_id: id.into(),
        max_sequencing_time: FAR,
        envelopes: vec![pb::Envelope {
            recipients: Some(pb::Recipients {
                members: to.iter().map(|s| s.to_string()).collect(),
                broadcast: false,
            }),
            content: content.to_vec(),
        }],
    }
}

pub async fn send(
    node: &Node,
    m: &Member,
    req: pb::SubmissionRequest,
) -> Result<pb::SendResponse, tonic::Status> {
    let mut c = node
        .seq()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    c.send(with_token(req, &m.token))
        .await
        .map(|r| r.into_inner())
}

/// `m`'s acknowledgement of `timestamp`, signed with its key as the client signs it.
pub fn signed_ack(m: &Member, timestamp: i64) -> pb::AcknowledgeRequest {
    let signature = m
        .key
        .sign(&ordo_sequencer::auth::ack_message(&m.id, timestamp));
    pb::AcknowledgeRequest {
        member: m.id.clone(),
        timestamp,
        signature: signature.to_bytes().to_vec(),
    }
}

/// Sends `req` with `m`'s token.
pub async fn acknowledge(
    node: &Node,
    m: &Member,
    req: pb::AcknowledgeRequest,
) -> Result<pb::AcknowledgeResponse, tonic::Status> {
    let mut c = node
        .seq()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    c.acknowledge(with_token(req, &m.token))
        .await
        .map(|r| r.into_inner())
}

pub async fn status(node: &Node) -> Result<pb::StatusResponse> {
    Ok(node
        .admin()
        .await?
        .status(with_token(pb::StatusRequest {}, ADMIN))
        .await?
        .into_inner())
}

/// Subscribes and collects `n` events (bounded by a deadline).
pub async fn collect(
    node: &Node,
    m: &Member,
    after: i64,
    n: usize,
) -> Result<Vec<pb::SequencedEvent>> {
    let mut c = node.seq().await?;
    let mut stream = c
        .subscribe(with_token(
            pb::SubscribeRequest {
                member: m.id.clone(),
                after_timestamp: after,
                // Counts events only: no heartbeats.
                heartbeat_interval_ms: 0,
            },
            &m.token,
        ))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .with_context(|| format!("timed out after {} of {n} events", out.len()))??;
        match next {
            Some(ev) => out.push(ev),
            None => anyhow::bail!("stream ended after {} of {n} events", out.len()),
        }
    }
    Ok(out)
}

/// Checks strictly increasing timestamps and an unbroken previous-timestamp chain.
pub fn assert_chain(events: &[pb::SequencedEvent], first_previous: i64) {
    let mut prev = first_previous;
    for e in events {
        assert_eq!(
            e.previous_timestamp, prev,
            "chain broken at {}",
            e.timestamp
        );
        assert!(e.timestamp > prev, "not increasing at {}", e.timestamp);
        prev = e.timestamp;
    }
}
