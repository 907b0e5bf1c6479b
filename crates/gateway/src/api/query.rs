//! `POST /v1/query`, `GET /v1/query` (every template, no filter) and `POST /v1/fetch`: the
//! active contracts the token's parties see, answered from the gateway's cache once it has
//! caught up with the ledger end of every shard hosting one of them, so that a query sees
//! every write committed before it (the caller's own included).
//!
//! The query's conditions (`filter`) are index scans of the cache (`cache::read`); the
//! answer is a page (`pageSize`, `pageToken`) or, without `pageSize`, every match streamed
//! a page at a time from one snapshot of the cache: bounded memory either way.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{Answer, ContractView};
use crate::auth::Caller;
use crate::body;
use crate::cache::{self, Cursor, Page};
use crate::error::ApiError;
use crate::filter::Filter;
use crate::state::Gateway;

/// The largest `pageSize`.
const MAX_PAGE: usize = 10_000;
/// Contracts read at a time for an answer without `pageSize`, streamed as they are read.
const STREAM_PAGE: usize = 500;

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryRequest {
    /// Empty: every template.
    #[serde(default)]
    template_ids: Vec<String>,
    /// Per payload field, a value it must equal (`"currency": "USD"`; decimals, ints and
    /// times compare as values: `"100.0"` equals `"100"`), or an object of operators:
    /// `%lt`, `%lte`, `%gt`, `%gte` on ints, decimals, times and text
    /// (`"amount": {"%gte": "100", "%lt": "200"}`), `%in` with a list of values on any
    /// scalar field (`"currency": {"%in": ["USD", "EUR"]}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    query: Map<String, Value>,
    /// Contracts per page (1 to 10000): the answer is one page, with `nextPageToken` when
    /// more follow. Without it, every matching contract, in one streamed answer.
    #[serde(default)]
    page_size: Option<usize>,
    /// The `nextPageToken` of the previous page, sent with the same query.
    #[serde(default)]
    page_token: Option<String>,
}

/// `{"status": 200, "result": [...], "nextPageToken"?}`: matching contracts, and with
/// `pageSize`, the token of the next page when there is one.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryAnswer {
    status: u16,
    result: Vec<ContractView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchRequest {
    /// The contract; or give `templateId` and `key`.
    #[serde(default)]
    contract_id: Option<String>,
    /// With `key`: the template whose contract to fetch by key.
    #[serde(default)]
    template_id: Option<String>,
    /// Instead of `contractId`: the contract key, in the template's key type (e.g.
    /// `{"authority": "reg", "name": "ann"}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    key: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/v1/query",
    tag = "query",
    request_body = QueryRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The matching active contracts the token's parties see: a page with `pageSize`, else all of them, streamed", body = QueryAnswer),
        (status = 400, description = "A malformed body or query: an unknown field or operator, an operator the field's type does not take, a value not of the field's type, a page token of another query", body = super::Failure),
        (status = 401, description = "No token, or one that does not verify", body = super::Failure),
        (status = 403, description = "The token names no party", body = super::Failure),
        (status = 404, description = "A query on a template no vetted package defines", body = super::Failure),
        (status = 503, description = "A shard has no serving replica", body = super::Failure),
    )
)]
pub async fn query(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: QueryRequest = body::json(raw)?;
    for (i, t) in req.template_ids.iter().enumerate() {
        body::required(&format!("templateIds[{i}]"), t)?;
    }
    match req.page_size {
        Some(size) if !(1..=MAX_PAGE).contains(&size) => {
            return Err(ApiError::bad_request(format!(
                "invalid field `pageSize`: 1 to {MAX_PAGE}, got {size}"
            )));
        }
        None if req.page_token.is_some() => {
            return Err(ApiError::bad_request(
                "field `pageToken` goes with `pageSize`: send the query with both",
            ));
        }
        _ => {}
    }
    answer(&gw, &caller, &req).await
}

#[utoipa::path(
    get,
    path = "/v1/query",
    tag = "query",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every active contract the token's parties see, streamed", body = QueryAnswer),
        (status = 401, description = "No token, or one that does not verify", body = super::Failure),
        (status = 403, description = "The token names no party", body = super::Failure),
        (status = 503, description = "A shard has no serving replica", body = super::Failure),
    )
)]
pub async fn query_all(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Response, ApiError> {
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
        (status = 400, description = "A malformed body: neither or both of `contractId` and `templateId` + `key`, a template without a key, a key not of its type", body = super::Failure),
        (status = 401, description = "No token, or one that does not verify", body = super::Failure),
        (status = 403, description = "The token names no party", body = super::Failure),
        (status = 404, description = "A fetch by key of a template no vetted package defines", body = super::Failure),
        (status = 503, description = "A shard has no serving replica", body = super::Failure),
    )
)]
pub async fn fetch(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Option<ContractView>>>, ApiError> {
    let req: FetchRequest = body::json(raw)?;
    let found = match (req.contract_id, req.template_id, req.key) {
        (Some(contract_id), None, None) => {
            body::required("contractId", &contract_id)?;
            let parties = caught_up(&gw, &caller).await?;
            gw.cache.fetch(&parties, &contract_id).await?
        }
        (None, Some(template), Some(key)) => {
            body::required("templateId", &template)?;
            let key = gw.templates.canonical_key(&gw, &template, &key).await?;
            let parties = caught_up(&gw, &caller).await?;
            gw.cache.fetch_by_key(&parties, &template, &key).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "name the contract once: `contractId`, or `templateId` and `key`",
            ));
        }
    };
    Ok(Answer::ok(found.as_ref().map(ContractView::from)))
}

/// The active contracts of the request's templates (empty: all) that the caller's parties
/// see and that match its query, each contract once: a page, or all of them streamed.
async fn answer(
    gw: &Arc<Gateway>,
    caller: &Caller,
    req: &QueryRequest,
) -> Result<Response, ApiError> {
    caller.readable()?;
    let filter = super::filter(gw, &req.template_ids, &req.query).await?;
    let parties = caught_up(gw, caller).await?;
    let scope = scope(&parties, &filter);
    let from = match &req.page_token {
        Some(token) => Some(
            Cursor::from_token(token, &scope)
                .map_err(|e| ApiError::bad_request(format!("invalid field `pageToken`: {e}")))?,
        ),
        None => None,
    };
    let mut snapshot = gw.cache.store().snapshot().await?;
    let Some(size) = req.page_size else {
        let first = snapshot.page(&parties, &filter, None, STREAM_PAGE).await?;
        return Ok(stream(snapshot, parties, filter, first));
    };
    let page = snapshot
        .page(&parties, &filter, from.as_ref(), size)
        .await?;
    Ok(Json(QueryAnswer {
        status: 200,
        result: page.contracts.iter().map(ContractView::from).collect(),
        next_page_token: page.next.map(|c| c.token(&scope)),
    })
    .into_response())
}

/// What a page token is bound to: the parties and the compiled query.
fn scope(parties: &[String], filter: &Filter) -> String {
    let mut parties = parties.to_vec();
    parties.sort();
    parties.dedup();
    let text = format!("{parties:?} {filter:?}");
    ordo_ledger::Hash::of(text.as_bytes()).to_hex()[..16].to_owned()
}

/// `{"status": 200, "result": [...]}` written a page at a time as the client reads it,
/// from one snapshot of the cache: at most a few pages are in memory, however many
/// contracts match. A failure after the first page cuts the body short (it is then not
/// JSON), and is logged.
fn stream(
    mut snapshot: cache::Snapshot,
    parties: Vec<String>,
    filter: Filter,
    first: Page,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut out = br#"{"status":200,"result":["#.to_vec();
        let mut page = first;
        let mut written = 0usize;
        loop {
            for c in &page.contracts {
                if written > 0 {
                    out.push(b',');
                }
                written += 1;
                if let Err(e) = serde_json::to_writer(&mut out, &ContractView::from(c)) {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            }
            let Some(next) = page.next.take() else {
                out.extend_from_slice(b"]}");
                let _ = tx.send(Ok(out.into())).await;
                return;
            };
            if tx.send(Ok(std::mem::take(&mut out).into())).await.is_err() {
                return; // The client went away.
            }
            page = match snapshot
                .page(&parties, &filter, Some(&next), STREAM_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "a streamed query answer failed midway");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// The caller's parties, once the cache has caught up with every shard hosting one of
/// them.
async fn caught_up(gw: &Gateway, caller: &Caller) -> Result<Vec<String>, ApiError> {
    let parties = caller.readable()?;
    let shards = gw.parties_by_shard(&parties).await?;
    futures::future::try_join_all(shards.keys().map(|shard| cache::catch_up(gw, shard))).await?;
    Ok(parties)
}
