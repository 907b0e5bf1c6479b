//! A mediator restarted between the request and the responses resumes the pending request
//! from its database and decides it exactly once.

use std::time::Duration;

use anyhow::Result;
use ordo_core::Recipients;
use ordo_protocol::{Message, ResponseOutcome, TimeProof, VerdictOutcome};
use ordo_testkit::wait_for;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_pending_requests_and_decides_once() -> Result<()> {
    // A long timeout: the restart must not race the decision time.
    let d = Domain::start_with(20_000_000).await?;
    let key = &d.mediator_key;
    let node = d.start_mediator().await?;

    let r = d.request("restart-1").await?;
    d.wait_processed(r).await?;
    assert_eq!(d.answered(r).await?.len(), 2);
    node.stop().await?;

    d.respond(&d.p1, r, "restart-1", &d.alice, ResponseOutcome::Approve)
        .await?;
    d.respond(&d.p2, r, "restart-1", &d.bob, ResponseOutcome::Approve)
        .await?;
    assert!(d.verdict_rows(r).await?.is_empty());

    let node = d.start_mediator().await?;
    for inbox in [&d.inbox1, &d.inbox2] {
        let (_, v) = inbox.wait_verdict(r, key).await?;
        assert_eq!(v.outcome, VerdictOutcome::Approve);
    }
    wait_for("an empty outbox", Duration::from_secs(20), || async {
        (d.outbox_len().await.ok()? == 0).then_some(())
    })
    .await?;

    // Once more: a restart after the verdict resends nothing new.
    node.stop().await?;
    let node = d.start_mediator().await?;

    // A marker sequenced after everything the mediator could have sent by now.
    let marker =
        d.p1.send(
            "marker",
            Recipients::members([d.p1.id.clone(), d.p2.id.clone()]),
            d.p1.sign(&Message::TimeProof(TimeProof { nonce: 42 })),
        )
        .await?;
    for inbox in [&d.inbox1, &d.inbox2] {
        wait_for("the marker", Duration::from_secs(20), || async {
            inbox.all().iter().any(|e| e.at == marker).then_some(())
        })
        .await?;
        assert_eq!(inbox.verdicts_for(r, key).len(), 1, "exactly one verdict");
    }
    assert_eq!(d.verdict_rows(r).await?.len(), 1);
    node.stop().await?;
    Ok(())
}
