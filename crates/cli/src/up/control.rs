//! `ordo up`'s control API, on 127.0.0.1 (network.json lists it as `control.http`): the
//! operations that need the process owning the nodes. It serves TLS with a certificate of
//! the network's CA and takes only callers presenting one (the operator's), unless
//! `--insecure`; every call needs `Authorization: Bearer <token>` as well, the token being
//! `DIR/control-token` (owner-only).
//!
//! - `POST /shards` `{"name": "shard-3", "replicas": 2}` (replicas optional, 1 to 3, default
//!   2) adds a participant shard to the running network, as the start provisions the first
//!   ones: its database, its replicas' configs, `ordo participant init` (schema and key),
//!   registration through the topology manager; then it records the shard in
//!   `DIR/shards.json`, starts the replicas, waits until one is active and SERVING (and
//!   every one answers `/status`), hands them to the supervisor, which rewrites network.json
//!   (the gateways follow it), and answers with the shard's replicas.
//!
//! Every answer is `{"status": N, "message": "…"}`, plus on success `shard`, `participant`
//! (its member id) and `replicas` (`name`, `role`, `grpc`, `http` each). 400: the body, the
//! name (not `shard-<n>`) or the replica count is wrong; 401: a missing or wrong token; 409:
//! the shard is already in topology; 500: provisioning or starting failed (the message
//! says which step). Nothing is changed by a 400, 401 or 409. Adds run one at a time, each
//! to its end even if the caller goes away.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::configs::ParticipantLinks;
use super::nodes::{self, Handoff, Node};
use super::register::Registrar;
use super::shards::{self, DEFAULT_REPLICAS, Shard, ShardError};
use super::{Env, prepare_shard};

/// The control API while it serves; stopped when dropped.
pub struct Control {
    /// `http://127.0.0.1:port`.
    pub http: String,
    server: JoinHandle<()>,
}

impl Control {
    /// Serves `adder` on a free loopback port: mutual TLS unless the network runs
    /// `--insecure`.
    pub async fn serve(adder: Adder) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("cannot listen for the control API on 127.0.0.1")?;
        let http = adder.env.url(listener.local_addr()?);
        let tls = adder
            .env
            .tls("control", None, ordo_node::tls::ClientAuth::Required)?
            .map(|c| ordo_node::tls::ServerTls::load(&c))
            .transpose()?;
        let app = Router::new()
            .route("/shards", post(add_route))
            .with_state(Arc::new(adder));
        let incoming = ordo_node::tls::accept(listener, tls, "control");
        let server = tokio::spawn(ordo_node::tls::serve_http(
            incoming,
            app,
            std::future::pending(),
        ));
        tracing::info!(%http, "control API serving");
        Ok(Self { http, server })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What adding a shard needs: the network's environment and links, the topology manager
/// (behind a lock that also makes adds run one at a time) and the supervisor to hand the
/// started replicas to.
pub struct Adder {
    env: Arc<Env>,
    links: ParticipantLinks,
    registrar: Mutex<Registrar>,
    supervisor: mpsc::Sender<Handoff>,
}

impl Adder {
    pub fn new(
        env: Arc<Env>,
        links: ParticipantLinks,
        registrar: Registrar,
        supervisor: mpsc::Sender<Handoff>,
    ) -> Self {
        Self {
            env,
            links,
            registrar: Mutex::new(registrar),
            supervisor,
        }
    }

    /// Adds `shard` to the running network; its replicas as network.json lists them.
    async fn add(&self, shard: Shard) -> Result<Added, AddError> {
        let name = shard.name();
        let mut registrar = self.registrar.lock().await;
        let existing = registrar.shards().await?;
        if let Some((_, participant)) = existing.iter().find(|(s, _)| *s == name) {
            return Err(AddError::Exists(format!(
                "shard {name} exists (served by {participant}); `ordo admin status` lists its \
                 replicas"
            )));
        }
        tracing::info!(shard = %name, replicas = shard.replicas, "adding a shard");
        let (launches, member) = prepare_shard(&self.env, &self.links, &shard).await?;
        registrar.register(&member, Some(&name)).await?;
        // Registered for good: from here on the next `ordo up` starts it too.
        shards::record(&self.env.dir, &shard)?;
        let mut started = Vec::new();
        if let Err(e) = self.start(launches, &mut started).await {
            nodes::stop_all(&mut started).await;
            return Err(AddError::Failed(e.context(format!(
                "{name} is registered but its replicas did not start; the next `ordo up` on \
                 this directory starts them again"
            ))));
        }
        let added = Added {
            shard: name.clone(),
            participant: member.member,
            replicas: started.iter().map(|n| n.entry.clone().into()).collect(),
        };
        let (done, handed) = oneshot::channel();
        if let Err(mut refused) = self
            .supervisor
            .send(Handoff {
                nodes: started,
                done,
            })
            .await
        {
            nodes::stop_all(&mut refused.0.nodes).await;
            return Err(AddError::Failed(anyhow::anyhow!(
                "the network is stopping; {name} is registered and the next `ordo up` starts it"
            )));
        }
        handed
            .await
            .map_err(|_| AddError::Failed(anyhow::anyhow!("the network is stopping")))?;
        tracing::info!(shard = %name, "shard added");
        Ok(added)
    }

    /// Starts the replicas into `started` and waits until they are ready.
    async fn start(
        &self,
        launches: Vec<nodes::Launch>,
        started: &mut Vec<Node>,
    ) -> anyhow::Result<()> {
        for launch in launches {
            self.env.spawn(launch, started)?;
        }
        nodes::wait_ready(started).await?;
        nodes::refresh_roles(started).await;
        Ok(())
    }
}

/// Why a shard was not added.
#[derive(Debug, thiserror::Error)]
enum AddError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Invalid(#[from] ShardError),
    #[error("{0}")]
    Exists(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl AddError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Exists(_) => StatusCode::CONFLICT,
            Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    name: String,
    #[serde(default = "default_replicas")]
    replicas: usize,
}

fn default_replicas() -> usize {
    DEFAULT_REPLICAS
}

/// The added shard, as the answer reports it.
#[derive(serde::Serialize)]
struct Added {
    shard: String,
    participant: String,
    replicas: Vec<AddedReplica>,
}

#[derive(serde::Serialize)]
struct AddedReplica {
    name: String,
    role: String,
    grpc: String,
    http: String,
}

impl From<crate::network::NodeEntry> for AddedReplica {
    fn from(e: crate::network::NodeEntry) -> Self {
        Self {
            name: e.name,
            role: e.role,
            grpc: e.grpc,
            http: e.http,
        }
    }
}

fn answer(status: StatusCode, message: String, extra: serde_json::Value) -> Response {
    let mut body = json!({ "status": status.as_u16(), "message": message });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

async fn add_route(State(adder): State<Arc<Adder>>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|t| same_token(t, &adder.env.secrets.control)) {
        return answer(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: use the control-token file next to network.json".into(),
            json!({}),
        );
    }
    let shard = serde_json::from_slice::<AddRequest>(&body)
        .map_err(|e| {
            AddError::BadRequest(format!(
                "the body is not {{\"name\": \"shard-<n>\", \"replicas\": 1..=3}}: {e}"
            ))
        })
        .and_then(|r| Ok(Shard::new(&r.name, r.replicas)?));
    let outcome = match shard {
        // Spawned: the add runs to its end even if the caller goes away.
        Ok(shard) => tokio::spawn(async move { adder.add(shard).await })
            .await
            .unwrap_or_else(|e| Err(AddError::Failed(anyhow::anyhow!("the add failed: {e}")))),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(added) => {
            let message = format!(
                "{} added, served by {}: {}",
                added.shard,
                added.participant,
                added
                    .replicas
                    .iter()
                    .map(|r| format!("{} ({})", r.name, r.role))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            answer(
                StatusCode::OK,
                message,
                serde_json::to_value(&added).unwrap_or_default(),
            )
        }
        Err(e) => {
            if e.status() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "adding a shard failed");
            }
            answer(e.status(), e.to_string(), json!({}))
        }
    }
}

/// Compares in time independent of where the tokens differ.
fn same_token(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("ab", "abc"));
        assert!(!same_token("", "abc"));
    }

    #[test]
    fn errors_map_to_statuses() {
        let invalid = AddError::from(ShardError::Replicas(9));
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        assert!(invalid.to_string().contains("1 to 3"), "{invalid}");
        assert_eq!(AddError::Exists("x".into()).status(), StatusCode::CONFLICT);
        let failed = AddError::from(anyhow::anyhow!("boom").context("starting"));
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.to_string(), "starting: boom");
    }
}
