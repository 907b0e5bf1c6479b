//! `POST /v1/parties/allocate`, `GET /v1/parties` (admin tokens).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Answer, Failure};
use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::state::Gateway;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllocateRequest {
    /// The party's identifier: 1 to 64 of `[A-Za-z0-9_-]`.
    identifier_hint: String,
    /// The shard to host the party; none: the shard hosting the fewest parties.
    #[serde(default)]
    shard: Option<String>,
}

/// A party and the shard hosting it.
#[derive(Serialize, ToSchema)]
pub struct PartyView {
    identifier: String,
    shard: String,
}

#[utoipa::path(
    post,
    path = "/v1/parties/allocate",
    operation_id = "allocate_party",
    tag = "parties",
    request_body = AllocateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The party, allocated", body = Answer<PartyView>),
        (status = 400, description = "A malformed body, an invalid hint or an unknown shard", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token lacks the `admin` claim", body = Failure),
        (status = 409, description = "The party exists already", body = Failure),
        (status = 503, description = "The shard has no serving replica", body = Failure),
    )
)]
pub async fn allocate(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<PartyView>>, ApiError> {
    caller.require_admin()?;
    let req: AllocateRequest = body::json(raw)?;
    body::required("identifierHint", &req.identifier_hint)?;
    let shard = match req.shard {
        Some(shard) => {
            let known = gw.knows_shard(&shard);
            let shards = gw.network().shards();
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field `shard`: unknown shard {shard:?} (shards: {})",
                    shards.join(", ")
                )));
            }
            shard
        }
        None => gw.least_loaded_shard().await?,
    };
    let client = gw.shard_client(&shard, &caller.token)?;
    let hint = req.identifier_hint;
    let details = client
        .read(|c| {
            let hint = hint.clone();
            async move { c.allocate_party(&hint).await }
        })
        .await?;
    gw.remember(&details.party, &details.shard);
    Ok(Answer::ok(PartyView {
        identifier: details.party,
        shard: details.shard,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/parties",
    operation_id = "list_parties",
    tag = "parties",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every party of the network with its shard", body = Answer<Vec<PartyView>>),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token lacks the `admin` claim", body = Failure),
        (status = 503, description = "Topology did not answer", body = Failure),
    )
)]
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Json<Answer<Vec<PartyView>>>, ApiError> {
    caller.require_admin()?;
    let parties = gw.network().parties().await?;
    let result = parties
        .into_iter()
        .map(|p| {
            gw.remember(&p.party, &p.shard);
            PartyView {
                identifier: p.party,
                shard: p.shard,
            }
        })
        .collect();
    Ok(Answer::ok(result))
}
