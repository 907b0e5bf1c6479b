//! A confirming participant is down: the mediator decides Timeout at the decision time,
//! the submitter gets an ABORTED completion, the locks are released, and once the shard is
//! back the same contract can be used.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use ordo_proto::ledger::v1 as pb;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_confirmation_times_out_and_releases_the_locks() -> Result<()> {
    let mut net =
        LedgerNet::with_parties("t05", &[("alice", 0), ("carol", 0), ("bank2", 1)]).await?;
    let iou = net.issue("bank2", "alice", "USD", "7.00").await?;
    // The issue committed on both shards (bank2's and alice's).
    let ends = vec![1, 1];
    net.wait_ledger_ends(&ends).await?;

    // The completion stream of alice's application, from the start.
    let mut completions = net
        .completions(0)
        .completion_stream(with_token(
            pb::CompletionStreamRequest {
                application_id: APP.into(),
                parties: vec!["alice".into()],
                begin_exclusive: 0,
            },
            &token(&["alice"]),
        ))
        .await?
        .into_inner();

    // shard-2 hosts bank2, the Iou's signatory: its confirmation is needed.
    net.stop(Role::Participant(1)).await?;
    let started = Instant::now();
    let commands = net.commands_for(
        "alice",
        exercise(
            "iou:Iou",
            &iou,
            "Transfer",
            serde_json::json!({ "newOwner": "carol" }),
        ),
    );
    let command_id = commands.command_id.clone();
    let outcome = net.submit_raw(0, &token(&["alice"]), commands).await;
    let elapsed = started.elapsed();
    let refused = assert_status(outcome, tonic::Code::Aborted, &["timed out"]);
    assert!(
        ordo_proto::errors::is(&refused, ordo_proto::errors::CONFIRMATION_TIMEOUT),
        "{refused:?}"
    );
    assert!(
        elapsed >= RESPONSE_TIMEOUT - Duration::from_millis(500),
        "decided before the decision time: {elapsed:?}"
    );
    assert!(
        elapsed < RESPONSE_TIMEOUT + Duration::from_secs(5),
        "the timeout took {elapsed:?}, the response timeout is {RESPONSE_TIMEOUT:?}"
    );
    let completion = tokio::time::timeout(PATIENCE, async {
        while let Some(c) = completions.next().await {
            let c = c?.completion.unwrap_or_default();
            if c.command_id == command_id {
                return Ok::<_, tonic::Status>(Some(c));
            }
        }
        Ok(None)
    })
    .await??
    .expect("the command's completion");
    let status = completion.status.unwrap_or_default();
    assert_eq!(status.code, tonic::Code::Aborted as i32, "{status:?}");
    assert_eq!(status.error_code, "CONFIRMATION_TIMEOUT", "{status:?}");
    assert!(completion.update_id.is_empty());

    // Nothing committed on shard-1; the Iou is still alice's.
    assert_eq!(net.ledger_end(0).await?, ends[0]);
    let alice = net.ious("alice").await?;
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].contract_id, iou);
    assert!(net.ious("carol").await?.is_empty());

    // shard-2 back: it catches up (the stale request and its Timeout verdict included);
    // the same Iou can be transferred now, on both shards.
    net.restart(Role::Participant(1)).await?;
    let tx = net
        .transfer("alice", &iou, "carol")
        .await
        .map_err(|s| anyhow::anyhow!("the transfer after the restart: {s:?}"))?;
    assert_eq!(archived(&tx), vec![iou.as_str()]);
    net.wait_ledger_ends(&[ends[0] + 1, ends[1] + 1]).await?;
    let carol = net.ious("carol").await?;
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].field("owner"), "carol");
    let bank2 = net.ious("bank2").await?;
    assert_eq!(bank2, carol, "shard-2 agrees");
    assert!(net.ious("alice").await?.is_empty());
    Ok(())
}
