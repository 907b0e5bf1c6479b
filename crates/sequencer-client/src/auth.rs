//! Session tokens: a signed challenge buys a short-lived token that every sequencer node
//! accepts. One token is cached per client and refreshed shortly before it expires.

use ordo_core::{Clock, KeyPair, MemberId, Timestamp};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_auth_service_client::SequencerAuthServiceClient;
use tokio::sync::Mutex;
use tonic::metadata::MetadataValue;

use crate::error::{ClientError, Disposition, classify_status};
use crate::health::{Deadlines, EndpointSet};

/// Domain separation for the challenge signature, fixed by the sequencer's contract.
pub const AUTH_CONTEXT: &[u8] = b"ordo-sequencer-auth-v1";

/// The bytes a member signs to prove possession of its key.
pub fn auth_message(challenge: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(AUTH_CONTEXT.len() + challenge.len());
    message.extend_from_slice(AUTH_CONTEXT);
    message.extend_from_slice(challenge);
    message
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub value: String,
    pub obtained_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Refresh once within a fifth of the token's lifetime (at most 30 s) of its expiry, so a
/// request never leaves with a token that expires on the way.
pub fn needs_refresh(now: Timestamp, obtained_at: Timestamp, expires_at: Timestamp) -> bool {
    let lifetime = expires_at
        .micros()
        .saturating_sub(obtained_at.micros())
        .max(0);
    let margin = (lifetime / 5).min(30_000_000);
    now.micros() >= expires_at.micros().saturating_sub(margin)
}

/// Adds `authorization: Bearer <token>` to a request.
pub(crate) fn authorize<T>(message: T, token: &str) -> Result<tonic::Request<T>, ClientError> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
        ClientError::Rejected(tonic::Status::unauthenticated(
            "token is not valid ASCII metadata",
        ))
    })?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

pub(crate) struct TokenCache {
    // An async mutex so that concurrent callers wait for one authentication, not many.
    token: Mutex<Option<Token>>,
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self {
            token: Mutex::new(None),
        }
    }

    /// A token valid for a while yet, authenticating (against healthy endpoints) if needed.
    pub(crate) async fn get(
        &self,
        endpoints: &EndpointSet,
        member: &MemberId,
        key: &KeyPair,
        clock: &dyn Clock,
        deadlines: Deadlines,
    ) -> Result<String, ClientError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref()
            && !needs_refresh(clock.now(), t.obtained_at, t.expires_at)
        {
            return Ok(t.value.clone());
        }
        let token = authenticate(endpoints, member, key, clock, deadlines).await?;
        let value = token.value.clone();
        *guard = Some(token);
        Ok(value)
    }

    /// Forgets `token` after a node refused it (unless another caller already replaced it).
    pub(crate) async fn invalidate(&self, token: &str) {
        let mut guard = self.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.value == token) {
            *guard = None;
        }
    }
}

/// Challenge + Authenticate, on each healthy endpoint in turn until one answers definitely.
async fn authenticate(
    endpoints: &EndpointSet,
    member: &MemberId,
    key: &KeyPair,
    clock: &dyn Clock,
    deadlines: Deadlines,
) -> Result<Token, ClientError> {
    let mut last_failure = None;
    let mut avoid = None;
    // Walks the endpoints on its own, so as not to disturb the sends' round-robin.
    for start in 0..endpoints.len() {
        let Some(i) = endpoints.pick_from(start, avoid) else {
            break;
        };
        let started = clock.now();
        // A frozen node must not hold up every call waiting for the token.
        let attempt = endpoints.answer(i, deadlines, authenticate_at(endpoints, i, member, key));
        let status = match attempt.await {
            Ok(response) => {
                return Ok(Token {
                    value: response.token,
                    obtained_at: started,
                    expires_at: Timestamp(response.expires_at),
                });
            }
            Err(status) => status,
        };
        let failure = ClientError::Authentication {
            member: member.to_string(),
            endpoint: endpoints.url(i).to_string(),
            status: status.clone(),
        };
        if classify_status(&status) != Disposition::Retry {
            return Err(failure);
        }
        tracing::debug!(endpoint = endpoints.url(i), %status, "authentication failed, trying another endpoint");
        last_failure = Some(failure);
        avoid = Some(i);
    }
    Err(last_failure.unwrap_or_else(|| endpoints.no_healthy_endpoint()))
}

async fn authenticate_at(
    endpoints: &EndpointSet,
    i: usize,
    member: &MemberId,
    key: &KeyPair,
) -> Result<pb::AuthenticateResponse, tonic::Status> {
    let mut client = SequencerAuthServiceClient::new(endpoints.channel(i));
    let challenge = client
        .challenge(pb::ChallengeRequest {
            member: member.to_string(),
        })
        .await?
        .into_inner()
        .challenge;
    let signature = key.sign(&auth_message(&challenge)).to_bytes().to_vec();
    let response = client
        .authenticate(pb::AuthenticateRequest {
            member: member.to_string(),
            challenge,
            signature,
        })
        .await?;
    Ok(response.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_context_then_challenge() {
        assert_eq!(auth_message(b"xy"), b"ordo-sequencer-auth-v1xy".to_vec());
    }

    #[test]
    fn refreshes_shortly_before_expiry() {
        // 100 s lifetime: margin 20 s.
        let (obtained, expires) = (Timestamp(0), Timestamp(100_000_000));
        assert!(!needs_refresh(Timestamp(79_000_000), obtained, expires));
        assert!(needs_refresh(Timestamp(80_000_000), obtained, expires));
        // 1 h lifetime: margin capped at 30 s.
        let expires = Timestamp(3_600_000_000);
        assert!(!needs_refresh(Timestamp(3_560_000_000), obtained, expires));
        assert!(needs_refresh(Timestamp(3_570_000_000), obtained, expires));
        // Already expired or nonsensical expiry: refresh.
        assert!(needs_refresh(Timestamp(5), Timestamp(10), Timestamp(1)));
    }

    #[test]
    fn authorize_sets_bearer_header() {
        let r = authorize((), "abc").unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer abc");
        assert!(authorize((), "bad\ntoken").is_err());
    }
}
