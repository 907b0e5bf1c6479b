//! One replica of an active-passive service, as a node runs it: the lease, the terms in
//! which this replica is active (each a *session* the node supplies), the health it
//! reports, and its HTTP `/status` and `/admin/step-down` for operators.
//!
//! A node builds a [`Replica`] at start, then calls [`Replica::run_terms`] with its
//! session. While passive it stays warm (database pool and sequencer connection open,
//! health NOT_SERVING). When the lease is won a session starts with the term's fencing
//! token; it resumes from the database, calls [`Term::ready`] once it processes (health
//! SERVING), and fences each write with [`Replica::fence`]. When the term ends — lease
//! lost, expiry near, or a step-down — the session is cancelled and dropped at once, and
//! health returns to NOT_SERVING.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use ordo_core::Timestamp;
use ordo_node::config::{ConfigError, Invalid};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LeaseConfig;
use crate::error::{FenceError, LeaseError};
use crate::runtime::{Lease, LeaseHandle};
use crate::state::Role;
use crate::store;

/// The `[replica]` section of a node's configuration. Durations are written with their unit
/// (`ttl = "3s"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaConfig {
    /// This replica's name, unique among the service's replicas (e.g. `participant-1b`).
    /// `[A-Za-z0-9._-]`; `/status` and the answers of a passive replica name the active one
    /// by it. Empty: the node's name. The lease holder is this name plus a per-process suffix, so
    /// a restarted replica never inherits its earlier term.
    pub name: String,
    /// How long a taken or renewed lease is valid: an active replica that dies is replaced
    /// after at most this long (plus the passive replica's next try).
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub ttl: Duration,
    /// How often the active replica renews, and a passive one tries to take the lease;
    /// below `ttl - safety_margin`.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub renew_period: Duration,
    /// The active replica stops this long before its lease would expire unrenewed; below
    /// `ttl`.
    #[serde(with = "ordo_node::config::HumanDuration")]
    pub safety_margin: Duration,
    /// A file holding the bearer token that `POST /admin/step-down` requires. Unset: the
    /// endpoint is disabled (a graceful failover is then a SIGTERM of the active replica).
    pub admin_token_file: Option<PathBuf>,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        let lease = LeaseConfig::default();
        Self {
            name: String::new(),
            ttl: lease.ttl,
            renew_period: lease.renew_period,
            safety_margin: lease.safety_margin,
            admin_token_file: None,
        }
    }
}

impl ReplicaConfig {
    /// The replica name: `name`, or `default_name` when empty.
    pub fn name_or<'a>(&'a self, default_name: &'a str) -> &'a str {
        if self.name.is_empty() {
            default_name
        } else {
            &self.name
        }
    }

    /// The lease configuration for `service`, with a holder unique to this process.
    pub fn lease_config(&self, service: &str, default_name: &str) -> LeaseConfig {
        let suffix: u32 = rand::random();
        LeaseConfig {
            service: service.to_owned(),
            holder: format!("{}#{suffix:08x}", self.name_or(default_name)),
            ttl: self.ttl,
            renew_period: self.renew_period,
            safety_margin: self.safety_margin,
        }
    }

    /// Options for the connections of the service's database pool. A replica frozen or
    /// cut off in the middle of a transaction would hold its row locks for as long as its
    /// connection lives, and so block the next active replica; Postgres ends such a
    /// session once it has idled in its transaction for a ttl, by which time that replica's
    /// lease has lapsed anyway.
    pub fn connect_options(
        &self,
        options: sqlx::postgres::PgConnectOptions,
    ) -> sqlx::postgres::PgConnectOptions {
        options.options([(
            "idle_in_transaction_session_timeout",
            format!("{}ms", self.ttl.as_millis()),
        )])
    }

    /// Checks the timing and the name, reporting fields as `replica.<field>`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !self.name.is_empty()
            && !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Invalid::new(
                "replica.name",
                format!("{:?} must be letters, digits, '-', '_' or '.'", self.name),
            ));
        }
        self.lease_config("service", "replica")
            .validate()
            .map_err(|e: ConfigError| Invalid::new(replica_field(e.field), e.reason))
    }
}

fn replica_field(field: &str) -> &'static str {
    match field {
        "ttl" => "replica.ttl",
        "renew_period" => "replica.renew_period",
        "safety_margin" => "replica.safety_margin",
        _ => "replica",
    }
}

/// What `GET /status` answers: one replica's view of itself and of its service's lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicaStatus {
    /// The replica's name.
    pub name: String,
    /// The logical service (`shard-1`, `mediator`, `topology`).
    pub service: String,
    /// `active` or `passive`.
    pub role: String,
    /// True while it serves (active and processing).
    pub serving: bool,
    pub pid: u32,
    /// This process's lease holder id and, when active, its fencing token.
    pub holder: String,
    pub token: Option<i64>,
    /// The lease row: who holds it, with which token, and whether it is unexpired.
    pub lease_holder: Option<String>,
    pub lease_token: Option<i64>,
    pub lease_live: Option<bool>,
    /// The last processed sequencer event's timestamp.
    pub cursor: Option<String>,
    /// How long after it was sequenced the last event was processed, in milliseconds.
    pub lag_ms: Option<u64>,
    /// The last error that ended a session or failed a step, if any.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Progress {
    cursor: Option<Timestamp>,
    lag: Option<Duration>,
    last_error: Option<String>,
    /// When the current term began (lease won), until it is ready.
    term_started: Option<Instant>,
}

struct Inner {
    lease: LeaseHandle,
    pool: PgPool,
    name: String,
    admin_token: Option<String>,
    health: ordo_node::Health,
    ready: watch::Sender<bool>,
    progress: Mutex<Progress>,
}

/// A replica of one service; cheap to clone.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

/// One term of this replica as the active one: the fencing token it writes with and a
/// token cancelled when the term ends. Every task the session spawns must stop with it.
pub struct Term {
    pub token: i64,
    pub stop: CancellationToken,
    replica: Replica,
}

impl Term {
    /// The session resumed and processes: report SERVING and record the takeover time.
    pub async fn ready(&self) {
        let started = self.replica.inner.progress.lock().term_started.take();
        if let Some(started) = started {
            let secs = started.elapsed().as_secs_f64();
            metrics::histogram!("ordo_lease_takeover_seconds", "service" => self.replica.service().to_owned())
                .record(secs);
            tracing::info!(service = %self.replica.service(), token = self.token, takeover_ms = (secs * 1e3) as u64, "active replica serving");
        }
        self.replica.set_serving(true).await;
    }
}

impl Replica {
    /// Creates the lease table if missing and starts competing for `service`'s lease.
    /// `health` and `ready` are the node's: the replica reports SERVING only while active
    /// and ready.
    pub async fn start(
        pool: PgPool,
        service: &str,
        config: &ReplicaConfig,
        default_name: &str,
        health: ordo_node::Health,
        ready: watch::Sender<bool>,
    ) -> Result<(Self, JoinHandle<()>), LeaseError> {
        let admin_token = match &config.admin_token_file {
            None => None,
            Some(path) => Some(read_token(path).map_err(|reason| {
                LeaseError::Config(ConfigError {
                    node: "replica",
                    field: "replica.admin_token_file",
                    reason,
                })
            })?),
        };
        store::ensure_schema(&pool).await?;
        let (lease, task) = Lease::spawn(pool.clone(), config.lease_config(service, default_name))?;
        let replica = Self {
            inner: Arc::new(Inner {
                lease,
                pool,
                name: config.name_or(default_name).to_owned(),
                admin_token,
                health,
                ready,
                progress: Mutex::new(Progress::default()),
            }),
        };
        tracing::info!(service, replica = %replica.name(), holder = %replica.inner.lease.holder(), "replica started; competing for the lease");
        Ok((replica, task))
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn service(&self) -> &str {
        self.inner.lease.service()
    }

    pub fn lease(&self) -> &LeaseHandle {
        &self.inner.lease
    }

    pub fn is_active(&self) -> bool {
        matches!(self.inner.lease.current(), Role::Active { .. })
    }

    /// The fence check for a write transaction: see [`LeaseHandle::fence`].
    pub async fn fence(&self, conn: &mut PgConnection) -> Result<i64, FenceError> {
        self.inner.lease.fence(conn).await
    }

    /// Records the last processed event (for `/status` and the lag gauge).
    pub fn processed(&self, at: Timestamp) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let lag = Duration::from_micros(now.saturating_sub(at.micros()).max(0) as u64);
        metrics::gauge!("ordo_replica_lag_seconds", "service" => self.service().to_owned())
            .set(lag.as_secs_f64());
        let mut p = self.inner.progress.lock();
        p.cursor = Some(at);
        p.lag = Some(lag);
    }

    /// Records an error for `/status`.
    pub fn error(&self, error: impl std::fmt::Display) {
        self.inner.progress.lock().last_error = Some(error.to_string());
    }

    async fn set_serving(&self, serving: bool) {
        self.inner.health.set(serving).await;
        let _ = self.inner.ready.send(serving);
    }

    fn serving(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Runs `session` for every term in which this replica holds the lease, until `stop`.
    /// A term ends when the lease is lost or given up: its session is then cancelled and
    /// dropped at once, mid-statement if need be (its open transaction rolls back; fencing
    /// refuses any commit the drop did not prevent). On `stop` the session is cancelled and
    /// awaited, so it finishes in-flight work. A session that returns early (an error) is
    /// restarted after `retry` while the term lasts.
    pub async fn run_terms<F, Fut>(&self, stop: &CancellationToken, retry: Duration, mut session: F)
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut role = self.inner.lease.role();
        loop {
            // Passive: wait to win the lease.
            let token = loop {
                if role.has_changed().is_err() {
                    // The lease runtime is gone: this replica can never be active again.
                    self.set_serving(false).await;
                    return;
                }
                if let Role::Active { token } = *role.borrow_and_update() {
                    break token;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = role.changed() => if changed.is_err() { return },
                }
            };
            self.inner.progress.lock().term_started = Some(Instant::now());
            let term_stop = stop.child_token();
            // Sessions of this term, until it ends.
            'term: loop {
                let run = session(Term {
                    token,
                    stop: term_stop.clone(),
                    replica: self.clone(),
                });
                tokio::pin!(run);
                let lost = loop {
                    tokio::select! {
                        () = &mut run => break false,
                        changed = role.changed() => {
                            if changed.is_err() || *role.borrow_and_update() != (Role::Active { token }) {
                                break true;
                            }
                        }
                        () = stop.cancelled() => {
                            // Graceful: let the session see the cancellation and finish.
                            term_stop.cancel();
                            run.await;
                            self.set_serving(false).await;
                            return;
                        }
                    }
                };
                if lost {
                    term_stop.cancel();
                    tracing::warn!(service = %self.service(), token, "term ended: stopped processing");
                    break 'term;
                }
                // The session ended on its own (it failed): retry within the term.
                self.set_serving(false).await;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                    changed = role.changed() => {
                        if changed.is_err() || *role.borrow_and_update() != (Role::Active { token }) {
                            term_stop.cancel();
                            break 'term;
                        }
                    }
                }
            }
            self.set_serving(false).await;
        }
    }

    /// Ends this replica's term (if active) and releases the lease so that another replica
    /// takes over within one renew period.
    pub async fn step_down(&self) -> Result<(), LeaseError> {
        self.inner.lease.step_down().await
    }

    /// The message of an UNAVAILABLE answer on this (passive) replica: who is active.
    pub async fn unavailable_message(&self) -> String {
        let service = self.service();
        let me = self.name();
        match store::current(&self.inner.pool, service).await {
            Ok(Some((holder, token, true))) => format!(
                "replica {me} of {service} is passive; the active replica is {} (fencing token {token})",
                holder_name(&holder)
            ),
            Ok(_) => format!(
                "replica {me} of {service} is passive and no replica holds the lease right now (failover in progress); retry shortly"
            ),
            Err(e) => {
                format!("replica {me} of {service} is passive; the active replica is unknown ({e})")
            }
        }
    }

    /// This replica's status, including the lease row.
    pub async fn status(&self) -> ReplicaStatus {
        let (token, role) = match self.inner.lease.current() {
            Role::Active { token } => (Some(token), "active"),
            Role::Passive => (None, "passive"),
        };
        let row = store::current(&self.inner.pool, self.service()).await;
        let (cursor, lag, mut last_error) = {
            let p = self.inner.progress.lock();
            (p.cursor, p.lag, p.last_error.clone())
        };
        let (lease_holder, lease_token, lease_live) = match row {
            Ok(Some((h, t, live))) => (Some(h), Some(t), Some(live)),
            Ok(None) => (None, None, None),
            Err(e) => {
                last_error = Some(format!("reading the lease: {e}"));
                (None, None, None)
            }
        };
        ReplicaStatus {
            name: self.name().to_owned(),
            service: self.service().to_owned(),
            role: role.into(),
            serving: self.serving(),
            pid: std::process::id(),
            holder: self.inner.lease.holder().to_owned(),
            token,
            lease_holder,
            lease_token,
            lease_live,
            cursor: cursor.map(|c| c.to_string()),
            lag_ms: lag.map(|l| l.as_millis() as u64),
            last_error,
        }
    }

    /// `GET /status` and `POST /admin/step-down`, for the node's HTTP port.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/status", get(status_route))
            .route("/admin/step-down", post(step_down_route))
            .with_state(self.clone())
    }
}

/// The replica name of a lease holder id (`name#suffix`).
pub fn holder_name(holder: &str) -> &str {
    holder.split_once('#').map_or(holder, |(name, _)| name)
}

fn read_token(path: &std::path::Path) -> Result<String, String> {
    ordo_node::tls::check_private(path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_owned())
}

async fn status_route(State(replica): State<Replica>) -> Json<ReplicaStatus> {
    Json(replica.status().await)
}

async fn step_down_route(
    State(replica): State<Replica>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    let answer = |code: StatusCode, message: String| {
        (
            code,
            Json(serde_json::json!({ "status": code.as_u16(), "message": message })),
        )
    };
    let Some(expected) = &replica.inner.admin_token else {
        return answer(
            StatusCode::FORBIDDEN,
            "step-down is disabled on this replica: configure replica.admin_token_file".into(),
        );
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(expected.as_str()) {
        return answer(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token for /admin/step-down".into(),
        );
    }
    if !replica.is_active() {
        return answer(StatusCode::CONFLICT, replica.unavailable_message().await);
    }
    match replica.step_down().await {
        Ok(()) => {
            tracing::info!(service = %replica.service(), replica = %replica.name(), "stepped down on request");
            answer(
                StatusCode::OK,
                format!(
                    "replica {} of {} stepped down and released the lease",
                    replica.name(),
                    replica.service()
                ),
            )
        }
        Err(e) => {
            replica.error(&e);
            answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
