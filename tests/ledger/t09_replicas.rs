//! A shard run active-passive: two replicas of shard-1 on one database, the same key and
//! node name. Exactly one serves; the passive one answers UNAVAILABLE naming the active
//! one; a crash and a graceful step-down both hand over, transfers keep committing and
//! the update log stays gapless; a command in flight when the term ends answers
//! UNAVAILABLE at once and completes on the new active replica; and a write the lease
//! fence refuses commits nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ordo_node::http_client::Answer;
use ordo_proto::ledger::v1 as pb;
use ordo_testkit::wait_for;
use sqlx::{PgPool, Row};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::*;

const A: Role = Role::Participant(0);

fn state_at(
    net: &LedgerNet,
    role: Role,
) -> Result<pb::state_service_client::StateServiceClient<Channel>> {
    Ok(pb::state_service_client::StateServiceClient::new(
        lazy_channel(&net.replica_url(role))?,
    ))
}

/// Transfers the Iou `cid` of `from` to `to` and returns the new Iou's id (once `to`'s
/// shard committed too: SubmitAndWait answers when the submitting shard did).
async fn transfer(net: &LedgerNet, from: &str, cid: &str, to: &str, when: &str) -> Result<String> {
    let tx = net
        .transfer(from, cid, to)
        .await
        .map_err(|s| anyhow::anyhow!("transfer {from} → {to} {when}: {s:?}"))?;
    ensure!(
        archived(&tx) == vec![cid],
        "{when}: the transfer archives {cid}"
    );
    let moved = wait_for(&format!("{to} to own the Iou {when}"), PATIENCE, || async {
        let ious = net.ious(to).await.ok()?;
        (ious.len() == 1).then(|| ious[0].contract_id.clone())
    })
    .await?;
    Ok(moved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passive_replica_takes_over_after_a_crash_and_a_step_down() -> Result<()> {
    let mut net = LedgerNet::with_parties_opts(
        "t09a",
        NetOptions::fast_failover(),
        &[("bank", 0), ("alice", 0), ("bob", 1)],
    )
    .await?;
    let b = net.add_replica(0, "participant-1b").await?;

    // Exactly one serves; the passive one names the active one.
    assert!(net.is_serving(A).await, "the first replica is active");
    assert!(!net.is_serving(b).await, "the second replica is passive");
    assert_eq!(net.replica_status(A).await?.role, "active");
    let status = net.replica_status(b).await?;
    assert_eq!((status.role.as_str(), status.serving), ("passive", false));
    assert_eq!(
        status.lease_holder.as_deref().map(ordo_lease::holder_name),
        Some("participant-1a")
    );
    let refused = state_at(&net, b)?
        .get_ledger_end(with_token(pb::GetLedgerEndRequest {}, &admin_token()))
        .await;
    assert_status(
        refused,
        Code::Unavailable,
        &[
            "participant-1b",
            "passive",
            "the active replica is participant-1a",
        ],
    );
    let mut commands_b =
        pb::command_service_client::CommandServiceClient::new(lazy_channel(&net.replica_url(b))?);
    let refused = commands_b
        .submit_and_wait(with_token(
            pb::SubmitAndWaitRequest {
                commands: Some(net.commands_for("bank", create_iou("bank", "alice", "EUR", "1"))),
            },
            &token(&["bank"]),
        ))
        .await;
    assert_status(refused, Code::Unavailable, &["participant-1a"]);

    let mut iou = net.issue("bank", "alice", "EUR", "10.00").await?;
    iou = transfer(&net, "alice", &iou, "bob", "before any failover").await?;
    net.wait_ledger_ends(&[2, 1]).await?;

    // Crash the active replica: the passive one takes over once the lease expires.
    net.crash(A).await?;
    let crashed = Instant::now();
    net.wait_serving(b).await?;
    tracing::info!(
        takeover_ms = crashed.elapsed().as_millis() as u64,
        "replica b took over"
    );
    net.point_at(0, b)?;
    // bob's transfer is submitted on shard-2 and confirmed by b; alice's is submitted on b.
    iou = transfer(&net, "bob", &iou, "alice", "after the crash").await?;
    iou = transfer(&net, "alice", &iou, "bob", "after the crash").await?;
    net.wait_ledger_ends(&[4, 3]).await?;
    net.assert_logs_gapless(&[4, 3]).await?;

    // The crashed replica comes back passive; a graceful step-down hands over to it.
    net.restart_passive(A).await?;
    assert!(!net.is_serving(A).await, "the restarted replica is passive");
    let Answer { status, body } = net.step_down(b).await?;
    assert_eq!(status, 200, "step-down answered {body}");
    assert!(body.contains("stepped down"), "{body}");
    net.wait_serving(A).await?;
    wait_for("b to stop serving", PATIENCE, || async {
        (!net.is_serving(b).await).then_some(())
    })
    .await?;
    net.point_at(0, A)?;
    let status = net.replica_status(b).await?;
    assert_eq!(status.role, "passive");
    iou = transfer(&net, "bob", &iou, "alice", "after the step-down").await?;
    transfer(&net, "alice", &iou, "bob", "after the step-down").await?;
    net.wait_ledger_ends(&[6, 5]).await?;
    net.assert_logs_gapless(&[6, 5]).await?;

    // A step-down needs the token, and only the active replica steps down.
    assert_eq!(net.step_down_with(A, "wrong").await?.status, 401);
    let Answer { status, body } = net.step_down(b).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("participant-1a"), "{body}");
    Ok(())
}

/// The state of a command in the shard's database.
async fn command_state(pool: &PgPool, command_id: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT state FROM p_commands WHERE command_id = $1")
            .bind(command_id)
            .fetch_optional(pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_flight_at_the_end_of_a_term_completes_on_the_active_replica() -> Result<()> {
    let mut net = LedgerNet::with_parties_opts(
        "t09b",
        NetOptions::fast_failover(),
        &[("bank", 0), ("alice", 0), ("bob", 1)],
    )
    .await?;
    let b = net.add_replica(0, "participant-1b").await?;
    let db = PgPool::connect(&net.replica_config(A).database_url).await?;
    let iou = net.issue("bank", "alice", "EUR", "10.00").await?;

    // The client records the completion end, then submits; without a mediator the
    // command stays in flight.
    let ends = net
        .state(0)
        .get_ledger_end(with_token(pb::GetLedgerEndRequest {}, &admin_token()))
        .await?
        .into_inner();
    assert_eq!(ends.offset, 1);
    assert_eq!(ends.completion_offset, 1, "the issue's completion");
    net.stop(Role::Mediator).await?;
    let commands = net.commands_for(
        "alice",
        exercise(
            "iou:Iou",
            &iou,
            "Transfer",
            serde_json::json!({ "newOwner": "bob" }),
        ),
    );
    let command_id = commands.command_id.clone();
    let waiting = {
        let mut client = net.commands(0);
        let request = with_token(
            pb::SubmitAndWaitRequest {
                commands: Some(commands.clone()),
            },
            &token(&["alice"]),
        );
        tokio::spawn(async move { client.submit_and_wait(request).await })
    };
    wait_for("the command in flight", PATIENCE, || async {
        (command_state(&db, &command_id).await.ok()?.as_deref() == Some("in_flight")).then_some(())
    })
    .await?;

    // The term ends: SubmitAndWait answers at once, not after submit_and_wait_timeout.
    let Answer { status, body } = net.step_down(A).await?;
    assert_eq!(status, 200, "{body}");
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .context("SubmitAndWait did not answer within 5 s of the step-down")??;
    assert_status(
        answered,
        Code::Unavailable,
        &["participant-1a", &command_id, "same command id"],
    );

    // On the new active replica the command is still in flight: deduplicated.
    net.wait_serving(b).await?;
    net.point_at(0, b)?;
    let again = net.submit_raw(0, &token(&["alice"]), commands).await;
    assert_status(again, Code::AlreadyExists, &[&command_id]);
    assert_eq!(
        command_state(&db, &command_id).await?.as_deref(),
        Some("in_flight")
    );

    // With the mediator back, the command completes; the client finds the completion
    // after the completion end it recorded.
    net.restart(Role::Mediator).await?;
    let mut stream = net
        .completions(0)
        .completion_stream(with_token(
            pb::CompletionStreamRequest {
                application_id: APP.into(),
                parties: vec!["alice".into()],
                begin_exclusive: ends.completion_offset,
            },
            &token(&["alice"]),
        ))
        .await?
        .into_inner();
    let completion = tokio::time::timeout(PATIENCE, async {
        while let Some(r) = stream.message().await? {
            if let Some(c) = r.completion
                && c.command_id == command_id
            {
                return Ok(c);
            }
        }
        bail!("the completion stream ended")
    })
    .await
    .context("no completion of the command on the new active replica")??;
    assert!(completion.completion_offset > ends.completion_offset);
    let code = completion.status.as_ref().map_or(-1, |s| s.code);
    let alice = net.ious("alice").await?;
    if code == 0 {
        // Committed once: bob owns the Iou and shard-1's log has the transfer once.
        assert!(alice.is_empty(), "{alice:?}");
        net.wait_ledger_ends(&[2, 1]).await?;
        net.assert_logs_gapless(&[2, 1]).await?;
    } else {
        // Timed out while the mediator was away: nothing moved.
        assert_eq!(code, Code::Aborted as i32, "{completion:?}");
        assert_eq!(alice.len(), 1, "{alice:?}");
        assert_eq!(net.ledger_ends().await?, vec![1, 0]);
    }
    Ok(())
}

/// Row counts of the shard's tables and its state row, to compare.
async fn tables(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for table in [
        "p_commands",
        "p_outbox",
        "p_completions",
        "p_updates",
        "p_contracts",
        "p_pending",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(pool)
                .await?;
        out.push((table.to_owned(), n));
    }
    let row = sqlx::query(
        "SELECT cursor_ts, ledger_end, completion_end, md5(topology) AS topology FROM p_state",
    )
    .fetch_one(pool)
    .await?;
    out.push(("cursor_ts".into(), row.try_get("cursor_ts")?));
    out.push(("ledger_end".into(), row.try_get("ledger_end")?));
    out.push(("completion_end".into(), row.try_get("completion_end")?));
    let topology: String = row.try_get("topology")?;
    out.push((format!("topology {topology}"), 0));
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_fence_refuses_commits_nothing() -> Result<()> {
    // A long lease, so that the replica does not notice the theft by renewing before the
    // writes below reach the fence.
    let options = NetOptions {
        replica: ordo_lease::ReplicaConfig {
            ttl: Duration::from_secs(60),
            renew_period: Duration::from_secs(20),
            safety_margin: Duration::from_secs(5),
            ..Default::default()
        },
        ..Default::default()
    };
    let net =
        LedgerNet::with_parties_opts("t09c", options, &[("bank", 0), ("alice", 0), ("bob", 1)])
            .await?;
    net.issue("bank", "alice", "EUR", "1.00").await?;
    let db = PgPool::connect(&net.replica_config(A).database_url).await?;
    let before = tables(&db).await?;

    // Another holder takes shard-1's lease behind the active replica's back.
    let taken = sqlx::query(
        "UPDATE ordo_lease SET holder = 'intruder#00000000', fencing_token = fencing_token + 1,
             expires_at = now() + interval '1 hour'
         WHERE service = 'shard-1'",
    )
    .execute(&db)
    .await?;
    assert_eq!(taken.rows_affected(), 1);

    // A submission: interpreted, then refused at commit.
    let refused = net
        .submit("bank", create_iou("bank", "alice", "EUR", "2.00"))
        .await;
    assert_status(
        refused,
        Code::Unavailable,
        &["shard-1", "taken over", "intruder"],
    );
    assert_eq!(
        tables(&db).await?,
        before,
        "the refused submission wrote nothing"
    );

    // Processing: a party allocated on shard-2 reaches shard-1 as a topology event, whose
    // transaction the fence refuses; the session ends.
    net.party_management(1)
        .allocate_party(with_token(
            pb::AllocatePartyRequest {
                party_id_hint: "carol".into(),
            },
            &admin_token(),
        ))
        .await
        .context("AllocateParty carol on shard-2")?;
    let status = wait_for("shard-1 to refuse processing", PATIENCE, || async {
        let status = net.replica_status(A).await.ok()?;
        let refused = status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("taken over"));
        (refused && !status.serving).then_some(status)
    })
    .await?;
    assert_eq!(
        status.role, "active",
        "the replica has not noticed the theft yet"
    );
    assert!(!net.is_serving(A).await);
    assert_eq!(
        tables(&db).await?,
        before,
        "the refused event wrote nothing"
    );
    Ok(())
}
