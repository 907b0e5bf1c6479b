//! A request that not every confirming party answers times out in sequencer time, even
//! when nothing else is being sequenced (the mediator's time proofs move the clock).

use anyhow::Result;
use ordo_protocol::{ResponseOutcome, VerdictOutcome};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_request_times_out_by_sequencer_time() -> Result<()> {
    let d = Domain::start().await?;
    let node = d.start_mediator().await?;
    let key = &d.mediator_key;

    let r = d.request("timeout-1").await?;
    d.respond(&d.p1, r, "timeout-1", &d.alice, ResponseOutcome::Approve)
        .await?;
    // bob never answers and the test sends nothing else.
    let decision_time = r.plus_micros(RESPONSE_TIMEOUT_US);
    for inbox in [&d.inbox1, &d.inbox2] {
        let (at, v) = inbox.wait_verdict(r, key).await?;
        assert_eq!(v.outcome, VerdictOutcome::Timeout);
        assert!(
            at >= decision_time,
            "verdict sequenced at {at}, before the decision time {decision_time}"
        );
    }
    let rows = d.verdict_rows(r).await?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "timeout");
    assert!(rows[0].1 >= decision_time.micros());

    // A late answer changes nothing.
    let late = d
        .respond(&d.p2, r, "timeout-1", &d.bob, ResponseOutcome::Approve)
        .await?;
    d.wait_processed(late).await?;
    assert_eq!(d.verdict_rows(r).await?, rows);
    assert_eq!(d.inbox1.verdicts_for(r, key).len(), 1);
    node.stop().await?;
    Ok(())
}
