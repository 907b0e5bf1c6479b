//! `POST /v1/parties/allocate`, `GET /v1/parties` (admin tokens).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ok};
use crate::state::Gateway;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllocateRequest {
    identifier_hint: String,
    /// The shard to host the party; none: the shard hosting the fewest parties.
    #[serde(default)]
    shard: Option<String>,
}

pub async fn allocate(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let req: AllocateRequest = body::json(raw)?;
    body::required("identifierHint", &req.identifier_hint)?;
    let shard = match req.shard {
        Some(shard) => {
            let shards = gw.network.shards();
            if !shards.contains(&shard) {
                return Err(ApiError::bad_request(format!(
                    "field `shard`: unknown shard {shard:?} (shards: {})",
                    shards.join(", ")
                )));
            }
            shard
        }
        None => gw.network.least_loaded_shard().await?,
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
    Ok(ok(
        json!({ "identifier": details.party, "shard": details.shard }),
    ))
}

pub async fn list(State(gw): State<Arc<Gateway>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let parties = gw.network.parties().await?;
    let result: Vec<_> = parties
        .iter()
        .map(|p| {
            gw.remember(&p.party, &p.shard);
            json!({ "identifier": p.party, "shard": p.shard })
        })
        .collect();
    Ok(ok(result))
}
