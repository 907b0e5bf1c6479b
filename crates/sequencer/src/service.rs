//! The member-facing gRPC services: SequencerService and SequencerAuthService. Thin
//! adapters: validate, convert, hand over to the writer / subscriptions / store.

use std::sync::Arc;

use ordo_core::{Clock, PublicKey, Signature, SystemClock};
use ordo_proto::convert;
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_auth_service_server::SequencerAuthService;
use ordo_proto::sequencer::v1::sequencer_service_server::SequencerService;
use prost::Message;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::auth::{self, Authenticator};
use crate::config::SequencerConfig;
use crate::error::SequencerError;
use crate::limits::Limits;
use crate::registry::Registry;
use crate::store::{self, MemberRow, NewEvent};
use crate::subscription::{EventStream, Subscriptions, heartbeat_interval};
use crate::tail::{Tail, encode_payload};
use crate::writer::WriterHandle;

/// Refuses a call for `member` (`name::fingerprint`) on a connection whose client
/// certificate does not name that member: a participant's certificate cannot act for
/// another member, even with its token or key. Connections without a certificate (plain
/// text, or TLS with optional client authentication) are bound by the token alone.
fn certified_for<T>(req: &Request<T>, member: &str) -> Result<(), SequencerError> {
    let Some(conn) = ordo_node::tls::conn_info(req) else {
        return Ok(());
    };
    let Some(peer) = &conn.peer else {
        return Ok(());
    };
    let name = member.split_once("::").map_or(member, |(name, _)| name);
    if peer.is_member(name) {
        return Ok(());
    }
    let remote = conn.remote;
    tracing::warn!(
        member,
        peer = %peer,
        remote = ?remote,
        "refused: the client certificate does not name the member the call is for"
    );
    Err(SequencerError::PermissionDenied(format!(
        "the client certificate ({peer}) does not name member {name}: a certificate acts only for the member it names"
    )))
}

/// State shared by the node's gRPC services.
pub struct Shared {
    pub config: SequencerConfig,
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub auth: Authenticator,
    pub writer: WriterHandle,
    pub tail: Arc<Tail>,
    pub subscriptions: Subscriptions,
    pub limits: Limits,
}

fn now() -> i64 {
    SystemClock.now().micros()
}

impl Shared {
    /// The enabled member the request's bearer token was issued to.
    pub async fn authenticate<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Arc<MemberRow>, SequencerError> {
        Ok(self.authenticate_until(req).await?.0)
    }

    /// [`Shared::authenticate`], and when the token expires (microseconds): a stream
    /// opened with it ends then.
    pub async fn authenticate_until<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(Arc<MemberRow>, i64), SequencerError> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let (member, expires_at) = self.auth.verify_token(auth::bearer(header)?, now())?;
        certified_for(req, &member)?;
        match self.registry.get(&member).await? {
            Some(m) if m.enabled => Ok((m, expires_at)),
            _ => Err(SequencerError::Unauthenticated(format!(
                "member {member} is not registered or disabled"
            ))),
        }
    }

    /// Validates one submission of `sender` into a row to write; nothing is written here.
    async fn validate(
        &self,
        sender: &MemberRow,
        req: pb::SubmissionRequest,
    ) -> Result<NewEvent, SequencerError> {
        let size = req.encoded_len();
        if size > self.config.max_request_bytes {
            return Err(SequencerError::ResourceExhausted(format!(
                "submission is {size} bytes, more than max_request_bytes {}",
                self.config.max_request_bytes
            )));
        }
        if !req.sender.is_empty() && req.sender != sender.member_id {
            return Err(SequencerError::PermissionDenied(format!(
                "sender {} is not the authenticated member {}: a member sends only as itself",
                req.sender, sender.member_id
            )));
        }
        let envelopes_pb = req.envelopes.clone();
        let (_, sub) = convert::submission_from_pb(req)?;
        if sub.message_id.is_empty() {
            return Err(SequencerError::InvalidArgument(
                "invalid message_id: empty".into(),
            ));
        }
        if sub.envelopes.is_empty() {
            return Err(SequencerError::InvalidArgument(
                "invalid envelopes: none".into(),
            ));
        }
        let mut broadcast = false;
        let mut members = Vec::new();
        for (i, env) in sub.envelopes.iter().enumerate() {
            if env.recipients.is_empty() {
                return Err(SequencerError::InvalidArgument(format!(
                    "invalid envelopes[{i}].recipients: empty"
                )));
            }
            broadcast |= env.recipients.broadcast;
            members.extend(env.recipients.members.iter().map(ToString::to_string));
        }
        if broadcast && !self.config.may_broadcast(&sender.member_id) {
            return Err(SequencerError::PermissionDenied(format!(
                "member {} may not broadcast: a broadcast reaches every member, and only {:?} \
                 (the sequencer's `broadcasters`) may send one",
                sender.member_id, self.config.broadcasters
            )));
        }
        let recipients = self
            .registry
            .resolve(members.iter().map(String::as_str))
            .await?;
        let mst = sub.max_sequencing_time.micros();
        let earliest = (self.tail.head() + 1).max(self.tail.db_now());
        if mst < earliest {
            return Err(SequencerError::FailedPrecondition(format!(
                "max_sequencing_time {mst} ({}) is already past: the sequencer's time is {earliest} ({})",
                sub.max_sequencing_time,
                ordo_core::Timestamp(earliest)
            )));
        }
        Ok(NewEvent {
            sender: sender.idx,
            message_id: sub.message_id,
            max_sequencing_time: mst,
            recipients: if broadcast { Vec::new() } else { recipients },
            broadcast,
            payload: encode_payload(&sender.member_id, envelopes_pb),
        })
    }
}

fn count_rejected(shared: &Shared, e: &SequencerError) {
    let outcome = format!("{:?}", e.code()).to_lowercase();
    metrics::counter!("ordo_sequencer_sends_total", "node" => shared.config.node_name.clone(), "outcome" => outcome)
        .increment(1);
}

pub struct SequencerApi(pub Arc<Shared>);

#[tonic::async_trait]
impl SequencerService for SequencerApi {
    async fn send(
        &self,
        req: Request<pb::SubmissionRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let s = &self.0;
        let sender = s.authenticate(&req).await?;
        s.limits
            .sends(&sender, 1, req.get_ref().encoded_len())
            .await?;
        let event = s
            .validate(&sender, req.into_inner())
            .await
            .inspect_err(|e| count_rejected(s, e))?;
        let result = s.writer.submit(vec![event]).await.pop();
        let sequenced = result
            .unwrap_or_else(|| Err(SequencerError::Internal("writer gave no answer".into())))?;
        Ok(Response::new(convert::sequenced_to_pb(sequenced)))
    }

    async fn send_batch(
        &self,
        req: Request<pb::SendBatchRequest>,
    ) -> Result<Response<pb::SendBatchResponse>, Status> {
        let s = &self.0;
        let sender = s.authenticate(&req).await?;
        let requests = &req.get_ref().requests;
        let bytes = requests.iter().map(Message::encoded_len).sum();
        s.limits.sends(&sender, requests.len(), bytes).await?;
        let mut results: Vec<Option<pb::SendResult>> = Vec::new();
        let mut valid = Vec::new();
        for r in req.into_inner().requests {
            match s.validate(&sender, r).await {
                Ok(ev) => {
                    valid.push((results.len(), ev));
                    results.push(None);
                }
                Err(e) => {
                    count_rejected(s, &e);
                    results.push(Some(error_result(e)));
                }
            }
        }
        let (slots, events): (Vec<usize>, Vec<NewEvent>) = valid.into_iter().unzip();
        for (slot, res) in slots.into_iter().zip(s.writer.submit(events).await) {
            results[slot] = Some(match res {
                Ok(seq) => pb::SendResult {
                    outcome: Some(pb::send_result::Outcome::Sequenced(
                        convert::sequenced_to_pb(seq),
                    )),
                },
                Err(e) => error_result(e),
            });
        }
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| error_result(SequencerError::Internal("no result".into())))
            })
            .collect();
        Ok(Response::new(pb::SendBatchResponse { results }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let s = &self.0;
        let (member, expires_at) = s.authenticate_until(&req).await?;
        let r = req.into_inner();
        if r.member != member.member_id {
            return Err(SequencerError::PermissionDenied(format!(
                "cannot subscribe as {}: authenticated as {}; a member subscribes only as itself",
                r.member, member.member_id
            ))
            .into());
        }
        let heartbeat = heartbeat_interval(r.heartbeat_interval_ms);
        let stream = s
            .subscriptions
            .start(member, r.after_timestamp, heartbeat, expires_at)
            .await?;
        Ok(Response::new(stream))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let s = &self.0;
        let member = s.authenticate(&req).await?;
        let r = req.into_inner();
        if r.member != member.member_id {
            return Err(SequencerError::PermissionDenied(format!(
                "cannot acknowledge as {}: authenticated as {}",
                r.member, member.member_id
            ))
            .into());
        }
        let invalid_timestamp = || {
            SequencerError::InvalidArgument(format!(
                "invalid timestamp: {} is after the sequencer's head (or negative)",
                r.timestamp
            ))
        };
        if r.timestamp < 0 {
            return Err(invalid_timestamp().into());
        }
        // The token alone does not move the pruning bound: the member's key must sign it.
        // Signature checks are CPU work: keep them off the async workers.
        let (signed, timestamp) = (member.clone(), r.timestamp);
        let signature = r.signature;
        let signature = tokio::task::spawn_blocking(move || {
            auth::verify_ack(&signed.public_key, &signed.member_id, timestamp, &signature)
                .map(|()| signature)
        })
        .await
        .map_err(|e| SequencerError::Internal(e.to_string()))??;
        if !store::acknowledge(&s.pool, member.idx, r.timestamp, &signature).await? {
            return Err(invalid_timestamp().into());
        }
        Ok(Response::new(pb::AcknowledgeResponse {}))
    }

    async fn get_time(
        &self,
        req: Request<pb::GetTimeRequest>,
    ) -> Result<Response<pb::GetTimeResponse>, Status> {
        let s = &self.0;
        s.authenticate(&req).await?;
        let (head, now) = store::time(&s.pool).await?;
        Ok(Response::new(pb::GetTimeResponse {
            head_timestamp: head,
            database_time: now,
        }))
    }
}

fn error_result(e: SequencerError) -> pb::SendResult {
    pb::SendResult {
        outcome: Some(pb::send_result::Outcome::Error(pb::SendError {
            code: e.code() as i32,
            message: e.to_string(),
        })),
    }
}

pub struct AuthApi(pub Arc<Shared>);

#[tonic::async_trait]
impl SequencerAuthService for AuthApi {
    async fn challenge(
        &self,
        req: Request<pb::ChallengeRequest>,
    ) -> Result<Response<pb::ChallengeResponse>, Status> {
        let s = &self.0;
        s.limits.unauthenticated(&req).await?;
        certified_for(&req, &req.get_ref().member)?;
        let member = req.into_inner().member;
        convert::member("member", &member).map_err(SequencerError::from)?;
        s.registry.enabled(&member, "member").await?;
        let expires_at = ordo_core::Timestamp(now())
            .plus(s.config.challenge_ttl)
            .micros();
        let nonce: [u8; 16] = rand::random();
        Ok(Response::new(pb::ChallengeResponse {
            challenge: s.auth.challenge(&member, nonce, expires_at),
            expires_at,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let s = &self.0;
        s.limits.unauthenticated(&req).await?;
        certified_for(&req, &req.get_ref().member)?;
        let r = req.into_inner();
        let member = match s.registry.get(&r.member).await? {
            Some(m) if m.enabled => m,
            _ => {
                return Err(SequencerError::Unauthenticated(format!(
                    "member {} is not registered or disabled",
                    r.member
                ))
                .into());
            }
        };
        s.auth
            .verify_challenge(&member.member_id, &r.challenge, now())?;
        let bad_sig = |_| {
            SequencerError::Unauthenticated(format!("signature of {} does not verify", r.member))
        };
        let key = PublicKey::from_bytes(&member.public_key)
            .map_err(|e| SequencerError::Internal(e.to_string()))?;
        let sig = Signature::from_bytes(&r.signature).map_err(bad_sig)?;
        let message = auth::signed_message(&r.challenge);
        // Signature checks are CPU work: keep them off the async workers.
        tokio::task::spawn_blocking(move || key.verify(&message, &sig))
            .await
            .map_err(|e| SequencerError::Internal(e.to_string()))?
            .map_err(bad_sig)?;
        let expires_at = ordo_core::Timestamp(now())
            .plus(s.config.token_ttl)
            .micros();
        Ok(Response::new(pb::AuthenticateResponse {
            token: s.auth.token(&member.member_id, expires_at),
            expires_at,
        }))
    }
}
