//! `GET /v1/openapi.json`: an OpenAPI 3 document, served without a token, that documents
//! every route the gateway serves under `/v1` with its method, and whose references all
//! resolve.

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::harness::Env;

/// Every route the gateway serves under /v1, with its method.
const SERVED: [(&str, &str); 22] = [
    ("/v1/parties/allocate", "post"),
    ("/v1/parties", "get"),
    ("/v1/packages", "post"),
    ("/v1/packages", "get"),
    ("/v1/create", "post"),
    ("/v1/exercise", "post"),
    ("/v1/create-and-exercise", "post"),
    ("/v1/query", "post"),
    ("/v1/query", "get"),
    ("/v1/fetch", "post"),
    ("/v1/stream/query", "get"),
    ("/v1/stream/fetch", "get"),
    ("/v1/openapi.json", "get"),
    ("/v1/user", "get"),
    ("/v1/user", "post"),
    ("/v1/user/create", "post"),
    ("/v1/user/delete", "post"),
    ("/v1/users", "get"),
    ("/v1/user/rights", "get"),
    ("/v1/user/rights", "post"),
    ("/v1/user/rights/grant", "post"),
    ("/v1/user/rights/revoke", "post"),
];

pub async fn run(env: &Env) -> Result<()> {
    let r = env
        .http
        .get(format!("{}/v1/openapi.json", env.base))
        .send()
        .await?;
    ensure!(r.status() == 200, "{r:?}");
    let doc: Value = r.json().await.context("the document is not JSON")?;
    ensure!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3: {}",
        doc["openapi"]
    );
    ensure!(
        doc["info"]["title"].is_string() && doc["info"]["version"].is_string(),
        "{}",
        doc["info"]
    );
    let paths = doc["paths"].as_object().context("no paths")?;
    for (path, method) in SERVED {
        let op = &paths
            .get(path)
            .with_context(|| format!("{path} is not documented"))?[method];
        ensure!(op.is_object(), "{method} {path} is not documented");
        let responses = op["responses"].as_object().context("responses")?;
        ensure!(
            responses.contains_key("200") || responses.contains_key("101"),
            "{method} {path}: no success answer documented"
        );
        if path != "/v1/openapi.json" {
            ensure!(
                responses.contains_key("401"),
                "{method} {path}: 401 not documented"
            );
            ensure!(
                op["security"][0].get("bearer").is_some(),
                "{method} {path}: no bearer security"
            );
        }
    }
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().map_or(0, |o| o.len()))
        .sum();
    ensure!(
        documented == SERVED.len(),
        "{documented} operations documented, {} served",
        SERVED.len()
    );
    ensure!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer",
        "no bearer scheme"
    );
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    ensure!(!refs.is_empty(), "no schema is referenced");
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .with_context(|| format!("unexpected reference {r}"))?;
        ensure!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
    Ok(())
}

fn collect_refs<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                refs.push(r);
            }
            o.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
