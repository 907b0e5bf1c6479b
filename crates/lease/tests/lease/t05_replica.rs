//! `Replica` as a node runs it: one session at a time across replicas, health and
//! `/status` following the term, a step-down over HTTP handing over, and a replica whose
//! lease runtime dies stopping its session at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ordo_lease::{FenceError, Replica, ReplicaConfig, ReplicaStatus};
use ordo_testkit::wait_for;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::harness::*;

const ADMIN_TOKEN: &str = "replica-admin-secret";

struct Node {
    replica: Replica,
    lease_task: JoinHandle<()>,
    terms: JoinHandle<()>,
    stop: CancellationToken,
    ready: watch::Receiver<bool>,
}

/// Sessions running now, over all replicas, and sessions ever started.
#[derive(Default)]
struct Sessions {
    running: AtomicUsize,
    started: AtomicUsize,
}

struct Running(Arc<Sessions>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn node(
    db: &Db,
    name: &str,
    token_file: &std::path::Path,
    sessions: &Arc<Sessions>,
) -> Result<Node> {
    let config = ReplicaConfig {
        name: name.into(),
        ttl: TTL,
        renew_period: RENEW,
        safety_margin: Duration::from_millis(300),
        admin_token_file: Some(token_file.to_owned()),
    };
    let (health, _service) = ordo_node::Health::new(vec!["test"]).await;
    let (ready_tx, ready) = watch::channel(false);
    let (replica, lease_task) = Replica::start(
        db.pool.clone(),
        SERVICE,
        &config,
        "unused",
        health,
        ready_tx,
    )
    .await?;
    let stop = CancellationToken::new();
    let terms = {
        let (replica, stop, sessions) = (replica.clone(), stop.clone(), sessions.clone());
        tokio::spawn(async move {
            replica
                .run_terms(&stop, Duration::from_millis(50), |term| {
                    let sessions = sessions.clone();
                    async move {
                        sessions.running.fetch_add(1, Ordering::SeqCst);
                        sessions.started.fetch_add(1, Ordering::SeqCst);
                        let _running = Running(sessions);
                        term.ready().await;
                        term.stop.cancelled().await;
                    }
                })
                .await;
        })
    };
    Ok(Node {
        replica,
        lease_task,
        terms,
        stop,
        ready,
    })
}

async fn status(n: &Node) -> Result<ReplicaStatus> {
    let answer = n
        .replica
        .routes()
        .oneshot(Request::get("/status").body(Body::empty())?)
        .await?;
    ensure!(answer.status() == StatusCode::OK);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await?;
    Ok(serde_json::from_slice(&body)?)
}

async fn step_down(n: &Node, token: &str) -> Result<StatusCode> {
    let answer = n
        .replica
        .routes()
        .oneshot(
            Request::post("/admin/step-down")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())?,
        )
        .await?;
    Ok(answer.status())
}

/// The index of the one serving node, once exactly one session runs and one node serves.
async fn one_serving(nodes: &[&Node], sessions: &Sessions) -> Result<usize> {
    wait_for(
        "exactly one serving replica",
        Duration::from_secs(10),
        || async {
            let serving: Vec<usize> = (0..nodes.len())
                .filter(|i| *nodes[*i].ready.borrow())
                .collect();
            (serving.len() == 1 && sessions.running.load(Ordering::SeqCst) == 1).then(|| serving[0])
        },
    )
    .await
}

#[tokio::test]
async fn one_session_at_a_time_status_and_step_down_over_http() -> Result<()> {
    let db = db("replica").await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("admin-token");
    ordo_testkit::write_secret(&token_file, format!("{ADMIN_TOKEN}\n"))?;
    let sessions = Arc::new(Sessions::default());
    let a = node(&db, "a", &token_file, &sessions).await?;
    let b = node(&db, "b", &token_file, &sessions).await?;
    let nodes = [&a, &b];

    let first = one_serving(&nodes, &sessions).await?;
    let (active, passive) = (nodes[first], nodes[1 - first]);
    let s = status(active).await?;
    assert_eq!(
        (s.role.as_str(), s.serving, s.service.as_str()),
        ("active", true, SERVICE)
    );
    assert_eq!(
        s.lease_holder.as_deref(),
        Some(active.replica.lease().holder())
    );
    assert_eq!(s.lease_token, s.token);
    assert!(s.holder.starts_with(&format!("{}#", active.replica.name())));
    let p = status(passive).await?;
    assert_eq!(
        (p.role.as_str(), p.serving, p.token),
        ("passive", false, None)
    );
    assert!(
        passive
            .replica
            .unavailable_message()
            .await
            .contains(&format!("the active replica is {}", active.replica.name())),
        "{}",
        passive.replica.unavailable_message().await
    );
    let mut conn = db.pool.acquire().await?;
    assert!(matches!(
        passive.replica.fence(&mut conn).await,
        Err(FenceError::NotActive { .. })
    ));
    active.replica.fence(&mut conn).await?;
    drop(conn);

    // Bad step-downs change nothing.
    assert_eq!(step_down(active, "wrong").await?, StatusCode::UNAUTHORIZED);
    assert_eq!(step_down(passive, ADMIN_TOKEN).await?, StatusCode::CONFLICT);
    assert!(active.replica.is_active());
    assert_eq!(sessions.started.load(Ordering::SeqCst), 1);

    // A step-down hands over: the old session ends, the other replica's starts.
    assert_eq!(step_down(active, ADMIN_TOKEN).await?, StatusCode::OK);
    let second = one_serving(&nodes, &sessions).await?;
    assert_eq!(nodes[second].replica.name(), passive.replica.name());
    assert!(!*active.ready.borrow());
    assert_eq!(sessions.started.load(Ordering::SeqCst), 2);
    let (old, new) = (status(active).await?, status(passive).await?);
    assert_eq!(old.role, "passive");
    assert!(
        new.token > s.token,
        "the fencing token grows on a change of holder"
    );

    // The active replica's lease runtime dies: its session stops at once, and after the
    // TTL the other replica serves.
    passive.lease_task.abort();
    wait_for(
        "the dead replica's session to stop",
        Duration::from_secs(2),
        || async { passive.terms.is_finished().then_some(()) },
    )
    .await?;
    assert!(!*passive.ready.borrow());
    let third = one_serving(&nodes, &sessions).await?;
    assert_eq!(nodes[third].replica.name(), active.replica.name());

    // A graceful stop ends the session and run_terms.
    active.stop.cancel();
    wait_for("run_terms to return", Duration::from_secs(5), || async {
        active.terms.is_finished().then_some(())
    })
    .await?;
    assert_eq!(sessions.running.load(Ordering::SeqCst), 0);
    assert!(!*active.ready.borrow());
    Ok(())
}
