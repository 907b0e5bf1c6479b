//! `POST /v1/packages` (the package file's bytes), `GET /v1/packages` (admin tokens).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Answer, Failure};
use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::state::Gateway;

/// How long an uploaded package may take to be in effect on every shard.
const VETTING: Duration = Duration::from_secs(10);

/// An uploaded package.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    package_id: String,
}

/// A package vetted on the network.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageView {
    package_id: String,
    name: String,
    /// `package:Template`, e.g. `iou:Iou`.
    template_ids: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/packages",
    operation_id = "upload_package",
    tag = "packages",
    request_body(
        content = String,
        content_type = "application/octet-stream",
        description = "The package file (TOML), as is",
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The package, in effect on every shard", body = Answer<Uploaded>),
        (status = 400, description = "An empty body or an invalid package", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token lacks the `admin` claim", body = Failure),
        (status = 413, description = "The body is larger than `max_body_bytes`", body = Failure),
        (status = 503, description = "A shard has no serving replica, or has not the package in effect in time", body = Failure),
    )
)]
pub async fn upload(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer<Uploaded>>, ApiError> {
    caller.require_admin()?;
    let bytes = body::bytes(raw)?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body must be a package file (TOML), got an empty body",
        ));
    }
    let shards = gw.network().shards();
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
    Ok(Answer::ok(Uploaded {
        package_id: uploaded.package_id,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/packages",
    operation_id = "list_packages",
    tag = "packages",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The vetted packages", body = Answer<Vec<PackageView>>),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token lacks the `admin` claim", body = Failure),
        (status = 503, description = "The shard has no serving replica", body = Failure),
    )
)]
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Json<Answer<Vec<PackageView>>>, ApiError> {
    caller.require_admin()?;
    let Some(first) = gw.network().shards().into_iter().next() else {
        return Ok(Answer::ok(Vec::new()));
    };
    let client = gw.shard_client(&first, &caller.token)?;
    let packages = client
        .read(|c| async move { c.list_packages().await })
        .await?;
    let result = packages
        .into_iter()
        .map(|p| PackageView {
            package_id: p.package_id,
            name: p.name,
            template_ids: p.template_ids,
        })
        .collect();
    Ok(Answer::ok(result))
}
