//! [`ShardClient`]: one shard's Ledger API across its replicas, for applications and load
//! generators that must ride through a failover of the shard's participant.
//!
//! A shard has one active replica; the passive ones answer UNAVAILABLE. A call that fails
//! because the replica it reached is gone or not (any longer) active — UNAVAILABLE,
//! CANCELLED, a broken connection — is retried on the replicas in turn, with backoff,
//! until the policy's deadline. A submission is retried with the *same* command id, so the
//! participant's deduplication makes the retry safe: when a retry is refused with
//! ALREADY_EXISTS, the earlier attempt did reach the ledger, and its outcome is read from
//! the completion stream (from the completion offset recorded before the first attempt)
//! instead of being guessed.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tonic::Code;

use crate::client::{DEFAULT_APPLICATION_ID, LedgerClient, new_command_id};
use crate::error::LedgerError;
use crate::types::{Completion, Submission, TransactionResult};

/// How long and how often a [`ShardClient`] retries across replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long a call may keep looking for an active replica before it fails
    /// UNAVAILABLE. Failover with default lease settings takes a few seconds.
    pub deadline: Duration,
    /// The pause after the first round of replicas that all failed; doubled after each
    /// further round up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long to wait for the completion of a command that a retry found already
    /// submitted (it may still be in flight).
    pub outcome_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            outcome_timeout: Duration::from_secs(60),
        }
    }
}

/// Exponential backoff per round of replicas.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        Self {
            next: policy.first_backoff,
            max: policy.max_backoff.max(policy.first_backoff),
        }
    }

    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

/// Whether a failed call says that the replica it reached cannot serve it (passive, gone,
/// deposed, or the connection broke), so that another replica should be tried. Anything
/// else is the ledger's answer and is final.
pub fn is_failover_error(e: &LedgerError) -> bool {
    match e {
        LedgerError::Connect { .. } => true,
        LedgerError::Status {
            code,
            message,
            error_code,
        } => match code {
            Code::Unavailable | Code::Cancelled => true,
            // A connection that breaks mid-call surfaces on this side as a transport
            // error without a status from the server (so without an error code; the text
            // is the transport library's). A server's answer carries its code and is final.
            Code::Unknown | Code::Internal if error_code.is_none() => {
                let m = message.to_ascii_lowercase();
                [
                    "transport error",
                    "connection",
                    "h2 protocol error",
                    "broken pipe",
                    "stream closed",
                ]
                .iter()
                .any(|needle| m.contains(needle))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether a replica refused the call because it is passive (PASSIVE_REPLICA): it did
/// not act on it.
fn refused_as_passive(e: &LedgerError) -> bool {
    e.is(ordo_proto::errors::PASSIVE_REPLICA)
}

/// One shard's Ledger API across its replicas. Cheap to share (`Arc`) between tasks: the
/// connection to the active replica is kept and shared, and replaced when it fails.
#[derive(Debug)]
pub struct ShardClient {
    shard: String,
    endpoints: Vec<String>,
    token: String,
    application_id: String,
    policy: RetryPolicy,
    state: Mutex<Current>,
}

#[derive(Debug, Default)]
struct Current {
    /// The replica last found serving, with its endpoint index.
    client: Option<(usize, LedgerClient)>,
    /// The endpoint to try next when none is known.
    next: usize,
}

/// What a call through [`ShardClient::call`] produced, and how many attempts may have
/// reached an active replica (a passive one's refusal does not count).
struct Attempts<T> {
    result: Result<T, LedgerError>,
    calls: u32,
}

impl ShardClient {
    /// A client of `shard` served by the replicas at `endpoints` (`http://host:port`),
    /// tried in this order; the token is sent with every call.
    pub fn new(shard: impl Into<String>, endpoints: Vec<String>, token: impl Into<String>) -> Self {
        Self {
            shard: shard.into(),
            endpoints,
            token: token.into(),
            application_id: DEFAULT_APPLICATION_ID.to_owned(),
            policy: RetryPolicy::default(),
            state: Mutex::new(Current::default()),
        }
    }

    /// The same client submitting (and reading completions) as another application id.
    pub fn with_application_id(mut self, application_id: impl Into<String>) -> Self {
        self.application_id = application_id.into();
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn shard(&self) -> &str {
        &self.shard
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// A client of the replica currently believed active (connecting to one if none is
    /// known). It is not checked: a call on it may still answer UNAVAILABLE.
    pub async fn active(&self) -> Result<LedgerClient, LedgerError> {
        self.current().await.map(|(_, c)| c).map_err(|(e, _)| e)
    }

    /// Submits `submission` through the shard's active replica and waits for its outcome,
    /// riding through failovers; the transaction as [`LedgerClient::submit`] returns it.
    ///
    /// The command keeps one command id across attempts (a fresh one if the submission
    /// has none). A rejection keeps the ledger's code and message; a shard that has no
    /// active replica for the whole deadline fails UNAVAILABLE.
    pub async fn submit(
        &self,
        mut submission: Submission,
    ) -> Result<TransactionResult, LedgerError> {
        let deadline = Instant::now() + self.policy.deadline;
        let command_id = submission
            .command_id
            .get_or_insert_with(new_command_id)
            .clone();
        // Where to look for the outcome if a retry finds the command already submitted.
        let begin = self
            .call(deadline, |c| async move { c.ledger_ends().await })
            .await
            .result?
            .completion_offset;
        let act_as = submission.act_as.clone();
        let attempts = self
            .call(deadline, |c| {
                let submission = submission.clone();
                async move { c.submit(submission).await }
            })
            .await;
        match attempts.result {
            // The first attempt's ALREADY_EXISTS is a genuine duplicate: the caller reused
            // a command id. After a failed attempt it is (most likely) that attempt.
            Err(e) if e.is(ordo_proto::errors::DUPLICATE_COMMAND) && attempts.calls > 1 => {
                tracing::info!(shard = %self.shard, command_id, "a retry found the command already submitted; reading its completion");
                self.outcome(&command_id, &act_as, begin).await
            }
            // No replica served before the deadline, but an attempt may have reached one.
            Err(e) if attempts.calls > 0 && is_failover_error(&e) => Err(LedgerError::Status {
                code: e.code(),
                error_code: e.error_code().map(str::to_owned),
                message: format!(
                    "{}; command {command_id} may have been accepted before the failure: its \
                     outcome is unknown until its completion appears after completion offset \
                     {begin}",
                    e.message()
                ),
            }),
            other => other,
        }
    }

    /// Waits for the completion of `command_id` (acting as `act_as`) after completion
    /// offset `begin`, then returns its transaction or its rejection.
    pub async fn outcome(
        &self,
        command_id: &str,
        act_as: &[String],
        begin: i64,
    ) -> Result<TransactionResult, LedgerError> {
        let timeout = self.policy.outcome_timeout;
        let wait = async {
            let completion = self.completion(command_id, act_as, begin).await?;
            if !completion.succeeded() {
                return Err(LedgerError::Status {
                    code: completion.code,
                    message: completion.message,
                    // The participant's code; one that records none has only the gRPC code.
                    error_code: Some(if completion.error_code.is_empty() {
                        ordo_proto::errors::generic(completion.code).id.to_owned()
                    } else {
                        completion.error_code
                    }),
                });
            }
            let deadline = Instant::now() + self.policy.deadline;
            let update_id = completion.update_id.clone();
            self.call(deadline, |c| {
                let update_id = update_id.clone();
                async move { c.transaction_by_id(&update_id, act_as).await }
            })
            .await
            .result
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or_else(|_| {
            Err(LedgerError::Status {
                code: Code::DeadlineExceeded,
                error_code: Some(ordo_proto::errors::REQUEST_TIMEOUT.id.to_owned()),
                message: format!(
                    "command {command_id} was already submitted on shard {}, but its completion \
                     did not appear within {timeout:?} after completion offset {begin}; its \
                     outcome is unknown: read the completion stream from there",
                    self.shard
                ),
            })
        })
    }

    /// The first definite completion of `command_id` after `begin`, following the active
    /// replica across failovers.
    async fn completion(
        &self,
        command_id: &str,
        act_as: &[String],
        begin: i64,
    ) -> Result<Completion, LedgerError> {
        let mut after = begin;
        let mut backoff = Backoff::new(&self.policy);
        let mut reopen = false;
        loop {
            if reopen {
                tokio::time::sleep(backoff.next_pause()).await;
            }
            reopen = true;
            let deadline = Instant::now() + self.policy.deadline;
            let mut stream = self
                .call(
                    deadline,
                    |c| async move { c.completions(act_as, after).await },
                )
                .await
                .result?;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(c) => {
                        after = c.completion_offset;
                        // A refused duplicate is not the command's outcome.
                        if c.command_id == command_id
                            && c.application_id == self.application_id
                            && c.code != Code::AlreadyExists
                        {
                            return Ok(c);
                        }
                    }
                    Err(e) if is_failover_error(&e) => {
                        self.forget_endpoint_of_current();
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Runs a read (a call that changes nothing, e.g. `active_contracts`) on the shard's
    /// active replica, moving across replicas on a failover error until the policy's
    /// deadline.
    pub async fn read<T, F, Fut>(&self, op: F) -> Result<T, LedgerError>
    where
        F: FnMut(LedgerClient) -> Fut,
        Fut: Future<Output = Result<T, LedgerError>>,
    {
        self.call(Instant::now() + self.policy.deadline, op)
            .await
            .result
    }

    /// Runs `op` on the active replica, moving to the next replica on a failover error,
    /// with backoff after each round of replicas, until `deadline`.
    async fn call<T, F, Fut>(&self, deadline: Instant, mut op: F) -> Attempts<T>
    where
        F: FnMut(LedgerClient) -> Fut,
        Fut: Future<Output = Result<T, LedgerError>>,
    {
        let mut backoff = Backoff::new(&self.policy);
        let mut calls = 0;
        let mut failures = 0usize;
        loop {
            let attempt = match self.current().await {
                Ok((index, client)) => {
                    let result = op(client).await;
                    if !matches!(&result, Err(e) if refused_as_passive(e)) {
                        calls += 1;
                    }
                    result.map_err(|e| (e, index))
                }
                Err((e, index)) => Err((e, index)),
            };
            let (e, index) = match attempt {
                Ok(value) => {
                    return Attempts {
                        result: Ok(value),
                        calls,
                    };
                }
                Err((e, _)) if !is_failover_error(&e) => {
                    return Attempts {
                        result: Err(e),
                        calls,
                    };
                }
                Err(failed) => failed,
            };
            tracing::debug!(shard = %self.shard, endpoint = %self.endpoints[index], error = %e, "replica cannot serve; trying the next");
            self.forget(index);
            failures += 1;
            let pause = if failures.is_multiple_of(self.endpoints.len()) {
                backoff.next_pause()
            } else {
                Duration::ZERO
            };
            // Keep looking until the deadline: the last pause is cut short so that the
            // last round of attempts falls on it.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Attempts {
                    result: Err(self.no_active_replica(&e)),
                    calls,
                };
            }
            tokio::time::sleep(pause.min(left)).await;
        }
    }

    fn no_active_replica(&self, last: &LedgerError) -> LedgerError {
        LedgerError::Status {
            code: Code::Unavailable,
            error_code: Some(ordo_proto::errors::UNAVAILABLE.id.to_owned()),
            message: format!(
                "no replica of shard {} served the call within {:?} (tried {}); the last \
                 answer: {last}",
                self.shard,
                self.policy.deadline,
                self.endpoints.join(", ")
            ),
        }
    }

    /// The known active replica, or a connection to the next one to try. A failed
    /// connection reports the endpoint index it tried.
    async fn current(&self) -> Result<(usize, LedgerClient), (LedgerError, usize)> {
        let index = {
            let state = self.lock();
            if let Some((index, client)) = &state.client {
                return Ok((*index, client.clone()));
            }
            state.next
        };
        let Some(endpoint) = self.endpoints.get(index) else {
            return Err((
                LedgerError::NotFound(format!("shard {} has no replica endpoint", self.shard)),
                0,
            ));
        };
        let client = LedgerClient::connect(endpoint, &self.token)
            .await
            .map_err(|e| (e, index))?
            .with_application_id(self.application_id.clone());
        let mut state = self.lock();
        // Another task may have found one meanwhile; keep the first.
        let (index, client) = state.client.get_or_insert((index, client)).clone();
        Ok((index, client))
    }

    /// Drops the replica at `index` as the current one (if it still is) and moves on to
    /// the next endpoint.
    fn forget(&self, index: usize) {
        let mut state = self.lock();
        match &state.client {
            Some((current, _)) if *current == index => state.client = None,
            // Another task already moved on.
            Some(_) => return,
            None if state.next != index => return,
            None => {}
        }
        state.next = (index + 1) % self.endpoints.len().max(1);
    }

    fn forget_endpoint_of_current(&self) {
        let index = self.lock().client.as_ref().map(|(i, _)| *i);
        if let Some(index) = index {
            self.forget(index);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // The state is two plain fields, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(&RetryPolicy {
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
            ..RetryPolicy::default()
        });
        let pauses: Vec<u128> = (0..5).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, vec![50, 100, 200, 300, 300]);
    }

    #[test]
    fn only_replica_failures_move_to_another_replica() {
        let status = |code, message: &str| LedgerError::Status {
            code,
            message: message.into(),
            error_code: None,
        };
        let passive = LedgerError::from(ordo_proto::errors::status(
            ordo_proto::errors::PASSIVE_REPLICA,
            "replica participant-1-b of shard-1 is passive",
            None,
        ));
        assert!(refused_as_passive(&passive));
        assert!(!refused_as_passive(&status(
            Code::Unavailable,
            "replica x is passive"
        )));
        for retried in [
            passive,
            status(Code::Cancelled, "operation was canceled"),
            status(Code::Unknown, "transport error"),
            status(Code::Internal, "h2 protocol error: connection reset"),
            LedgerError::Connect {
                endpoint: "http://127.0.0.1:1".into(),
                reason: "refused".into(),
            },
        ] {
            assert!(is_failover_error(&retried), "{retried}");
        }
        for final_answer in [
            status(Code::AlreadyExists, "command c1 was already submitted"),
            status(Code::FailedPrecondition, "contract 12ab is not active"),
            status(Code::Aborted, "the mediator rejected the transaction"),
            status(Code::DeadlineExceeded, "no outcome within 60s"),
            status(Code::Internal, "interpretation failed"),
            LedgerError::from(ordo_proto::errors::status(
                ordo_proto::errors::INTERNAL,
                "transport error in the server's own words",
                None,
            )),
            LedgerError::NotFound("party x".into()),
        ] {
            assert!(!is_failover_error(&final_answer), "{final_answer}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_shard_fails_unavailable_after_the_deadline() {
        let free = |_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(1);
            format!("http://127.0.0.1:{port}")
        };
        let client =
            ShardClient::new("shard-1", (0..2).map(free).collect(), "t").with_policy(RetryPolicy {
                deadline: Duration::from_millis(300),
                ..RetryPolicy::default()
            });
        let started = std::time::Instant::now();
        let e = client
            .submit(Submission::new(
                "alice",
                crate::types::Command::Create {
                    template_id: "iou:Iou".into(),
                    payload: serde_json::json!({}),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("no replica of shard shard-1"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
