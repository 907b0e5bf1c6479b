//! The `/v1` endpoints, one file per group; every answer is `{"status": N, "result": …}`
//! or `{"status": N, "errors": ["…"]}`. The answers' shapes are types here (and in the
//! handlers' files), so that the OpenAPI document (`crate::openapi`) describes exactly what
//! the handlers send.

pub(crate) mod commands;
pub(crate) mod packages;
pub(crate) mod parties;
pub(crate) mod query;
pub(crate) mod stream;
pub(crate) mod users;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use ordo_ledger_client::{Archived, Contract};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::filter::Filter;
use crate::state::Gateway;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/parties/allocate", post(parties::allocate))
        .route("/v1/parties", get(parties::list))
        .route("/v1/packages", post(packages::upload).get(packages::list))
        .route("/v1/create", post(commands::create))
        .route("/v1/exercise", post(commands::exercise))
        .route(
            "/v1/create-and-exercise",
            post(commands::create_and_exercise),
        )
        .route("/v1/query", post(query::query).get(query::query_all))
        .route("/v1/fetch", post(query::fetch))
        .route("/v1/user", get(users::own_user).post(users::user))
        .route("/v1/user/create", post(users::create))
        .route("/v1/user/delete", post(users::delete))
        .route("/v1/users", get(users::list))
        .route(
            "/v1/user/rights",
            get(users::own_rights).post(users::rights),
        )
        .route("/v1/user/rights/grant", post(users::grant))
        .route("/v1/user/rights/revoke", post(users::revoke))
        .route("/v1/stream/query", get(stream::stream))
        .route("/v1/stream/fetch", get(stream::stream_fetch))
        .route("/v1/openapi.json", get(crate::openapi::document))
}

/// `{"status": 200, "result": …}`: a successful answer.
#[derive(Serialize, ToSchema)]
pub struct Answer<T> {
    /// Always 200, the HTTP status.
    status: u16,
    result: T,
}

impl<T> Answer<T> {
    pub fn ok(result: T) -> axum::Json<Self> {
        axum::Json(Self {
            status: 200,
            result,
        })
    }
}

/// `{"status": N, "code": "…", "errors": ["…"]}`: why a request failed (`N` is the HTTP
/// status, `code` the error code clients decide on, docs/errors.md), or why a stream
/// ended.
#[derive(Serialize, ToSchema)]
pub struct Failure {
    status: u16,
    code: String,
    errors: Vec<String>,
}

impl From<&ApiError> for Failure {
    fn from(e: &ApiError) -> Self {
        Self {
            status: e.status.as_u16(),
            code: e.code.clone(),
            errors: vec![e.message.clone()],
        }
    }
}

/// A contract as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContractView {
    contract_id: String,
    /// `package:Template`, e.g. `iou:Iou`.
    template_id: String,
    /// The template's fields; decimals are strings.
    #[schema(value_type = Object)]
    payload: Value,
    signatories: Vec<String>,
    observers: Vec<String>,
    /// The contract key, for a template that declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    key: Option<Value>,
}

impl From<&Contract> for ContractView {
    fn from(c: &Contract) -> Self {
        Self {
            contract_id: c.contract_id.clone(),
            template_id: c.template_id.clone(),
            payload: c.payload.clone(),
            signatories: c.signatories.clone(),
            observers: c.observers.clone(),
            key: c.key.clone(),
        }
    }
}

/// An archived contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedView {
    contract_id: String,
    template_id: String,
}

impl From<&Archived> for ArchivedView {
    fn from(a: &Archived) -> Self {
        Self {
            contract_id: a.contract_id.clone(),
            template_id: a.template_id.clone(),
        }
    }
}

/// One event of a transaction: `{"created": …}` or `{"archived": …}`.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EventView {
    Created(ContractView),
    Archived(ArchivedView),
}

/// `query` on `templates` (empty: all) compiled against the templates' field types (read
/// from the network when needed), as `/v1/query` and `/v1/stream/query` match.
pub(crate) async fn filter(
    gw: &Gateway,
    templates: &[String],
    query: &Map<String, Value>,
) -> Result<Filter, ApiError> {
    if query.is_empty() {
        return Filter::compile(templates, query, &Default::default());
    }
    let types = gw.templates.fields(gw, templates).await?;
    Filter::compile(templates, query, &types)
}
