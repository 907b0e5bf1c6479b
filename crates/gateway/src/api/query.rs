//! `POST /v1/query`, `GET /v1/query` (every template, no filter) and `POST /v1/fetch`: the active contracts the token's parties see,
//! answered from the gateway's cache once it has caught up with the ledger end of every
//! shard hosting one of them, so that a query sees every write committed before it (the
//! caller's own included).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Answer, ContractView};
use crate::auth::Caller;
use crate::body;
use crate::cache;
use crate::error::ApiError;
use crate::state::Gateway;

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryRequest {
    /// Empty: every template.
    #[serde(default)]
    template_ids: Vec<String>,
    /// Payload fields and the values they must equal (JSON equality: decimals are strings
    /// as the ledger writes them, `"100.0"`).
    #[serde(default)]
    query: Map<String, Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchRequest {
    contract_id: String,
}

#[utoipa::path(
    post,
    path = "/v1/query",
    tag = "query",
    request_body = QueryRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The matching active contracts the token's parties see", body = super::Answer<Vec<super::ContractView>>),
        (status = 400, description = "A malformed body", body = super::Failure),
        (status = 401, description = "No token, or one that does not verify", body = super::Failure),
        (status = 403, description = "The token names no party", body = super::Failure),
        (status = 503, description = "A shard has no serving replica", body = super::Failure),
    )
)]
pub async fn query(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Vec<ContractView>>>, ApiError> {
    let req: QueryRequest = body::json(raw)?;
    for (i, t) in req.template_ids.iter().enumerate() {
        body::required(&format!("templateIds[{i}]"), t)?;
    }
    answer(&gw, &caller, &req).await
}

#[utoipa::path(
    get,
    path = "/v1/query",
    tag = "query",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every active contract the token's parties see", body = super::Answer<Vec<super::ContractView>>),
        (status = 401, description = "No token, or one that does not verify", body = super::Failure),
        (status = 403, description = "The token names no party", body = super::Failure),
        (status = 503, description = "A shard has no serving replica", body = super::Failure),
    )
)]
pub async fn query_all(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Json<Answer<Vec<ContractView>>>, ApiError> {
    answer(&gw, &caller, &QueryRequest::default()).await
}

#[utoipa::path(
    post,
    path = "/v1/fetch",
    tag = "query",
    request_body = FetchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The contract if it is active and the token's parties see it, else null", body = super::Answer<Option<super::ContractView>>),
        (status = 400, description = "A malformed body", body = super::Failure),
        (status = 401, description = "No token, or one that does not verify", body = super::Failure),
        (status = 403, description = "The token names no party", body = super::Failure),
        (status = 503, description = "A shard has no serving replica", body = super::Failure),
    )
)]
pub async fn fetch(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Option<ContractView>>>, ApiError> {
    let req: FetchRequest = body::json(raw)?;
    body::required("contractId", &req.contract_id)?;
    let parties = caught_up(&gw, &caller).await?;
    let found = gw.cache.fetch(&parties, &req.contract_id).await?;
    Ok(Answer::ok(found.as_ref().map(ContractView::from)))
}

/// The active contracts of the request's templates (empty: all) that the caller's parties
/// see and that match its query, each contract once.
async fn answer(
    gw: &Gateway,
    caller: &Caller,
    req: &QueryRequest,
) -> Result<Json<Answer<Vec<ContractView>>>, ApiError> {
    let parties = caught_up(gw, caller).await?;
    let contracts = gw
        .cache
        .active_contracts(&parties, &req.template_ids)
        .await?;
    let result = contracts
        .iter()
        .filter(|c| super::matches(&c.payload, &req.query))
        .map(ContractView::from)
        .collect();
    Ok(Answer::ok(result))
}

/// The caller's parties, once the cache has caught up with every shard hosting one of
/// them.
async fn caught_up(gw: &Gateway, caller: &Caller) -> Result<Vec<String>, ApiError> {
    let parties = caller.readable()?;
    let shards = gw.parties_by_shard(&parties).await?;
    futures::future::try_join_all(shards.keys().map(|shard| cache::catch_up(gw, shard))).await?;
    Ok(parties)
}

#[cfg(test)]
mod tests {
    use ordo_ledger_client::Contract;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_query_matches_on_equal_fields() {
        let c = Contract {
            contract_id: "c1".into(),
            template_id: "iou:Iou".into(),
            package_id: "p".into(),
            payload: json!({"owner": "alice", "amount": "100.0"}),
            signatories: vec![],
            observers: vec![],
            key: None,
            witnesses: vec![],
            offset: 1,
            created_at: 0,
        };
        let q = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(super::super::matches(&c.payload, &q(json!({}))));
        assert!(super::super::matches(
            &c.payload,
            &q(json!({"owner": "alice"}))
        ));
        assert!(!super::super::matches(
            &c.payload,
            &q(json!({"owner": "bob"}))
        ));
        assert!(!super::super::matches(
            &c.payload,
            &q(json!({"missing": 1}))
        ));
    }
}
