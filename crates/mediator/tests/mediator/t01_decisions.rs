//! Approve, Reject, and responses that must be ignored.

use anyhow::Result;
use ordo_node::http_client;
use ordo_protocol::{ResponseOutcome, Verdict, VerdictOutcome};

use crate::harness::*;

fn reject(reason: &str) -> ResponseOutcome {
    ResponseOutcome::Reject {
        reason: reason.into(),
        code: Some("CONTRACT_NOT_ACTIVE".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_reject_and_ignored_responses() -> Result<()> {
    let d = Domain::start().await?;
    let node = d.start_mediator().await?;
    let key = &d.mediator_key;

    // Both confirming parties approve: both participants get Approve.
    let r1 = d.request("approve-1").await?;
    d.respond(&d.p1, r1, "approve-1", &d.alice, ResponseOutcome::Approve)
        .await?;
    d.respond(&d.p2, r1, "approve-1", &d.bob, ResponseOutcome::Approve)
        .await?;
    for inbox in [&d.inbox1, &d.inbox2] {
        let (_, v) = inbox.wait_verdict(r1, key).await?;
        assert_eq!(
            v,
            Verdict {
                request: r1,
                root_hash: d.root_of("approve-1"),
                outcome: VerdictOutcome::Approve
            }
        );
    }
    assert_eq!(d.verdict_rows(r1).await?.len(), 1);
    assert_eq!(d.verdict_rows(r1).await?[0].0, "approve");

    // One rejects: Reject with its reason.
    let r2 = d.request("reject-1").await?;
    d.respond(&d.p1, r2, "reject-1", &d.alice, ResponseOutcome::Approve)
        .await?;
    d.respond(
        &d.p2,
        r2,
        "reject-1",
        &d.bob,
        reject("contract 12ab is not active"),
    )
    .await?;
    for inbox in [&d.inbox1, &d.inbox2] {
        let (_, v) = inbox.wait_verdict(r2, key).await?;
        assert_eq!(
            v.outcome,
            // The rejecting participant's error code is passed on.
            VerdictOutcome::Reject {
                reasons: vec!["contract 12ab is not active".into()],
                code: Some("CONTRACT_NOT_ACTIVE".into()),
            }
        );
    }
    assert_eq!(d.verdict_rows(r2).await?[0].0, "reject");

    // Responses from a participant that does not host the party, or with a wrong root
    // hash, change nothing — not even a rejection.
    let r3 = d.request("ignored-1").await?;
    d.respond(
        &d.p2,
        r3,
        "ignored-1",
        &d.alice,
        reject("p2 cannot speak for alice"),
    )
    .await?;
    d.respond(&d.p1, r3, "ignored-1", &d.bob, ResponseOutcome::Approve)
        .await?;
    let last = d
        .respond(
            &d.p2,
            r3,
            "another-root",
            &d.bob,
            reject("wrong transaction"),
        )
        .await?;
    d.wait_processed(last).await?;
    assert_eq!(
        d.answered(r3).await?,
        vec![("alice".to_owned(), false), ("bob".to_owned(), false)]
    );
    assert!(d.verdict_rows(r3).await?.is_empty());
    assert!(d.inbox1.verdicts_for(r3, key).is_empty());
    // The rightful answers then decide it.
    d.respond(&d.p1, r3, "ignored-1", &d.alice, ResponseOutcome::Approve)
        .await?;
    d.respond(&d.p2, r3, "ignored-1", &d.bob, ResponseOutcome::Approve)
        .await?;
    for inbox in [&d.inbox1, &d.inbox2] {
        let (_, v) = inbox.wait_verdict(r3, key).await?;
        assert_eq!(v.outcome, VerdictOutcome::Approve);
    }

    // The metrics show the decisions.
    let metrics = http_client::get_ok(&format!("http://{}/metrics", node.http)).await?;
    assert!(
        metrics.contains("ordo_mediator_verdicts_total{outcome=\"approve\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("ordo_mediator_verdicts_total{outcome=\"reject\"}"));
    assert!(metrics.contains("ordo_mediator_pending_requests"));
    assert!(metrics.contains("ordo_mediator_decision_latency_seconds"));
    node.stop().await?;
    Ok(())
}
