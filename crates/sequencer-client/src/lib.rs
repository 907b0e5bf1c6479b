//! The sequencer client of an ordo member (DESIGN §7): it watches every sequencer node's
//! `grpc.health.v1` status, round-robins batched sends across the healthy ones, retries
//! them idempotently until their max sequencing time, keeps one subscription per stream on
//! one node and resumes it on another from the last event, checking the chain. With no
//! healthy node it fails fast.
//!
//! A node that stops answering without closing its connections is left within about half
//! a second: a call without an answer within `send_deadline` checks its node's health, and
//! moves on when that gets no answer within `probe_timeout` either (a busy node answers,
//! so its calls keep waiting instead of being resent); a subscription that receives
//! neither an event nor a heartbeat within `subscription_idle_timeout` resumes elsewhere.

pub mod admin;
mod auth;
mod batcher;
mod config;
mod error;
mod health;
mod metrics;
mod subscription;

use std::future::Future;
use std::sync::Arc;

use ordo_core::{MemberId, Sequenced, Submission, Timestamp};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_service_client::SequencerServiceClient;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tonic::transport::Channel;

pub use auth::{AUTH_CONTEXT, auth_message, needs_refresh};
pub use batcher::{backoff, expired, fits};
pub use config::{ClientConfig, DEFAULT_MAX_BATCH_BYTES};
pub use error::{ClientError, Disposition, classify, classify_status};
pub use health::{SEQUENCER_SERVICE, next_healthy};
/// The bytes a member signs to acknowledge events, shared with the sequencer nodes.
pub use ordo_core::sequencing::{ACK_CONTEXT, ack_message};
pub use subscription::{Batches, Subscription, verify_chain};

use auth::{TokenCache, authorize};
use health::EndpointSet;

/// What the background tasks share with the handles.
pub(crate) struct Shared {
    config: ClientConfig,
    endpoints: EndpointSet,
    auth: TokenCache,
}

impl Shared {
    async fn token(&self) -> Result<String, ClientError> {
        let c = &self.config;
        self.auth
            .get(
                &self.endpoints,
                &c.member,
                &c.key,
                c.clock.as_ref(),
                c.deadlines(),
            )
            .await
    }

    /// Awaits `call`, made on endpoint `i`, within the configured deadlines
    /// ([`EndpointSet::answer`]).
    async fn answer<T>(
        &self,
        i: usize,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.endpoints
            .answer(i, self.config.deadlines(), call)
            .await
    }

    /// One unary call on a healthy endpoint, moving on to the next one when a call ends
    /// without a definite answer, and authenticating afresh once if the token is refused.
    async fn unary<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(SequencerServiceClient<Channel>, String) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut avoid = None;
        let mut reauthenticated = false;
        let mut last_failure = None;
        let mut attempts = 0;
        while attempts < self.endpoints.len() + 1 {
            let Some(i) = self.endpoints.pick(avoid) else {
                break;
            };
            let token = self.token().await?;
            let client = SequencerServiceClient::new(self.endpoints.channel(i));
            let status = match self.answer(i, call(client, token.clone())).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            match classify_status(&status) {
                Disposition::Reauthenticate if !reauthenticated => {
                    reauthenticated = true;
                    self.auth.invalidate(&token).await;
                    continue;
                }
                Disposition::Retry => {
                    attempts += 1;
                    avoid = Some(i);
                    last_failure = Some(ClientError::Unavailable {
                        endpoint: self.endpoints.url(i).to_string(),
                        status,
                    });
                }
                Disposition::Reauthenticate | Disposition::Reject => {
                    return Err(ClientError::Rejected(status));
                }
            }
        }
        Err(last_failure.unwrap_or_else(|| self.endpoints.no_healthy_endpoint()))
    }
}

pub(crate) struct Inner {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<batcher::Pending>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A member's connection to all sequencer nodes. Cheap to clone; the background tasks stop
/// when the last clone and the last subscription are dropped.
#[derive(Clone)]
pub struct SequencerClient {
    inner: Arc<Inner>,
}

impl SequencerClient {
    /// Starts watching every endpoint's health and waits up to `connect_timeout` for one
    /// to report SERVING.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        metrics::describe();
        let endpoints = EndpointSet::new(
            &config.endpoints,
            config.connect_timeout,
            config.tls.as_ref(),
        )?;
        let shared = Arc::new(Shared {
            config,
            endpoints,
            auth: TokenCache::new(),
        });
        let mut tasks = Vec::new();
        for i in 0..shared.endpoints.len() {
            let (watching, listening) = (shared.clone(), shared.clone());
            let c = &shared.config;
            let (retry, interval, probe) = (c.health_retry, c.heartbeat_interval, c.probe_timeout);
            let task = tokio::spawn(async move { watching.endpoints.watch(i, retry).await });
            tasks.push(task.abort_handle());
            let task = tokio::spawn(async move {
                listening.endpoints.watch_liveness(i, interval, probe).await
            });
            tasks.push(task.abort_handle());
        }
        let (queue, receiver) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(batcher::run(shared.clone(), receiver)).abort_handle());
        let client = Self {
            inner: Arc::new(Inner {
                shared,
                queue,
                tasks,
            }),
        };

        let endpoints = &client.inner.shared.endpoints;
        let mut changes = endpoints.changes();
        let first_healthy = async {
            while !endpoints.any_healthy() {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(client.inner.shared.config.connect_timeout, first_healthy)
            .await
            .is_err()
        {
            return Err(endpoints.no_healthy_endpoint());
        }
        Ok(client)
    }

    /// Sequences a submission: `Ok` with its timestamp (or the original one when this
    /// message id was sequenced before), `Rejected` when a node refused it, `Expired` when
    /// no node answered definitely before its max sequencing time.
    pub async fn send(&self, submission: Submission) -> Result<Sequenced, ClientError> {
        let shared = &self.inner.shared;
        if !shared.endpoints.any_healthy() {
            return Err(shared.endpoints.no_healthy_endpoint());
        }
        let (reply, answer) = oneshot::channel();
        let pending = batcher::Pending::new(shared, &submission, reply);
        self.inner
            .queue
            .send(pending)
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)?
    }

    /// The member's events after `after` (the last one it processed; `Timestamp::MIN` for
    /// all), resumed across nodes.
    pub fn subscribe(&self, after: Timestamp) -> Subscription {
        Subscription::new(self.inner.clone(), after)
    }

    /// Tells the sequencer the member processed every event up to `timestamp`, signed with
    /// the member's key ([`ack_message`]): the sequencer prunes nothing on a token alone.
    pub async fn acknowledge(&self, timestamp: Timestamp) -> Result<(), ClientError> {
        let member = self.member().to_string();
        // Signed once for every attempt: one small signature, cheap enough for the executor.
        let signature = self
            .inner
            .shared
            .config
            .key
            .sign(&ack_message(&member, timestamp.micros()))
            .to_bytes()
            .to_vec();
        self.inner
            .shared
            .unary(|mut client, token| {
                let request = pb::AcknowledgeRequest {
                    member: member.clone(),
                    timestamp: timestamp.micros(),
                    signature: signature.clone(),
                };
                async move {
                    client
                        .acknowledge(authorize(request, &token).map_err(to_status)?)
                        .await
                }
            })
            .await?;
        Ok(())
    }

    /// The sequencer's head: the latest sequenced timestamp.
    pub async fn time(&self) -> Result<Timestamp, ClientError> {
        let response = self
            .inner
            .shared
            .unary(|mut client, token| async move {
                let request = authorize(pb::GetTimeRequest {}, &token).map_err(to_status)?;
                client.get_time(request).await
            })
            .await?;
        Ok(Timestamp(response.head_timestamp))
    }

    pub fn healthy_endpoints(&self) -> Vec<String> {
        self.inner.shared.endpoints.healthy_urls()
    }

    pub fn member(&self) -> &MemberId {
        &self.inner.shared.config.member
    }
}

fn to_status(error: ClientError) -> tonic::Status {
    tonic::Status::unauthenticated(error.to_string())
}
