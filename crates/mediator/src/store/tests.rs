//! Fencing against a real Postgres: a replica that lost the lease commits nothing.

use std::time::Duration;

use anyhow::Result;
use ordo_core::KeyPair;
use ordo_lease::ReplicaConfig;
use ordo_testkit::{PgCluster, PgOptions, wait_for};
use tokio::sync::watch;

use super::*;

fn pending_request(id: i64, submitter: &MemberId) -> Result<PendingRequest> {
    let answer = PartyAnswer {
        host: submitter.clone(),
        answered: false,
    };
    Ok(PendingRequest {
        id: Timestamp(id),
        root_hash: format!("root-{id}"),
        submitter: submitter.clone(),
        confirming_parties: [(PartyId::new("alice")?, answer)].into(),
        informee_participants: [submitter.clone()].into(),
        decision_time: Timestamp(id + 1_000_000),
    })
}

async fn counts(pool: &PgPool) -> Result<(i64, i64, i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT ts FROM mediator_cursor WHERE id = 1),
                (SELECT count(*) FROM pending_requests),
                (SELECT count(*) FROM pending_answers),
                (SELECT coalesce(sum(attempts), 0) FROM outbox)::bigint",
    )
    .fetch_one(pool)
    .await?)
}

/// A provisioned mediator database and a replica holding its lease.
async fn active() -> Result<(
    PgCluster,
    PgPool,
    Replica,
    tokio::task::JoinHandle<()>,
    MemberId,
)> {
    ordo_testkit::init_tracing();
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let config = MediatorConfig {
        database_url: pg.create_database("mediator").await?,
        replica: ReplicaConfig {
            ttl: Duration::from_millis(1500),
            renew_period: Duration::from_millis(300),
            safety_margin: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    };
    let me = MemberId::new("mediator", &KeyPair::generate().public())?;
    init(&config, &me).await?;
    let pool = connect(&config).await?;
    let (health, _service) = ordo_node::Health::new(vec![]).await;
    let (ready, _ready_rx) = watch::channel(false);
    let (replica, lease) = Replica::start(
        pool.clone(),
        "mediator",
        &config.replica,
        &config.node_name,
        health,
        ready,
    )
    .await?;
    wait_for("the lease", Duration::from_secs(10), || async {
        replica.is_active().then_some(())
    })
    .await?;
    Ok((pg, pool, replica, lease, me))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_a_replica_without_the_lease_commit_nothing() -> Result<()> {
    let (_pg, pool, replica, lease, me) = active().await?;

    // Active: the event's changes commit with the cursor.
    let opened = Changes {
        opened: vec![pending_request(5, &me)?],
        ..Default::default()
    };
    commit(&pool, &replica, Timestamp(10), &opened, &[]).await?;
    sqlx::query(
        "INSERT INTO outbox (message_id, recipients, payload, created_at)
         VALUES ('verdict-1', '{}', '\\x00', 1)",
    )
    .execute(&pool)
    .await?;
    let before = counts(&pool).await?;
    assert_eq!(before, (10, 1, 1, 0));

    // Another replica takes the lease over (as a failover does while this one is paused).
    sqlx::query(
        "UPDATE ordo_lease SET holder = 'mediator-b#00000001', fencing_token = fencing_token + 1,
                expires_at = clock_timestamp() + interval '1 hour'
         WHERE service = 'mediator'",
    )
    .execute(&pool)
    .await?;

    let next = Changes {
        opened: vec![pending_request(15, &me)?],
        answered: vec![(Timestamp(5), vec![PartyId::new("alice")?])],
        ..Default::default()
    };
    let err = commit(&pool, &replica, Timestamp(20), &next, &[])
        .await
        .expect_err("a deposed replica must not commit");
    assert!(matches!(err, MediatorError::Fenced(_)), "{err:?}");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let err = outbox_sequenced(&pool, &replica, &["verdict-1".to_owned()])
        .await
        .expect_err("fenced");
    assert!(matches!(err, MediatorError::Fenced(_)), "{err:?}");
    let err = outbox_failed(&pool, &replica, "verdict-1", "unreachable", false)
        .await
        .expect_err("fenced");
    assert!(matches!(err, MediatorError::Fenced(_)), "{err:?}");

    // Nothing changed: cursor, pending requests and answers, outbox.
    assert_eq!(counts(&pool).await?, before);
    let answered: bool = sqlx::query_scalar("SELECT answered FROM pending_answers")
        .fetch_one(&pool)
        .await?;
    assert!(!answered);
    lease.abort();
    Ok(())
}

fn decision(id: i64, at: i64, outcome: VerdictOutcome, to: &MemberId) -> (Decision, OutboxMessage) {
    let d = Decision {
        request: Timestamp(id),
        root_hash: format!("root-{id}"),
        outcome,
        recipients: [to.clone()].into(),
        decided_at: Timestamp(at),
    };
    let message = OutboxMessage {
        message_id: format!("verdict-{id}"),
        recipients: vec![to.clone()],
        payload: vec![id as u8],
    };
    (d, message)
}

/// A batch's changes are written with one statement per kind and read back as the
/// per-event writes were: a request opened in an earlier batch and decided in this one is
/// gone, one opened and decided within the batch was never pending, answers land on the
/// requests still pending, and every verdict has its outbox row until it is sequenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_set_based_and_resumes_the_same() -> Result<()> {
    let (_pg, pool, replica, lease, me) = active().await?;
    let first = Changes {
        opened: vec![pending_request(5, &me)?, pending_request(6, &me)?],
        ..Default::default()
    };
    commit(&pool, &replica, Timestamp(10), &first, &[]).await?;

    let mut batch = Changes {
        opened: vec![pending_request(11, &me)?, pending_request(12, &me)?],
        answered: vec![(Timestamp(6), vec![PartyId::new("alice")?])],
        ..Default::default()
    };
    batch.absorb(Changes {
        answered: vec![(Timestamp(12), vec![PartyId::new("alice")?])],
        decided: vec![
            decision(5, 13, VerdictOutcome::Approve, &me),
            decision(
                11,
                14,
                VerdictOutcome::Reject {
                    reasons: vec!["a, \"quoted\" reason".into()],
                    code: None,
                },
                &me,
            ),
        ],
        ..Default::default()
    });
    commit(&pool, &replica, Timestamp(14), &batch, &[]).await?;

    let resumed = load(&pool).await?;
    assert_eq!(resumed.cursor, Timestamp(14));
    let ids: Vec<i64> = resumed.pending.iter().map(|r| r.id.micros()).collect();
    assert_eq!(ids, [6, 12]);
    // The decided request's answers went with it (no cascade does it since schema 2).
    let answers: Vec<i64> =
        sqlx::query_scalar("SELECT request_id FROM pending_answers ORDER BY request_id")
            .fetch_all(&pool)
            .await?;
    assert_eq!(answers, [6, 12]);
    // An answer without its request (left by a replica of schema 1 during an upgrade) is
    // not taken for one on takeover.
    sqlx::query("INSERT INTO pending_answers (request_id, party, host) VALUES (99, 'alice', $1)")
        .bind(me.to_string())
        .execute(&pool)
        .await?;
    let again = load(&pool).await?;
    let ids: Vec<i64> = again.pending.iter().map(|r| r.id.micros()).collect();
    assert_eq!(ids, [6, 12]);
    sqlx::query("DELETE FROM pending_answers WHERE request_id = 99")
        .execute(&pool)
        .await?;
    for r in &resumed.pending {
        assert!(r.confirming_parties.values().all(|a| a.answered), "{r:?}");
        assert_eq!(r.informee_participants, [me.clone()].into());
    }
    let verdicts: Vec<(i64, String, Vec<String>)> =
        sqlx::query_as("SELECT request_id, outcome, reasons FROM verdicts ORDER BY request_id")
            .fetch_all(&pool)
            .await?;
    assert_eq!(
        verdicts,
        [
            (5, "approve".into(), vec![]),
            (11, "reject".into(), vec!["a, \"quoted\" reason".into()]),
        ]
    );
    // The batch's two verdicts: one group, read back as written.
    let group = "verdict-5..verdict-11".to_owned();
    type Row = (String, Vec<String>, Vec<u8>, Option<String>);
    let outbox_rows: Vec<Row> = sqlx::query_as(
        "SELECT message_id, recipients, payload, submission FROM outbox ORDER BY message_id",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        outbox_rows,
        [
            (
                "verdict-11".into(),
                vec![me.to_string()],
                vec![11],
                Some(group.clone())
            ),
            (
                "verdict-5".into(),
                vec![me.to_string()],
                vec![5],
                Some(group.clone())
            ),
        ]
    );
    let groups = outbox(&pool).await?;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].message_id, group);
    let ids: Vec<&str> = groups[0]
        .messages
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    assert_eq!(ids, ["verdict-5", "verdict-11"]);

    // A row written alone (before groups) is its own group.
    sqlx::query(
        "INSERT INTO outbox (message_id, recipients, payload, created_at)
         VALUES ('verdict-3', '{}', '\\x03', 15)",
    )
    .execute(&pool)
    .await?;
    let ids: Vec<String> = outbox(&pool)
        .await?
        .into_iter()
        .map(|g| g.message_id)
        .collect();
    assert_eq!(ids, [group.clone(), "verdict-3".into()]);

    // The next commit deletes the groups the sequencer took meanwhile.
    let empty = Changes::default();
    commit(&pool, &replica, Timestamp(20), &empty, &[group]).await?;
    let left: Vec<String> = sqlx::query_scalar("SELECT message_id FROM outbox")
        .fetch_all(&pool)
        .await?;
    assert_eq!(left, ["verdict-3"]);
    lease.abort();
    Ok(())
}

#[test]
fn verdicts_group_up_to_the_byte_bound_in_decision_order() {
    let message = |id: usize, bytes: usize| OutboxMessage {
        message_id: format!("verdict-{id}"),
        recipients: Vec::new(),
        payload: vec![0; bytes],
    };
    let half = ordo_protocol::grouping::GROUP_BYTES / 2;
    let messages = [
        message(1, half),
        message(2, half),
        message(3, 1),
        message(4, ordo_protocol::grouping::GROUP_BYTES + 1),
        message(5, 10),
    ];
    let groups = groups(messages);
    let shape: Vec<(&str, usize)> = groups
        .iter()
        .map(|g| (g.message_id.as_str(), g.messages.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("verdict-1..verdict-2", 2),
            ("verdict-3", 1),
            ("verdict-4", 1),
            ("verdict-5", 1),
        ]
    );
    assert!(super::groups([]).is_empty());
}
