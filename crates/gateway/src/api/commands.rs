//! `POST /v1/create`, `/v1/exercise`, `/v1/create-and-exercise`: a command submitted as
//! the token's (first) actAs party through the shard hosting it, riding failovers with one
//! command id so that a retry never commits twice.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use ordo_ledger_client::{Command, DisclosedContract, Submission, TransactionResult};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{Answer, ArchivedView, ContractView, EventView, Failure};
use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::state::Gateway;

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRequest {
    /// `package:Template`, e.g. `iou:Iou`.
    template_id: String,
    /// The template's fields; decimals as strings.
    #[schema(value_type = Object)]
    payload: Value,
    /// The deduplication key: a retry with the same id never commits twice. None: a fresh
    /// one.
    #[serde(default)]
    command_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExerciseRequest {
    template_id: String,
    contract_id: String,
    choice: String,
    /// The choice's argument; none: `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    argument: Value,
    #[serde(default)]
    command_id: Option<String>,
    /// Contracts the choice may use although the acting party does not see them
    /// (explicit disclosure), e.g. the offered Iou of a swap proposal, handed over by its
    /// owner as `/v1/fetch` or `/v1/query` shows it. The shards hosting its stakeholders
    /// check each against the contract they store.
    #[serde(default)]
    disclosed_contracts: Vec<Disclosed>,
}

/// A disclosed contract: a contract exactly as `/v1/fetch` shows it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disclosed {
    contract_id: String,
    template_id: String,
    #[schema(value_type = Object)]
    payload: Value,
    #[serde(default)]
    signatories: Vec<String>,
    #[serde(default)]
    observers: Vec<String>,
}

/// The disclosed contracts of a request, checked field by field.
fn disclosed(list: Vec<Disclosed>) -> Result<Vec<DisclosedContract>, ApiError> {
    list.into_iter()
        .enumerate()
        .map(|(i, d)| {
            body::required(
                &format!("disclosedContracts[{i}].contractId"),
                &d.contract_id,
            )?;
            body::required(
                &format!("disclosedContracts[{i}].templateId"),
                &d.template_id,
            )?;
            body::object(&format!("disclosedContracts[{i}].payload"), &d.payload)?;
            Ok(DisclosedContract {
                contract_id: d.contract_id,
                template_id: d.template_id,
                payload: d.payload,
                signatories: d.signatories,
                observers: d.observers,
            })
        })
        .collect()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateAndExerciseRequest {
    template_id: String,
    #[schema(value_type = Object)]
    payload: Value,
    choice: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    argument: Value,
    #[serde(default)]
    command_id: Option<String>,
    /// As for `/v1/exercise`.
    #[serde(default)]
    disclosed_contracts: Vec<Disclosed>,
}

/// What an exercise did, as the submitter sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExerciseAnswer {
    /// The choice's result (e.g. the new contract's id); null when it returns nothing.
    exercise_result: Option<Value>,
    /// Archives first, then creates, each in the transaction's order.
    events: Vec<EventView>,
}

#[utoipa::path(
    post,
    path = "/v1/create",
    tag = "commands",
    request_body = CreateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The created contract", body = Answer<ContractView>),
        (status = 400, description = "A malformed body, or a payload the template refuses", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token names no actAs party, or one it may not act for", body = Failure),
        (status = 404, description = "An unknown template", body = Failure),
        (status = 409, description = "The command id was already used", body = Failure),
        (status = 503, description = "The shard has no serving replica", body = Failure),
    )
)]
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<ContractView>>, ApiError> {
    let req: CreateRequest = body::json(raw)?;
    body::required("templateId", &req.template_id)?;
    body::object("payload", &req.payload)?;
    let command = Command::Create {
        template_id: req.template_id.clone(),
        payload: req.payload,
    };
    let result = submit(&gw, &caller, command, req.command_id, Vec::new()).await?;
    let created = result
        .created
        .iter()
        .find(|c| c.template_id == req.template_id)
        .or(result.created.first())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "transaction {} created no contract visible to the submitter",
                    result.update_id
                ),
            )
        })?;
    Ok(Answer::ok(ContractView::from(created)))
}

#[utoipa::path(
    post,
    path = "/v1/exercise",
    tag = "commands",
    request_body = ExerciseRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The choice's result and the transaction's events", body = Answer<ExerciseAnswer>),
        (status = 400, description = "A malformed body, or an argument the choice refuses", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token names no actAs party, or one it may not act for", body = Failure),
        (status = 404, description = "An unknown template, choice or contract (archived contracts included)", body = Failure),
        (status = 409, description = "The contract is locked by a pending transaction or not active, or the command id was already used", body = Failure),
        (status = 503, description = "The shard has no serving replica", body = Failure),
    )
)]
pub async fn exercise(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<ExerciseAnswer>>, ApiError> {
    let req: ExerciseRequest = body::json(raw)?;
    body::required("templateId", &req.template_id)?;
    body::required("contractId", &req.contract_id)?;
    body::required("choice", &req.choice)?;
    body::object("argument", &req.argument)?;
    let disclosed = disclosed(req.disclosed_contracts)?;
    let command = Command::Exercise {
        template_id: req.template_id,
        contract_id: req.contract_id,
        choice: req.choice,
        argument: req.argument,
    };
    let result = submit(&gw, &caller, command, req.command_id, disclosed).await?;
    Ok(Answer::ok(exercise_answer(&result)))
}

#[utoipa::path(
    post,
    path = "/v1/create-and-exercise",
    tag = "commands",
    request_body = CreateAndExerciseRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The choice's result and the transaction's events", body = Answer<ExerciseAnswer>),
        (status = 400, description = "A malformed body, or a payload or argument the template refuses", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token names no actAs party, or one it may not act for", body = Failure),
        (status = 404, description = "An unknown template or choice", body = Failure),
        (status = 409, description = "The command id was already used", body = Failure),
        (status = 503, description = "The shard has no serving replica", body = Failure),
    )
)]
pub async fn create_and_exercise(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<ExerciseAnswer>>, ApiError> {
    let req: CreateAndExerciseRequest = body::json(raw)?;
    body::required("templateId", &req.template_id)?;
    body::object("payload", &req.payload)?;
    body::required("choice", &req.choice)?;
    body::object("argument", &req.argument)?;
    let disclosed = disclosed(req.disclosed_contracts)?;
    let command = Command::CreateAndExercise {
        template_id: req.template_id,
        payload: req.payload,
        choice: req.choice,
        argument: req.argument,
    };
    let result = submit(&gw, &caller, command, req.command_id, disclosed).await?;
    Ok(Answer::ok(exercise_answer(&result)))
}

/// Archives first, then creates, each in the transaction's order.
fn exercise_answer(result: &TransactionResult) -> ExerciseAnswer {
    let archived = result
        .archived
        .iter()
        .map(|a| EventView::Archived(ArchivedView::from(a)));
    let created = result
        .created
        .iter()
        .map(|c| EventView::Created(ContractView::from(c)));
    ExerciseAnswer {
        exercise_result: result.exercise_result.clone(),
        events: archived.chain(created).collect(),
    }
}

async fn submit(
    gw: &Gateway,
    caller: &Caller,
    command: Command,
    command_id: Option<String>,
    disclosed_contracts: Vec<DisclosedContract>,
) -> Result<TransactionResult, ApiError> {
    if let Some(id) = &command_id {
        body::required("commandId", id)?;
    }
    let party = caller.actor()?;
    let shard = gw.shard_of(&party).await?.ok_or_else(|| {
        ApiError::forbidden(format!(
            "the token acts as party {party}, which is not allocated on this network"
        ))
    })?;
    let client = gw.shard_client(&shard, &caller.token)?;
    let mut submission = Submission::new(party, command);
    submission.command_id = command_id;
    submission.disclosed_contracts = disclosed_contracts;
    Ok(client.submit(submission).await?)
}
