//! `POST /v1/create`, `/v1/exercise`, `/v1/create-and-exercise`: a command submitted as
//! the token's (first) actAs party through the shard hosting it, riding failovers with one
//! command id so that a retry never commits twice.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use ordo_ledger_client::{Command, Submission, TransactionResult};
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract_json;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ok};
use crate::state::Gateway;

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRequest {
    template_id: String,
    payload: Value,
    #[serde(default)]
    command_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExerciseRequest {
    template_id: String,
    contract_id: String,
    choice: String,
    #[serde(default = "empty_object")]
    argument: Value,
    #[serde(default)]
    command_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateAndExerciseRequest {
    template_id: String,
    payload: Value,
    choice: String,
    #[serde(default = "empty_object")]
    argument: Value,
    #[serde(default)]
    command_id: Option<String>,
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CreateRequest = body::json(raw)?;
    body::required("templateId", &req.template_id)?;
    body::object("payload", &req.payload)?;
    let command = Command::Create {
        template_id: req.template_id.clone(),
        payload: req.payload,
    };
    let result = submit(&gw, &caller, command, req.command_id).await?;
    let created = result
        .created
        .iter()
        .find(|c| c.template_id == req.template_id)
        .or(result.created.first())
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "transaction {} created no contract visible to the submitter",
                    result.update_id
                ),
            )
        })?;
    Ok(ok(contract_json(created)))
}

pub async fn exercise(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ExerciseRequest = body::json(raw)?;
    body::required("templateId", &req.template_id)?;
    body::required("contractId", &req.contract_id)?;
    body::required("choice", &req.choice)?;
    body::object("argument", &req.argument)?;
    let command = Command::Exercise {
        template_id: req.template_id,
        contract_id: req.contract_id,
        choice: req.choice,
        argument: req.argument,
    };
    let result = submit(&gw, &caller, command, req.command_id).await?;
    Ok(ok(exercise_answer(&result)))
}

pub async fn create_and_exercise(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CreateAndExerciseRequest = body::json(raw)?;
    body::required("templateId", &req.template_id)?;
    body::object("payload", &req.payload)?;
    body::required("choice", &req.choice)?;
    body::object("argument", &req.argument)?;
    let command = Command::CreateAndExercise {
        template_id: req.template_id,
        payload: req.payload,
        choice: req.choice,
        argument: req.argument,
    };
    let result = submit(&gw, &caller, command, req.command_id).await?;
    Ok(ok(exercise_answer(&result)))
}

/// `{"exerciseResult", "events": [{"archived": …} | {"created": …}]}`: archives first, then
/// creates, each in the transaction's order.
fn exercise_answer(result: &TransactionResult) -> Value {
    let archived = result.archived.iter().map(
        |a| json!({ "archived": { "contractId": a.contract_id, "templateId": a.template_id } }),
    );
    let created = result
        .created
        .iter()
        .map(|c| json!({ "created": contract_json(c) }));
    json!({
        "exerciseResult": result.exercise_result,
        "events": archived.chain(created).collect::<Vec<_>>(),
    })
}

async fn submit(
    gw: &Gateway,
    caller: &Caller,
    command: Command,
    command_id: Option<String>,
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
    Ok(client.submit(submission).await?)
}
