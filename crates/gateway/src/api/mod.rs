//! The `/v1` endpoints, one file per group; every answer is `{"status": N, "result": …}`
//! or `{"status": N, "errors": ["…"]}`.

mod commands;
mod packages;
mod parties;
mod query;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use ordo_ledger_client::Contract;
use serde_json::{Value, json};

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
        .route("/v1/query", post(query::query))
        .route("/v1/fetch", post(query::fetch))
}

/// A contract as the API shows it.
pub(crate) fn contract_json(c: &Contract) -> Value {
    json!({
        "contractId": c.contract_id,
        "templateId": c.template_id,
        "payload": c.payload,
        "signatories": c.signatories,
        "observers": c.observers,
    })
}
