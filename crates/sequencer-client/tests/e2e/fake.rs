//! A tiny in-memory stand-in for the sequencer nodes: one shared total order (the
//! "database") and any number of gRPC nodes over it, each with its own health status and
//! fault hooks. Just enough of the server's contract to exercise the client, heartbeats on
//! idle subscriptions included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::Stream;
use ordo_core::{KeyPair, MemberId, PublicKey, Signature, Timestamp};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::send_result::Outcome;
use ordo_proto::sequencer::v1::sequencer_admin_service_server::{
    SequencerAdminService, SequencerAdminServiceServer,
};
use ordo_proto::sequencer::v1::sequencer_auth_service_server::{
    SequencerAuthService, SequencerAuthServiceServer,
};
use ordo_proto::sequencer::v1::sequencer_service_server::{
    SequencerService, SequencerServiceServer,
};
use ordo_sequencer_client::{SEQUENCER_SERVICE, ack_message, auth_message};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone, Debug)]
pub struct Event {
    pub timestamp: i64,
    pub sender: String,
    pub message_id: String,
    pub envelopes: Vec<pb::Envelope>,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    sequenced: HashMap<(String, String), i64>,
    members: HashMap<String, PublicKey>,
    challenges: HashMap<String, Vec<u8>>,
    tokens: HashMap<String, String>,
    issued: usize,
    /// Each member's latest acknowledgement, accepted only when signed by its key.
    acknowledged: HashMap<String, i64>,
}

/// The shared order plus fault hooks that apply to every node.
#[derive(Default)]
pub struct Ledger {
    state: Mutex<State>,
    appended: watch::Sender<usize>,
    /// Apply the next N SendBatch calls, then answer UNAVAILABLE (a lost answer).
    pub lose_answers: AtomicUsize,
    /// Answer every SendBatch with UNAVAILABLE without applying it.
    pub refuse_sends: AtomicBool,
    /// Streams silently drop the event with this timestamp (a forged gap).
    pub drop_event: Mutex<Option<i64>>,
    /// The next node to sequence a SendBatch freezes before answering it.
    pub freeze_after_sequencing: AtomicBool,
}

impl Ledger {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn register(&self, name: &str, key: &KeyPair) -> MemberId {
        let id = MemberId::new(name, &key.public()).unwrap();
        self.state
            .lock()
            .members
            .insert(id.to_string(), key.public());
        id
    }

    pub fn events(&self) -> Vec<Event> {
        self.state.lock().events.clone()
    }

    /// What `member` acknowledged, 0 when nothing.
    pub fn acknowledged(&self, member: &MemberId) -> i64 {
        let s = self.state.lock();
        s.acknowledged.get(member.as_str()).copied().unwrap_or(0)
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.lock().issued
    }

    /// Forgets every token: the next call with an old one is UNAUTHENTICATED.
    pub fn revoke_tokens(&self) {
        self.state.lock().tokens.clear();
    }

    fn member_of(&self, request_token: Option<&str>) -> Result<String, Status> {
        let token = request_token
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        self.state
            .lock()
            .tokens
            .get(token)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown or expired token"))
    }

    fn sequence(&self, sender: &str, r: &pb::SubmissionRequest) -> pb::SendResult {
        let mut s = self.state.lock();
        let key = (sender.to_string(), r.message_id.clone());
        if let Some(&ts) = s.sequenced.get(&key) {
            return sequenced(ts, true);
        }
        for e in &r.envelopes {
            for m in &e
                .recipients
                .as_ref()
                .map(|r| r.members.clone())
                .unwrap_or_default()
            {
                if !s.members.contains_key(m) {
                    return error(Code::NotFound, format!("unknown recipient {m}"));
                }
            }
        }
        let now = Timestamp::from_system_time(std::time::SystemTime::now()).micros();
        if r.max_sequencing_time < now {
            return error(
                Code::FailedPrecondition,
                "max_sequencing_time passed".into(),
            );
        }
        let ts = s.events.last().map_or(now, |e| (e.timestamp + 1).max(now));
        s.events.push(Event {
            timestamp: ts,
            sender: sender.to_string(),
            message_id: r.message_id.clone(),
            envelopes: r.envelopes.clone(),
        });
        s.sequenced.insert(key, ts);
        let len = s.events.len();
        drop(s);
        self.appended.send_replace(len);
        sequenced(ts, false)
    }

    /// The first event after `after` addressed to `member`, with only its envelopes.
    fn next_for(&self, member: &str, after: i64) -> Option<pb::SequencedEvent> {
        let s = self.state.lock();
        s.events
            .iter()
            .filter(|e| e.timestamp > after)
            .find_map(|e| {
                let envelopes: Vec<_> = e
                    .envelopes
                    .iter()
                    .filter(|env| {
                        env.recipients
                            .as_ref()
                            .is_some_and(|r| r.broadcast || r.members.iter().any(|m| m == member))
                    })
                    .cloned()
                    .collect();
                (!envelopes.is_empty()).then(|| pb::SequencedEvent {
                    timestamp: e.timestamp,
                    previous_timestamp: 0,
                    sender: e.sender.clone(),
                    message_id: e.message_id.clone(),
                    envelopes,
                    heartbeat: None,
                })
            })
    }
}

fn sequenced(timestamp: i64, duplicate: bool) -> pb::SendResult {
    pb::SendResult {
        outcome: Some(Outcome::Sequenced(pb::SendResponse {
            timestamp,
            duplicate,
        })),
    }
}

fn error(code: Code, message: String) -> pb::SendResult {
    pb::SendResult {
        outcome: Some(Outcome::Error(pb::SendError {
            code: code as i32,
            message,
        })),
    }
}

/// One node's switches.
struct Control {
    serving: watch::Sender<bool>,
    killed: watch::Sender<bool>,
    /// Like SIGSTOP: no call, health check or stream message is answered until thawed;
    /// the connections stay open.
    frozen: watch::Sender<bool>,
    /// Sends heartbeats on idle subscriptions that ask for them.
    heartbeats: AtomicBool,
    /// How long each SendBatch takes before it is sequenced (a busy node).
    send_delay: Mutex<Duration>,
    /// SendBatch calls received, answered or not.
    batch_calls: AtomicUsize,
    /// Health checks (not Watch) received, answered or not.
    health_checks: AtomicUsize,
    batch_sizes: Mutex<Vec<usize>>,
}

#[derive(Clone)]
struct Node {
    ledger: Arc<Ledger>,
    control: Arc<Control>,
}

impl Node {
    /// Waits while the node is frozen.
    async fn thawed(&self) {
        let _ = self.control.frozen.subscribe().wait_for(|f| !*f).await;
    }

    fn check_serving(&self) -> Result<(), Status> {
        if *self.control.serving.borrow() {
            Ok(())
        } else {
            Err(Status::unavailable("node is draining"))
        }
    }

    fn member<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.ledger.member_of(header)
    }
}

#[tonic::async_trait]
impl SequencerAuthService for Node {
    async fn challenge(
        &self,
        request: Request<pb::ChallengeRequest>,
    ) -> Result<Response<pb::ChallengeResponse>, Status> {
        self.thawed().await;
        let member = request.into_inner().member;
        let mut s = self.ledger.state.lock();
        if !s.members.contains_key(&member) {
            return Err(Status::not_found(format!("unknown member {member}")));
        }
        let challenge: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        s.challenges.insert(member, challenge.clone());
        Ok(Response::new(pb::ChallengeResponse {
            challenge,
            expires_at: 0,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        self.thawed().await;
        let r = request.into_inner();
        let mut s = self.ledger.state.lock();
        let expected = s.challenges.remove(&r.member);
        let key = s.members.get(&r.member).cloned();
        let (Some(challenge), Some(key)) = (expected, key) else {
            return Err(Status::unauthenticated("no outstanding challenge"));
        };
        let signature = Signature::from_bytes(&r.signature)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if challenge != r.challenge || key.verify(&auth_message(&challenge), &signature).is_err() {
            return Err(Status::unauthenticated("bad signature"));
        }
        s.issued += 1;
        let token = format!("token-{}", s.issued);
        s.tokens.insert(token.clone(), r.member);
        let expires_at = Timestamp::from_system_time(std::time::SystemTime::now())
            .plus(Duration::from_secs(600));
        Ok(Response::new(pb::AuthenticateResponse {
            token,
            expires_at: expires_at.micros(),
        }))
    }
}

#[tonic::async_trait]
impl SequencerService for Node {
    async fn send(
        &self,
        _request: Request<pb::SubmissionRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        Err(Status::unimplemented("the client uses SendBatch"))
    }

    async fn send_batch(
        &self,
        request: Request<pb::SendBatchRequest>,
    ) -> Result<Response<pb::SendBatchResponse>, Status> {
        // Counted before anything else: a call to a draining or frozen node counts too.
        self.control.batch_calls.fetch_add(1, Ordering::SeqCst);
        self.thawed().await;
        self.check_serving()?;
        let sender = self.member(&request)?;
        if self.ledger.refuse_sends.load(Ordering::SeqCst) {
            return Err(Status::unavailable("refusing sends"));
        }
        let requests = request.into_inner().requests;
        self.control.batch_sizes.lock().push(requests.len());
        let delay = *self.control.send_delay.lock();
        tokio::time::sleep(delay).await;
        let results = requests
            .iter()
            .map(|r| self.ledger.sequence(&sender, r))
            .collect();
        if self
            .ledger
            .freeze_after_sequencing
            .swap(false, Ordering::SeqCst)
        {
            self.control.frozen.send_replace(true);
            self.thawed().await;
        }
        let lose = self
            .ledger
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if lose.is_ok() {
            return Err(Status::unavailable("answer lost"));
        }
        Ok(Response::new(pb::SendBatchResponse { results }))
    }

    type SubscribeStream = BoxStream<pb::SequencedEvent>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.thawed().await;
        self.check_serving()?;
        let member = self.member(&request)?;
        let request = request.into_inner();
        // No heartbeats unasked: a day between them is as good as none in a test.
        let heartbeat = match request.heartbeat_interval_ms {
            0 => Duration::from_secs(86_400),
            ms => Duration::from_millis(ms.into()),
        };
        let state = (
            self.clone(),
            member,
            request.after_timestamp,
            self.ledger.appended.subscribe(),
        );
        let stream = futures::stream::unfold(Some(state), move |state| async move {
            let (node, member, mut previous, mut appended) = state?;
            let mut killed = node.control.killed.subscribe();
            let mut serving = node.control.serving.subscribe();
            let beat = tokio::time::sleep(heartbeat);
            tokio::pin!(beat);
            loop {
                appended.borrow_and_update();
                if let Some(mut event) = node.ledger.next_for(&member, previous) {
                    let skip = *node.ledger.drop_event.lock() == Some(event.timestamp);
                    event.previous_timestamp = previous;
                    previous = event.timestamp;
                    if skip {
                        continue;
                    }
                    node.thawed().await;
                    return Some((Ok(event), Some((node, member, previous, appended))));
                }
                let beat_due = tokio::select! {
                    _ = appended.changed() => false,
                    _ = killed.wait_for(|k| *k) => return None,
                    _ = serving.wait_for(|s| !*s) => {
                        return Some((Err(Status::unavailable("node is draining")), None));
                    }
                    () = &mut beat => true,
                };
                if beat_due && !node.control.heartbeats.load(Ordering::SeqCst) {
                    // Switched off (an older node): wait another interval.
                    beat.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                    continue;
                }
                if beat_due {
                    node.thawed().await;
                    let beat = pb::SequencedEvent {
                        heartbeat: Some(pb::SubscriptionHeartbeat {
                            caught_up_to: previous,
                        }),
                        ..Default::default()
                    };
                    return Some((Ok(beat), Some((node, member, previous, appended))));
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        self.thawed().await;
        self.check_serving()?;
        let member = self.member(&request)?;
        let r = request.into_inner();
        if r.member != member {
            return Err(Status::permission_denied("acknowledging as another member"));
        }
        let mut s = self.ledger.state.lock();
        let key = s.members.get(&member).copied();
        let signature = Signature::from_bytes(&r.signature).ok();
        let signed = key
            .zip(signature)
            .is_some_and(|(key, sig)| key.verify(&ack_message(&member, r.timestamp), &sig).is_ok());
        if !signed {
            return Err(Status::unauthenticated(
                "acknowledgement not signed by the member",
            ));
        }
        let acknowledged = s.acknowledged.entry(member).or_default();
        *acknowledged = (*acknowledged).max(r.timestamp);
        Ok(Response::new(pb::AcknowledgeResponse {}))
    }

    async fn get_time(
        &self,
        request: Request<pb::GetTimeRequest>,
    ) -> Result<Response<pb::GetTimeResponse>, Status> {
        self.thawed().await;
        self.check_serving()?;
        self.member(&request)?;
        let head = self.ledger.events().last().map_or(0, |e| e.timestamp);
        Ok(Response::new(pb::GetTimeResponse {
            head_timestamp: head,
            database_time: 0,
        }))
    }
}

pub const ADMIN_TOKEN: &str = "admin-secret";

impl Node {
    fn check_admin<T>(request: &Request<T>) -> Result<(), Status> {
        let header = request.metadata().get("authorization");
        if header.and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {ADMIN_TOKEN}")) {
            Ok(())
        } else {
            Err(Status::unauthenticated("bad admin token"))
        }
    }

    fn member_infos(&self) -> Vec<pb::MemberInfo> {
        let s = self.ledger.state.lock();
        let mut members: Vec<_> = s
            .members
            .iter()
            .map(|(member, key)| pb::MemberInfo {
                member: member.clone(),
                public_key: key.as_bytes().to_vec(),
                enabled: true,
                registered_at: 1,
                acknowledged: s.acknowledged.get(member).copied().unwrap_or(0),
            })
            .collect();
        members.sort_by(|a, b| a.member.cmp(&b.member));
        members
    }
}

#[tonic::async_trait]
impl SequencerAdminService for Node {
    async fn register_member(
        &self,
        request: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::RegisterMemberResponse>, Status> {
        Self::check_admin(&request)?;
        let r = request.into_inner();
        let key = PublicKey::from_bytes(&r.public_key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let member = MemberId::new(&r.name, &key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .to_string();
        let created = self
            .ledger
            .state
            .lock()
            .members
            .insert(member.clone(), key)
            .is_none();
        Ok(Response::new(pb::RegisterMemberResponse {
            member,
            created,
        }))
    }

    async fn disable_member(
        &self,
        request: Request<pb::DisableMemberRequest>,
    ) -> Result<Response<pb::DisableMemberResponse>, Status> {
        Self::check_admin(&request)?;
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Self::check_admin(&request)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: self.member_infos(),
        }))
    }

    async fn prune(
        &self,
        request: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        Self::check_admin(&request)?;
        let lagging = self.member_infos().into_iter().map(|m| m.member).collect();
        Ok(Response::new(pb::PruneResponse {
            pruned_events: 0,
            lower_bound: request.into_inner().up_to,
            lagging_members: lagging,
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Self::check_admin(&request)?;
        Ok(Response::new(pb::StatusResponse {
            node: "fake".into(),
            head_timestamp: self.ledger.events().last().map_or(0, |e| e.timestamp),
            lower_bound: 0,
            events: self.ledger.events().len() as i64,
            subscriptions: 0,
            members: self.member_infos(),
        }))
    }
}

#[tonic::async_trait]
impl Health for Node {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.control.health_checks.fetch_add(1, Ordering::SeqCst);
        self.thawed().await;
        Ok(Response::new(status_of(*self.control.serving.borrow())))
    }

    type WatchStream = BoxStream<HealthCheckResponse>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if request.into_inner().service != SEQUENCER_SERVICE {
            return Err(Status::not_found("unknown service"));
        }
        let serving = self.control.serving.subscribe();
        let killed = self.control.killed.subscribe();
        let stream = futures::stream::unfold(
            (serving, killed, true),
            |(mut serving, mut killed, first)| async move {
                if !first {
                    tokio::select! {
                        changed = serving.changed() => changed.ok()?,
                        _ = killed.wait_for(|k| *k) => return None,
                    }
                }
                let status = status_of(*serving.borrow_and_update());
                Some((Ok(status), (serving, killed, false)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

fn status_of(serving: bool) -> HealthCheckResponse {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    HealthCheckResponse {
        status: status as i32,
    }
}

/// A running fake node.
pub struct FakeNode {
    pub addr: SocketAddr,
    pub url: String,
    control: Arc<Control>,
    server: JoinHandle<()>,
}

impl FakeNode {
    pub async fn start(ledger: &Arc<Ledger>) -> Self {
        Self::start_at(ledger, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_at(ledger: &Arc<Ledger>, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            serving: watch::Sender::new(true),
            killed: watch::Sender::new(false),
            frozen: watch::Sender::new(false),
            heartbeats: AtomicBool::new(true),
            send_delay: Mutex::new(Duration::ZERO),
            batch_calls: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            batch_sizes: Mutex::new(Vec::new()),
        });
        let node = Node {
            ledger: ledger.clone(),
            control: control.clone(),
        };
        let mut killed = control.killed.subscribe();
        let shutdown = async move {
            let _ = killed.wait_for(|k| *k).await;
        };
        let server = tonic::transport::Server::builder()
            .add_service(HealthServer::new(node.clone()))
            .add_service(SequencerAuthServiceServer::new(node.clone()))
            .add_service(SequencerAdminServiceServer::new(node.clone()))
            .add_service(SequencerServiceServer::new(node))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown);
        let server = tokio::spawn(async move {
            let _ = server.await;
        });
        Self {
            addr,
            url: format!("http://{addr}"),
            control,
            server,
        }
    }

    pub fn set_serving(&self, serving: bool) {
        self.control.serving.send_replace(serving);
    }

    /// Stops answering anything (SIGSTOP), or answers again (SIGCONT); the connections
    /// stay open either way.
    pub fn set_frozen(&self, frozen: bool) {
        self.control.frozen.send_replace(frozen);
    }

    /// Whether idle subscriptions get the heartbeats they ask for (an older node: none).
    pub fn set_heartbeats(&self, on: bool) {
        self.control.heartbeats.store(on, Ordering::SeqCst);
    }

    /// Makes every SendBatch take `delay` before it is sequenced (health checks still
    /// answer at once: busy, not frozen).
    pub fn set_send_delay(&self, delay: Duration) {
        *self.control.send_delay.lock() = delay;
    }

    pub fn health_checks(&self) -> usize {
        self.control.health_checks.load(Ordering::SeqCst)
    }

    pub fn batch_calls(&self) -> usize {
        self.control.batch_calls.load(Ordering::SeqCst)
    }

    pub fn batch_sizes(&self) -> Vec<usize> {
        self.control.batch_sizes.lock().clone()
    }

    /// NOT_SERVING, then end every stream and stop the server (its port is free again).
    pub async fn kill(self) {
        self.set_serving(false);
        self.control.killed.send_replace(true);
        let abort = self.server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
