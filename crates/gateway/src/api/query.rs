//! `POST /v1/query` and `POST /v1/fetch`: the active contracts the token's parties see,
//! read from every shard hosting one of them (no local cache yet: each query asks them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use ordo_ledger_client::{Contract, Filter};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::contract_json;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ok};
use crate::state::Gateway;

#[derive(Deserialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchRequest {
    contract_id: String,
}

pub async fn query(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: QueryRequest = body::json(raw)?;
    for (i, t) in req.template_ids.iter().enumerate() {
        body::required(&format!("templateIds[{i}]"), t)?;
    }
    let contracts = active_contracts(&gw, &caller, &req.template_ids).await?;
    let result: Vec<Value> = contracts
        .iter()
        .filter(|c| matches(c, &req.query))
        .map(contract_json)
        .collect();
    Ok(ok(result))
}

pub async fn fetch(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: FetchRequest = body::json(raw)?;
    body::required("contractId", &req.contract_id)?;
    let contracts = active_contracts(&gw, &caller, &[]).await?;
    let found = contracts
        .iter()
        .find(|c| c.contract_id == req.contract_id)
        .map(contract_json);
    Ok(ok(found.unwrap_or(Value::Null)))
}

/// Whether every field of `query` equals the contract's.
fn matches(c: &Contract, query: &Map<String, Value>) -> bool {
    query.iter().all(|(k, v)| c.payload.get(k) == Some(v))
}

/// The active contracts of `templates` (empty: all) visible to the caller's parties, from
/// each shard hosting one of them, each contract once.
async fn active_contracts(
    gw: &Gateway,
    caller: &Caller,
    templates: &[String],
) -> Result<Vec<Contract>, ApiError> {
    let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for party in caller.readable()? {
        // A party that is not allocated sees nothing.
        if let Some(shard) = gw.shard_of(&party).await? {
            by_shard.entry(shard).or_default().push(party);
        }
    }
    let reads = by_shard.into_iter().map(|(shard, parties)| {
        let filter = Filter {
            parties,
            templates: templates.to_vec(),
        };
        async move {
            let client = gw.shard_client(&shard, &caller.token)?;
            let acs = client
                .read(|c| {
                    let filter = filter.clone();
                    async move { c.active_contracts(&filter).await }
                })
                .await?;
            Ok::<_, ApiError>(acs.contracts)
        }
    });
    let mut seen = BTreeSet::new();
    let mut all = Vec::new();
    for contracts in futures::future::try_join_all(reads).await? {
        for c in contracts {
            if seen.insert(c.contract_id.clone()) {
                all.push(c);
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
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
        assert!(matches(&c, &q(json!({}))));
        assert!(matches(&c, &q(json!({"owner": "alice"}))));
        assert!(!matches(&c, &q(json!({"owner": "bob"}))));
        assert!(!matches(&c, &q(json!({"missing": 1}))));
    }
}
