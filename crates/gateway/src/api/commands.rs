//! `POST /v1/create`, `/v1/exercise`, `/v1/create-and-exercise`: a command submitted as
//! the token's first actAs party (or `meta.actAs`) through the shard hosting it, riding
//! failovers with one command id so that a retry never commits twice.

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
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExerciseRequest {
    template_id: String,
    /// The contract to exercise; or give `key`.
    #[serde(default)]
    contract_id: Option<String>,
    /// Instead of `contractId`: the key of the active contract to exercise (the template
    /// must declare one), e.g. `{"authority": "reg", "name": "ann"}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    key: Option<Value>,
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
    #[serde(default)]
    meta: Option<Meta>,
}

/// A command's metadata (Daml JSON API's `meta`); every field is optional.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Meta {
    /// The parties to act as, each in the token's `actAs` and all hosted on one shard.
    /// Default: the token's first `actAs` party.
    #[serde(default, deserialize_with = "one_or_many")]
    #[schema(value_type = Vec<String>)]
    act_as: Vec<String>,
    /// Parties whose contracts the command may read, each in the token's `actAs` or
    /// `readAs`.
    #[serde(default, deserialize_with = "one_or_many")]
    #[schema(value_type = Vec<String>)]
    read_as: Vec<String>,
    /// As the request's `commandId` (give it in one place).
    #[serde(default)]
    command_id: Option<String>,
    /// Carried into the transaction (`workflowId` of its updates).
    #[serde(default)]
    workflow_id: Option<String>,
    /// Echoed in the command's completion.
    #[serde(default)]
    submission_id: Option<String>,
    /// `{"type": "Duration", "durationInMillis": N}`: how long a success of the same
    /// command id keeps a resubmission a duplicate, at most the domain's deduplication
    /// period (its default); or `{"type": "Offset", "offset": "N"}`: a success completed
    /// after completion offset N of the acting party's shard does.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    deduplication_period: Option<Value>,
    /// As the request's `disclosedContracts`.
    #[serde(default)]
    disclosed_contracts: Vec<Disclosed>,
}

/// A command's deduplication period.
enum Dedup {
    Duration(std::time::Duration),
    /// A completion offset of the acting party's shard.
    Offset(i64),
}

/// `meta.deduplicationPeriod`: `{"type": "Duration", "durationInMillis": N}` (N ≥ 1), or
/// `{"type": "Offset", "offset": "N"}` (N ≥ 1, a string or a number).
fn deduplication_period(period: &Value) -> Result<Dedup, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!("invalid field `meta.deduplicationPeriod`: {why}"))
    };
    let only = |fields: &[&str]| match period
        .as_object()
        .and_then(|o| o.keys().find(|k| !fields.contains(&k.as_str())))
    {
        Some(extra) => Err(bad(&format!("unknown field `{extra}`"))),
        None => Ok(()),
    };
    match period.get("type").and_then(Value::as_str) {
        Some("Duration") => {}
        Some("Offset") => {
            only(&["type", "offset"])?;
            let offset = match period.get("offset") {
                Some(Value::String(s)) => s.parse::<i64>().ok(),
                Some(Value::Number(n)) => n.as_i64(),
                _ => None,
            };
            return offset
                .filter(|o| *o > 0)
                .map(Dedup::Offset)
                .ok_or_else(|| bad("`offset` must be a completion offset, 1 or more"));
        }
        _ => {
            return Err(bad(
                "expected {\"type\": \"Duration\", \"durationInMillis\": N} or \
                 {\"type\": \"Offset\", \"offset\": \"N\"}",
            ));
        }
    }
    let ms = period
        .get("durationInMillis")
        .and_then(Value::as_u64)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            bad("`durationInMillis` must be a whole number of milliseconds, 1 or more")
        })?;
    only(&["type", "durationInMillis"])?;
    Ok(Dedup::Duration(std::time::Duration::from_millis(ms)))
}

/// A list of parties, also given as one party (Daml's JSON API accepts both).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(ps) => ps,
    })
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
    #[serde(default)]
    meta: Option<Meta>,
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
    let result = submit(&gw, &caller, command, req.command_id, Vec::new(), req.meta).await?;
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
        (status = 404, description = "An unknown template, choice or contract (archived contracts included), or no active contract with the key", body = Failure),
        (status = 409, description = "The contract is locked by a pending transaction or not active, the command id was already used, or the transaction creates a contract whose key is taken", body = Failure),
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
    body::required("choice", &req.choice)?;
    body::object("argument", &req.argument)?;
    let command = match (req.contract_id, req.key) {
        (Some(contract_id), None) => {
            body::required("contractId", &contract_id)?;
            Command::Exercise {
                template_id: req.template_id,
                contract_id,
                choice: req.choice,
                argument: req.argument,
            }
        }
        (None, Some(key)) => Command::ExerciseByKey {
            template_id: req.template_id,
            key,
            choice: req.choice,
            argument: req.argument,
        },
        _ => {
            return Err(ApiError::bad_request(
                "give the contract to exercise once: `contractId` or `key`",
            ));
        }
    };
    let result = submit(
        &gw,
        &caller,
        command,
        req.command_id,
        req.disclosed_contracts,
        req.meta,
    )
    .await?;
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
    let command = Command::CreateAndExercise {
        template_id: req.template_id,
        payload: req.payload,
        choice: req.choice,
        argument: req.argument,
    };
    let result = submit(
        &gw,
        &caller,
        command,
        req.command_id,
        req.disclosed_contracts,
        req.meta,
    )
    .await?;
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
    disclosed_contracts: Vec<Disclosed>,
    meta: Option<Meta>,
) -> Result<TransactionResult, ApiError> {
    let meta = meta.unwrap_or_default();
    let deduplication = meta
        .deduplication_period
        .as_ref()
        .map(deduplication_period)
        .transpose()?;
    let command_id = match (command_id, meta.command_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give the command id once: `commandId` or `meta.commandId`",
            ));
        }
        (id, meta_id) => id.or(meta_id),
    };
    if let Some(id) = &command_id {
        body::required("commandId", id)?;
    }
    let disclosed_contracts = match (disclosed_contracts.is_empty(), meta.disclosed_contracts) {
        (false, m) if !m.is_empty() => {
            return Err(ApiError::bad_request(
                "give the disclosed contracts once: `disclosedContracts` or \
                 `meta.disclosedContracts`",
            ));
        }
        (true, m) => disclosed(m)?,
        (false, _) => disclosed(disclosed_contracts)?,
    };
    let act_as = if meta.act_as.is_empty() {
        vec![caller.actor()?]
    } else {
        for (i, p) in meta.act_as.iter().enumerate() {
            body::required(&format!("meta.actAs[{i}]"), p)?;
            if !caller.rights.act_as.iter().any(|a| a.as_str() == p) {
                return Err(ApiError::forbidden(format!(
                    "the token does not allow acting as party {p} (meta.actAs)"
                )));
            }
        }
        meta.act_as
    };
    for (i, p) in meta.read_as.iter().enumerate() {
        body::required(&format!("meta.readAs[{i}]"), p)?;
        if !caller.rights.readable().iter().any(|r| r.as_str() == p) {
            return Err(ApiError::forbidden(format!(
                "the token does not allow reading as party {p} (meta.readAs)"
            )));
        }
    }
    // The shard of the first acting party; the participant refuses the others if they
    // live elsewhere.
    let party = &act_as[0];
    let shard = gw.shard_of(party).await?.ok_or_else(|| {
        ApiError::forbidden(format!(
            "the token acts as party {party}, which is not allocated on this network"
        ))
    })?;
    let client = gw.shard_client(&shard, &caller.token)?;
    let mut submission = Submission::new(party.clone(), command);
    submission.act_as = act_as;
    submission.read_as = meta.read_as;
    submission.command_id = command_id;
    submission.workflow_id = meta.workflow_id.unwrap_or_default();
    submission.submission_id = meta.submission_id.unwrap_or_default();
    match deduplication {
        Some(Dedup::Duration(d)) => submission.deduplication_duration = Some(d),
        Some(Dedup::Offset(o)) => submission.deduplication_offset = Some(o),
        None => {}
    }
    submission.disclosed_contracts = disclosed_contracts;
    Ok(client.submit(submission).await?)
}
