//! `POST /v1/packages` (the package file's bytes), `GET /v1/packages` (admin tokens).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use serde_json::json;

use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ok};
use crate::state::Gateway;

/// How long an uploaded package may take to be in effect on every shard.
const VETTING: Duration = Duration::from_secs(10);

pub async fn upload(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let bytes = body::bytes(raw)?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be a package file (TOML), got an empty body",
        ));
    }
    let shards = gw.network.shards();
    let Some(first) = shards.first() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the network file lists no participant shard",
        ));
    };
    let client = gw.shard_client(first, &caller.token)?;
    let uploaded = client
        .read(|c| {
            let bytes = bytes.to_vec();
            async move { c.upload_package(bytes).await }
        })
        .await?;
    // Packages are vetted through topology: the upload answers once the package is in
    // effect on the receiving shard. Commands may go to any shard next, so the answer
    // waits until every shard has it.
    let deadline = Instant::now() + VETTING;
    for shard in &shards[1..] {
        let client = gw.shard_client(shard, &caller.token)?;
        loop {
            let packages = client
                .read(|c| async move { c.list_packages().await })
                .await?;
            if packages.iter().any(|p| p.package_id == uploaded.package_id) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "package {} is vetted but not yet in effect on {shard} after {VETTING:?}",
                        uploaded.package_id
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(ok(json!({ "packageId": uploaded.package_id })))
}

pub async fn list(State(gw): State<Arc<Gateway>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let Some(first) = gw.network.shards().into_iter().next() else {
        return Ok(ok(json!([])));
    };
    let client = gw.shard_client(&first, &caller.token)?;
    let packages = client
        .read(|c| async move { c.list_packages().await })
        .await?;
    let result: Vec<_> = packages
        .iter()
        .map(
            |p| json!({ "packageId": p.package_id, "name": p.name, "templateIds": p.template_ids }),
        )
        .collect();
    Ok(ok(result))
}
