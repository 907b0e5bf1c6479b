//! The caller: its bearer token, verified here (a bad token is answered 401 without
//! reaching a shard) and then forwarded unchanged to the participants, which check it too.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ordo_participant::auth::Rights;

use crate::error::ApiError;
use crate::state::Gateway;

pub struct Caller {
    pub token: String,
    pub rights: Rights,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.rights.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this call needs a token with the `admin` claim",
            ))
        }
    }

    /// The party commands are submitted as: the token's first actAs party.
    pub fn actor(&self) -> Result<String, ApiError> {
        self.rights
            .act_as
            .iter()
            .next()
            .map(|p| p.to_string())
            .ok_or_else(|| {
                ApiError::forbidden(
                    "the token names no party to act as: commands need a token with an actAs claim",
                )
            })
    }

    /// The parties whose contracts the caller may read: actAs ∪ readAs.
    pub fn readable(&self) -> Result<Vec<String>, ApiError> {
        let parties: Vec<String> = self
            .rights
            .readable()
            .iter()
            .map(|p| p.to_string())
            .collect();
        if parties.is_empty() {
            return Err(ApiError::forbidden(
                "the token names no party to read as: queries need an actAs or readAs claim",
            ));
        }
        Ok(parties)
    }
}

/// A user token's rights: the user's as a shard knows them now (users are the same on
/// every shard), asked on every request, so a revoked right or a deleted user takes effect
/// with the next one.
async fn user_rights(
    gw: &Gateway,
    token: &str,
    verified: Rights,
    user: String,
) -> Result<Rights, ApiError> {
    use ordo_ledger_client::UserRight as R;
    let client = crate::api::users::any_shard(gw, token)?;
    let granted = client
        .read(|c| async move { c.list_user_rights(None).await })
        .await?;
    let party = |p: &str| {
        ordo_ledger::PartyId::new(p).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                format!("user {user}'s rights name an invalid party {p:?}"),
            )
        })
    };
    let mut rights = Rights {
        user: Some(user.clone()),
        expires_at: verified.expires_at,
        ..Rights::default()
    };
    for r in &granted {
        match r {
            R::CanActAs { party: p } => {
                rights.act_as.insert(party(p)?);
            }
            R::CanReadAs { party: p } => {
                rights.read_as.insert(party(p)?);
            }
            R::CanReadAsAnyParty => rights.read_as_any_party = true,
            R::ParticipantAdmin => rights.admin = true,
        }
    }
    Ok(rights)
}

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing `Authorization: Bearer <token>` header")
            })?
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?
            .trim()
            .to_owned();
        // Signature checks stay off the executor's worker threads.
        let auth = gateway.auth.clone();
        let checked = token.clone();
        let rights = tokio::task::spawn_blocking(move || auth.verify(&checked))
            .await
            .map_err(|e| {
                ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            })?
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let key = ordo_node::limits::token_key(token.as_bytes());
        if let Err(throttled) = gateway.token_limits.check(&key) {
            throttled.delay().await;
            return Err(ApiError::throttled("the token", &throttled));
        }
        let rights = match rights.user.clone() {
            Some(user) => user_rights(gateway, &token, rights, user).await?,
            None => rights,
        };
        Ok(Caller { token, rights })
    }
}
