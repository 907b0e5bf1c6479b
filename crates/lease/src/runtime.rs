//! Drives the state machine against the database: one task per lease, at most one
//! statement in flight, the role published on a watch channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

use crate::config::LeaseConfig;
use crate::error::{FenceError, LeaseError};
use crate::state::{AcquireResult, Command, Input, Machine, RenewResult, Role, State};
use crate::store;

/// Entry point: see [`Lease::spawn`].
pub struct Lease;

impl Lease {
    /// Starts competing for `config.service`'s lease in `pool`'s database (whose schema must
    /// include [`store::SCHEMA`]). The task runs until every clone of the handle is dropped;
    /// it then releases the lease if held and ends.
    pub fn spawn(
        pool: PgPool,
        config: LeaseConfig,
    ) -> Result<(LeaseHandle, JoinHandle<()>), LeaseError> {
        config.validate()?;
        crate::metrics::register(&config.service);
        let ids = Ids {
            service: config.service.as_str().into(),
            holder: config.holder.as_str().into(),
        };
        let (role_tx, role_rx) = watch::channel(Role::Passive);
        let (req_tx, req_rx) = mpsc::channel(8);
        let handle = LeaseHandle {
            ids: ids.clone(),
            role: role_rx,
            requests: req_tx,
        };
        let runner = Runner {
            pool,
            config,
            ids,
            role: role_tx,
        };
        Ok((handle, tokio::spawn(runner.run(req_rx))))
    }
}

#[derive(Clone, Debug)]
struct Ids {
    service: Arc<str>,
    holder: Arc<str>,
}

/// The application's side of a lease.
#[derive(Clone, Debug)]
pub struct LeaseHandle {
    ids: Ids,
    role: watch::Receiver<Role>,
    /// Step-down requests, each answered once the lease is released.
    requests: mpsc::Sender<oneshot::Sender<()>>,
}

impl LeaseHandle {
    pub fn service(&self) -> &str {
        &self.ids.service
    }

    pub fn holder(&self) -> &str {
        &self.ids.holder
    }

    /// The role as it changes. Stop processing at once when it turns passive.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The role now; passive if the runtime has stopped.
    pub fn current(&self) -> Role {
        if self.role.has_changed().is_err() {
            return Role::Passive;
        }
        *self.role.borrow()
    }

    /// Checks in the caller's transaction that this replica still holds the lease with its
    /// current token (see [`store::check_fence`]); returns the token. Call it in every
    /// state-changing transaction, before committing.
    pub async fn fence(&self, conn: &mut PgConnection) -> Result<i64, FenceError> {
        let Role::Active { token } = self.current() else {
            return Err(FenceError::NotActive {
                service: self.ids.service.to_string(),
            });
        };
        store::check_fence(conn, &self.ids.service, &self.ids.holder, token).await?;
        Ok(token)
    }

    /// Graceful handover: stops being active, releases the lease so that another replica
    /// takes it within one renew period, and stays out of the competition for one TTL.
    /// Returns once the lease is released (or the release was given up).
    pub async fn step_down(&self) -> Result<(), LeaseError> {
        let stopped = || LeaseError::Stopped {
            service: self.ids.service.to_string(),
        };
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }
}

type Pending = Pin<Box<dyn Future<Output = Input> + Send>>;

struct Runner {
    pool: PgPool,
    config: LeaseConfig,
    ids: Ids,
    role: watch::Sender<Role>,
}

enum Event {
    Tick,
    Done(Input),
    StepDown(oneshot::Sender<()>),
    Closed,
}

async fn pending_input(pending: &mut Option<Pending>) -> Input {
    match pending {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl Runner {
    async fn run(self, mut requests: mpsc::Receiver<oneshot::Sender<()>>) {
        let service = self.ids.service.to_string();
        let mut machine = Machine::new(self.config.timing(), Instant::now());
        let mut pending: Option<Pending> = None;
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut closing = false;
        let mut last_renew = Instant::now();
        loop {
            let event = tokio::select! {
                _ = sleep_until(machine.next_wakeup()) => Event::Tick,
                input = pending_input(&mut pending) => Event::Done(input),
                req = requests.recv(), if !closing => match req {
                    Some(reply) => Event::StepDown(reply),
                    None => Event::Closed,
                },
            };
            let input = match event {
                Event::Tick => Input::Tick,
                Event::Done(input) => {
                    pending = None;
                    if matches!(
                        input,
                        Input::Acquired(AcquireResult::Won { .. })
                            | Input::Renewed(RenewResult::Ok { .. })
                    ) {
                        last_renew = Instant::now();
                    }
                    input
                }
                Event::StepDown(reply) => {
                    waiters.push(reply);
                    Input::StepDown
                }
                Event::Closed => {
                    closing = true;
                    Input::StepDown
                }
            };
            let now = Instant::now();
            for command in machine.handle(now, input) {
                // A new statement supersedes one in flight, whose answer the machine no
                // longer expects.
                if let Some(next) = self.execute(command) {
                    pending = Some(next);
                }
            }
            let since = match machine.role() {
                Role::Active { .. } => now.saturating_duration_since(last_renew).as_secs_f64(),
                Role::Passive => 0.0,
            };
            metrics::gauge!("ordo_lease_since_renew_seconds", "service" => service.clone())
                .set(since);
            if matches!(machine.state(), State::Passive { .. }) {
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if closing {
                    tracing::info!(service, "lease runtime stopped");
                    return;
                }
            }
        }
    }

    fn execute(&self, command: Command) -> Option<Pending> {
        let pool = self.pool.clone();
        let Ids { service, holder } = self.ids.clone();
        let ttl = self.config.ttl;
        match command {
            Command::Report(role) => {
                self.report(role);
                None
            }
            Command::TryAcquire => Some(Box::pin(async move {
                let r = timeout(ttl, store::acquire(&pool, &service, &holder, ttl)).await;
                Input::Acquired(match r {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        tracing::warn!(%service, error = %e, "acquiring the lease failed");
                        AcquireResult::Failed
                    }
                    Err(_) => AcquireResult::Failed,
                })
            })),
            Command::Renew { token } => Some(Box::pin(async move {
                let start = Instant::now();
                let r = timeout(ttl, store::renew(&pool, &service, &holder, token, ttl)).await;
                metrics::histogram!("ordo_lease_renew_seconds", "service" => service.to_string())
                    .record(start.elapsed().as_secs_f64());
                Input::Renewed(match r {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        tracing::warn!(%service, token, error = %e, "renewing the lease failed");
                        RenewResult::Failed
                    }
                    Err(_) => {
                        tracing::warn!(%service, token, "renewing the lease timed out");
                        RenewResult::Failed
                    }
                })
            })),
            Command::StepDown { token } => Some(Box::pin(async move {
                match timeout(ttl, store::release(&pool, &service, &holder, token)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(%service, token, error = %e, "releasing the lease failed; it will expire")
                    }
                    Err(_) => tracing::warn!(%service, token, "releasing the lease timed out"),
                }
                Input::Released
            })),
        }
    }

    fn report(&self, role: Role) {
        let service = self.ids.service.to_string();
        match role {
            Role::Active { token } => {
                tracing::info!(%service, holder = %self.ids.holder, token, "lease acquired: active");
                metrics::counter!("ordo_lease_failovers_total", "service" => service.clone())
                    .increment(1);
                metrics::gauge!("ordo_lease_role", "service" => service).set(1.0);
            }
            Role::Passive => {
                tracing::warn!(%service, holder = %self.ids.holder, "lease lost or released: passive");
                metrics::gauge!("ordo_lease_role", "service" => service).set(0.0);
            }
        }
        self.role.send_replace(role);
    }
}
