//! Users and rights (Daml's JSON API v1 user management): `/v1/user`, `/v1/user/create`,
//! `/v1/user/delete`, `/v1/users`, `/v1/user/rights`, `/v1/user/rights/grant`,
//! `/v1/user/rights/revoke`. Users are domain-wide, so any shard answers a read; the
//! gateway asks the first one, with the caller's token (the participant checks it: admin
//! for changes and for other users, a user token for its own user and rights).
//!
//! A change goes to the shard hosting the parties its rights name, since a participant
//! may change users only over its own shard's parties (docs/security.md): rights naming
//! parties of several shards are granted or revoked shard by shard, a user is created on
//! its primary party's shard with that shard's rights and then granted the others, and a
//! user whose rights span shards is deleted after its other shards' rights are revoked.
//! Rights naming no party (CanReadAsAnyParty, ParticipantAdmin) go with the first group;
//! on a network whose participants hold no topology admin token they need the operator
//! (`ordo user`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use ordo_ledger_client::{ShardClient, UserInfo, UserRight};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Answer, Failure};
use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::state::Gateway;

/// A client of the first shard, with the caller's token: users are the same on every
/// shard.
pub(crate) fn any_shard(gw: &Gateway, token: &str) -> Result<Arc<ShardClient>, ApiError> {
    let shard = gw.network().shards().into_iter().next().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the network has no shard",
        )
    })?;
    gw.shard_client(&shard, token)
}

/// `rights` grouped by the shard hosting the party each names, `first` (if given) first
/// (those naming no party go with the first group; with no group at all, one on the
/// network's first shard). A party no shard hosts is a 404 naming it.
async fn by_shard(
    gw: &Gateway,
    rights: &[UserRight],
    first: Option<&str>,
) -> Result<Vec<(String, Vec<UserRight>)>, ApiError> {
    let mut groups: Vec<(String, Vec<UserRight>)> = Vec::new();
    let mut unbound = Vec::new();
    if let Some(first) = first {
        groups.push((first.to_owned(), Vec::new()));
    }
    for r in rights {
        let party = match r {
            UserRight::CanActAs { party } | UserRight::CanReadAs { party } => party,
            _ => {
                unbound.push(r.clone());
                continue;
            }
        };
        let shard = gw.shard_of(party).await?.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("party {party} is not known"),
            )
        })?;
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, g)) => g.push(r.clone()),
            None => groups.push((shard, vec![r.clone()])),
        }
    }
    if groups.is_empty() {
        let shard = gw.network().shards().into_iter().next().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the network has no shard",
            )
        })?;
        groups.push((shard, Vec::new()));
    }
    groups[0].1.extend(unbound);
    Ok(groups)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserIdRequest {
    /// 1 to 128 of `[a-z0-9]` and `@^$.!`-#+'~_|:`.
    user_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUserRequest {
    user_id: String,
    #[serde(default)]
    primary_party: Option<String>,
    /// `[{"type": "CanActAs", "party": "alice"}, {"type": "ParticipantAdmin"}, …]`
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    rights: Vec<UserRight>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RightsRequest {
    user_id: String,
    #[schema(value_type = Vec<Object>)]
    rights: Vec<UserRight>,
}

#[utoipa::path(get, path = "/v1/user", operation_id = "get_own_user", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user of the caller's user token", body = Answer<Object>),
        (status = 400, description = "The token is no user token", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
    ))]
pub async fn own_user(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Json<Answer<UserInfo>>, ApiError> {
    let client = any_shard(&gw, &caller.token)?;
    let user = client
        .read(|c| async move { c.get_user(None).await })
        .await?;
    Ok(Answer::ok(user))
}

#[utoipa::path(post, path = "/v1/user", operation_id = "get_user", tag = "users", request_body = UserIdRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = Answer<Object>),
        (status = 403, description = "Another user than the token's, without admin", body = Failure),
        (status = 404, description = "No such user (USER_NOT_FOUND)", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
        (status = 400, description = "A malformed body", body = Failure),
))]
pub async fn user(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<UserInfo>>, ApiError> {
    let req: UserIdRequest = body::json(raw)?;
    body::required("userId", &req.user_id)?;
    let client = any_shard(&gw, &caller.token)?;
    let id = req.user_id;
    let user = client
        .read(|c| {
            let id = id.clone();
            async move { c.get_user(Some(&id)).await }
        })
        .await?;
    Ok(Answer::ok(user))
}

#[utoipa::path(post, path = "/v1/user/create", operation_id = "create_user", tag = "users", request_body = CreateUserRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user, created on every shard", body = Answer<Object>),
        (status = 400, description = "A malformed body, user id or right", body = Failure),
        (status = 403, description = "The token is not an admin's", body = Failure),
        (status = 404, description = "A right names an unknown party", body = Failure),
        (status = 409, description = "The user exists (USER_ALREADY_EXISTS)", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
))]
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<UserInfo>>, ApiError> {
    let req: CreateUserRequest = body::json(raw)?;
    body::required("userId", &req.user_id)?;
    caller.require_admin()?;
    let primary = match &req.primary_party {
        Some(p) => Some(gw.shard_of(p).await?.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("field `primaryParty`: party {p} is not known"),
            )
        })?),
        None => None,
    };
    let user = UserInfo {
        user_id: req.user_id,
        primary_party: req.primary_party,
    };
    let mut groups = by_shard(&gw, &req.rights, primary.as_deref())
        .await?
        .into_iter();
    let Some((shard, rights)) = groups.next() else {
        return Err(ApiError::bad_request("no shard to create the user on"));
    };
    let created = gw
        .shard_client(&shard, &caller.token)?
        .read(|c| {
            let (user, rights) = (user.clone(), rights.clone());
            async move { c.create_user(&user, &rights).await }
        })
        .await?;
    for (shard, rights) in groups {
        grant_on(&gw, &caller.token, &shard, &user.user_id, rights, true).await?;
    }
    Ok(Answer::ok(created))
}

#[utoipa::path(post, path = "/v1/user/delete", operation_id = "delete_user", tag = "users", request_body = UserIdRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted: its tokens are refused from now on", body = Answer<Object>),
        (status = 403, description = "The token is not an admin's", body = Failure),
        (status = 404, description = "No such user (USER_NOT_FOUND)", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
        (status = 400, description = "A malformed body", body = Failure),
))]
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<serde_json::Value>>, ApiError> {
    let req: UserIdRequest = body::json(raw)?;
    body::required("userId", &req.user_id)?;
    caller.require_admin()?;
    let id = req.user_id;
    let held = any_shard(&gw, &caller.token)?
        .read(|c| {
            let id = id.clone();
            async move { c.list_user_rights(Some(&id)).await }
        })
        .await?;
    let user = any_shard(&gw, &caller.token)?
        .read(|c| {
            let id = id.clone();
            async move { c.get_user(Some(&id)).await }
        })
        .await?;
    let primary = match &user.primary_party {
        Some(p) => gw.shard_of(p).await?,
        None => None,
    };
    // The user goes on its primary party's shard (or its first rights' shard), after the
    // rights on other shards are revoked, each on its shard.
    let mut groups = by_shard(&gw, &held, primary.as_deref()).await?.into_iter();
    let Some((shard, _)) = groups.next() else {
        return Err(ApiError::bad_request("no shard to delete the user on"));
    };
    for (other, rights) in groups {
        grant_on(&gw, &caller.token, &other, &id, rights, false).await?;
    }
    gw.shard_client(&shard, &caller.token)?
        .read(|c| {
            let id = id.clone();
            async move { c.delete_user(&id).await }
        })
        .await?;
    Ok(Answer::ok(serde_json::json!({})))
}

#[utoipa::path(get, path = "/v1/users", operation_id = "list_users", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user, by id", body = Answer<Vec<Object>>),
        (status = 403, description = "The token is not an admin's", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
))]
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Json<Answer<Vec<UserInfo>>>, ApiError> {
    let client = any_shard(&gw, &caller.token)?;
    let users = client.read(|c| async move { c.list_users().await }).await?;
    Ok(Answer::ok(users))
}

#[utoipa::path(get, path = "/v1/user/rights", operation_id = "list_own_rights", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The rights of the caller's user", body = Answer<Vec<Object>>),
        (status = 400, description = "The token is no user token", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
))]
pub async fn own_rights(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Json<Answer<Vec<UserRight>>>, ApiError> {
    let client = any_shard(&gw, &caller.token)?;
    let rights = client
        .read(|c| async move { c.list_user_rights(None).await })
        .await?;
    Ok(Answer::ok(rights))
}

#[utoipa::path(post, path = "/v1/user/rights", operation_id = "list_user_rights", tag = "users", request_body = UserIdRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's rights", body = Answer<Vec<Object>>),
        (status = 403, description = "Another user than the token's, without admin", body = Failure),
        (status = 404, description = "No such user (USER_NOT_FOUND)", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
        (status = 400, description = "A malformed body", body = Failure),
))]
pub async fn rights(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Vec<UserRight>>>, ApiError> {
    let req: UserIdRequest = body::json(raw)?;
    body::required("userId", &req.user_id)?;
    let client = any_shard(&gw, &caller.token)?;
    let id = req.user_id;
    let rights = client
        .read(|c| {
            let id = id.clone();
            async move { c.list_user_rights(Some(&id)).await }
        })
        .await?;
    Ok(Answer::ok(rights))
}

#[utoipa::path(post, path = "/v1/user/rights/grant", operation_id = "grant_user_rights", tag = "users", request_body = RightsRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rights newly granted", body = Answer<Vec<Object>>),
        (status = 403, description = "The token is not an admin's", body = Failure),
        (status = 404, description = "No such user, or a right naming an unknown party", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
        (status = 400, description = "A malformed body", body = Failure),
))]
pub async fn grant(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Vec<UserRight>>>, ApiError> {
    change(&gw, &caller, raw, true).await
}

#[utoipa::path(post, path = "/v1/user/rights/revoke", operation_id = "revoke_user_rights", tag = "users", request_body = RightsRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rights newly revoked: the next request of the user is judged without them", body = Answer<Vec<Object>>),
        (status = 403, description = "The token is not an admin's", body = Failure),
        (status = 404, description = "No such user", body = Failure),
            (status = 401, description = "No token, or one that does not verify (or a deleted user's)", body = Failure),
        (status = 400, description = "A malformed body", body = Failure),
))]
pub async fn revoke(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Vec<UserRight>>>, ApiError> {
    change(&gw, &caller, raw, false).await
}

async fn change(
    gw: &Gateway,
    caller: &Caller,
    raw: Result<Bytes, BytesRejection>,
    grant: bool,
) -> Result<Json<Answer<Vec<UserRight>>>, ApiError> {
    let req: RightsRequest = body::json(raw)?;
    body::required("userId", &req.user_id)?;
    if req.rights.is_empty() {
        return Err(ApiError::bad_request(
            "field `rights`: name at least one right",
        ));
    }
    caller.require_admin()?;
    let mut changed = Vec::new();
    for (shard, rights) in by_shard(gw, &req.rights, None).await? {
        changed.extend(grant_on(gw, &caller.token, &shard, &req.user_id, rights, grant).await?);
    }
    Ok(Answer::ok(changed))
}

/// Grants (or revokes) `rights` of user `id` through `shard`'s participant.
async fn grant_on(
    gw: &Gateway,
    token: &str,
    shard: &str,
    id: &str,
    rights: Vec<UserRight>,
    grant: bool,
) -> Result<Vec<UserRight>, ApiError> {
    if rights.is_empty() {
        return Ok(Vec::new());
    }
    let changed = gw
        .shard_client(shard, token)?
        .read(|c| {
            let (id, rights) = (id.to_owned(), rights.clone());
            async move {
                if grant {
                    c.grant_user_rights(&id, &rights).await
                } else {
                    c.revoke_user_rights(&id, &rights).await
                }
            }
        })
        .await?;
    Ok(changed)
}
