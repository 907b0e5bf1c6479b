//! Every role stopped gracefully and crashed, once each, and started again on its
//! database: transfers keep committing, and no update is lost or applied twice.

use anyhow::{Context, Result};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_restarts_without_losing_or_repeating_an_update() -> Result<()> {
    let mut net = LedgerNet::with_parties("t07", &[("bank", 0), ("alice", 0), ("bob", 1)]).await?;
    let mut iou = net.issue("bank", "alice", "EUR", "42.00").await?;
    let mut owner = "alice";
    let mut ends = vec![1i64, 0];

    let roles = [
        Role::Sequencer(0),
        Role::Topology,
        Role::Mediator,
        Role::Participant(0),
        Role::Participant(1),
    ];
    for role in roles {
        for crash in [false, true] {
            let how = if crash { "crash" } else { "stop" };
            if crash {
                net.crash(role).await?;
            } else {
                net.stop(role)
                    .await
                    .with_context(|| format!("graceful stop of {role:?}"))?;
            }
            net.restart(role)
                .await
                .with_context(|| format!("restart of {role:?} after a {how}"))?;

            // The ping-pong transfer: alice ↔ bob, one update on each shard.
            let next = if owner == "alice" { "bob" } else { "alice" };
            let tx = net
                .transfer(owner, &iou, next)
                .await
                .map_err(|s| anyhow::anyhow!("transfer after the {how} of {role:?}: {s:?}"))?;
            assert_eq!(archived(&tx), vec![iou.as_str()]);
            ends[0] += 1;
            ends[1] += 1;
            net.wait_ledger_ends(&ends)
                .await
                .with_context(|| format!("after the {how} of {role:?}"))?;
            let moved = net.ious(next).await?;
            assert_eq!(moved.len(), 1, "after the {how} of {role:?}: {moved:?}");
            iou = moved[0].contract_id.clone();
            owner = next;
            net.assert_logs_gapless(&ends)
                .await
                .with_context(|| format!("after the {how} of {role:?}"))?;
        }
    }

    // The ACS counts: one Iou, seen by its owner and the bank, nobody else's.
    let other = if owner == "alice" { "bob" } else { "alice" };
    assert_eq!(net.ious(owner).await?.len(), 1);
    assert!(net.ious(other).await?.is_empty());
    let bank = net.ious("bank").await?;
    assert_eq!(bank.len(), 1);
    assert_eq!(bank[0].contract_id, iou);
    Ok(())
}
