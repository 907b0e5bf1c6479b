//! Active-passive replicas on one database: exactly one serves; a crashed active is
//! replaced by a passive replica that resumes the in-flight requests from the database
//! (answers recorded, decision times kept) and decides each once; a step-down and a
//! graceful stop hand the lease over at once.

use std::time::Duration;

use anyhow::Result;
use ordo_core::Recipients;
use ordo_lease::holder_name;
use ordo_protocol::{Message, ResponseOutcome, TimeProof, VerdictOutcome};
use ordo_testkit::wait_for;

use crate::harness::*;

const STEP_DOWN_TOKEN: &str = "step-down-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_replica_takes_over_and_resumes_in_flight_requests() -> Result<()> {
    // Long enough for the failover to happen well before the decision times.
    let timeout_us = 8_000_000;
    let d = Domain::start_with(timeout_us).await?;
    let key = &d.mediator_key;
    let token_file = d._dir.path().join("step-down.token");
    ordo_testkit::write_secret(&token_file, format!("{STEP_DOWN_TOKEN}\n"))?;

    let a = d
        .start_replica("mediator-a", Some(token_file.clone()))
        .await?;
    let b = d
        .start_replica("mediator-b", Some(token_file.clone()))
        .await?;
    let (active, passive) = match one_serving(&[&a, &b]).await? {
        0 => (a, b),
        _ => (b, a),
    };
    assert!(!passive.serving().await, "only the lease holder serves");
    let first = active.status().await?;
    let waiting = passive.status().await?;
    assert_eq!((first.role.as_str(), first.serving), ("active", true));
    assert_eq!((waiting.role.as_str(), waiting.serving), ("passive", false));
    assert_eq!(
        waiting.lease_holder.as_deref().map(holder_name),
        Some(active.name.as_str())
    );

    // In flight at the crash: `approved` with alice's answer, `unanswered` with none.
    let unanswered = d.request("failover-timeout").await?;
    let approved = d.request("failover-approve").await?;
    let alice = d
        .respond(
            &d.p1,
            approved,
            "failover-approve",
            &d.alice,
            ResponseOutcome::Approve,
        )
        .await?;
    d.wait_processed(alice).await?;
    assert_eq!(
        d.answered(approved).await?,
        vec![("alice".to_owned(), true), ("bob".to_owned(), false)]
    );
    let cursor_at_crash = d.cursor().await?;
    active.crash();

    // The passive replica takes over once the crashed one's lease expires.
    wait_for(
        "the passive replica serving",
        Duration::from_secs(20),
        || async { passive.serving().await.then_some(()) },
    )
    .await?;
    let now = passive.status().await?;
    assert_eq!(now.role, "active");
    assert!(now.token > first.token, "{now:?} after {first:?}");

    // It resumed alice's answer: bob's completes the request.
    d.respond(
        &d.p2,
        approved,
        "failover-approve",
        &d.bob,
        ResponseOutcome::Approve,
    )
    .await?;
    for inbox in [&d.inbox1, &d.inbox2] {
        let (_, v) = inbox.wait_verdict(approved, key).await?;
        assert_eq!(v.outcome, VerdictOutcome::Approve);
    }
    // It resumed the decision time: with nothing else sequenced, its time proofs time the
    // other request out.
    let decision_time = unanswered.plus_micros(timeout_us);
    for inbox in [&d.inbox1, &d.inbox2] {
        let (at, v) = inbox.wait_verdict(unanswered, key).await?;
        assert_eq!(v.outcome, VerdictOutcome::Timeout);
        assert!(
            at >= decision_time,
            "timed out at {at}, before {decision_time}"
        );
    }
    assert!(d.cursor().await? > cursor_at_crash, "the cursor continues");
    let status = passive.status().await?;
    assert!(status.cursor.is_some(), "{status:?}");

    // A step-down hands over to a third replica; the old active stays up, passive.
    let c = d.start_replica("mediator-c", Some(token_file)).await?;
    assert!(!c.serving().await);
    assert_eq!(passive.step_down("wrong").await?.0, 401);
    assert!(
        passive.serving().await,
        "a refused step-down changes nothing"
    );
    let (status, message) = passive.step_down(STEP_DOWN_TOKEN).await?;
    assert_eq!(status, 200, "{message}");
    assert_eq!(one_serving(&[&passive, &c]).await?, 1);
    assert_eq!(passive.status().await?.role, "passive");

    // A graceful stop releases the lease: the other replica takes over and processes.
    c.stop().await?;
    wait_for(
        "the first passive serving again",
        Duration::from_secs(20),
        || async { passive.serving().await.then_some(()) },
    )
    .await?;
    let marker =
        d.p1.send(
            "failover-marker",
            Recipients::members([d.mediator_id.clone(), d.p1.id.clone(), d.p2.id.clone()]),
            d.p1.sign(&Message::TimeProof(TimeProof { nonce: 7 })),
        )
        .await?;
    d.wait_processed(marker).await?;

    // Every request was decided exactly once, across three replicas.
    for inbox in [&d.inbox1, &d.inbox2] {
        wait_for("the marker", Duration::from_secs(20), || async {
            inbox.all().iter().any(|e| e.at == marker).then_some(())
        })
        .await?;
        assert_eq!(inbox.verdicts_for(approved, key).len(), 1);
        assert_eq!(inbox.verdicts_for(unanswered, key).len(), 1);
    }
    assert_eq!(d.verdict_rows(approved).await?.len(), 1);
    assert_eq!(d.verdict_rows(unanswered).await?.len(), 1);
    passive.stop().await?;
    Ok(())
}
