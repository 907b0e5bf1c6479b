//! Read your writes across shards: right after alice's transfer to bob returns on her
//! shard, bob uses the new Iou on his. His shard may not have applied the verdict yet (the
//! request is still pending there); his command waits for it instead of failing NOT_FOUND.

use anyhow::{Context, Result};
use ordo_proto::ledger::v1 as pb;

use crate::common::*;

/// `owner` transfers `cid` to `to` on `owner`'s shard; the new Iou's id (the choice's
/// result, which the submitter sees in the tree even where it is no stakeholder of it).
async fn transfer_for_id(net: &LedgerNet, owner: &str, cid: &str, to: &str) -> Result<String> {
    let command = exercise(
        "iou:Iou",
        cid,
        "Transfer",
        serde_json::json!({ "newOwner": to }),
    );
    let response = net
        .commands(net.shard_of(owner))
        .submit_and_wait_for_transaction(with_token(
            pb::SubmitAndWaitRequest {
                commands: Some(net.commands_for(owner, command)),
            },
            &token(&[owner]),
        ))
        .await
        .with_context(|| format!("{owner} transferring {cid} to {to}"))?
        .into_inner();
    let tree = response.transaction_tree.context("no transaction tree")?;
    let root = tree.root_node_ids.first().context("no root")?;
    match tree.events_by_id.get(root).and_then(|e| e.kind.as_ref()) {
        Some(pb::tree_event::Kind::Exercised(e)) => {
            Ok(serde_json::from_str::<String>(&e.exercise_result_json)?)
        }
        other => anyhow::bail!("the root is no exercise: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_uses_a_transferred_iou_at_once_on_its_own_shard() -> Result<()> {
    let net = std::sync::Arc::new(
        LedgerNet::with_parties(
            "t11",
            &[
                ("bank", 0),
                ("alice", 0),
                ("bob", 1),
                ("ecb", 1),
                ("carol", 1),
            ],
        )
        .await?,
    );
    let mut iou = net.issue("bank", "alice", "USD", "10.00").await?;
    // Other work on bob's shard, so that it often applies a verdict after alice's shard
    // answered her.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..8)
        .map(|_| {
            let (net, stop) = (net.clone(), stop.clone());
            tokio::spawn(async move {
                let mut issued = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if net.issue("ecb", "carol", "EUR", "1.00").await.is_ok() {
                        issued += 1;
                    }
                }
                issued
            })
        })
        .collect();
    // Back and forth, each transfer submitted on the receiver's shard the moment the
    // previous one returned on the sender's.
    for round in 0..20 {
        let (from, to) = if round % 2 == 0 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        iou = transfer_for_id(&net, from, &iou, to)
            .await
            .with_context(|| format!("round {round}"))?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut issued = 0;
    for b in busy {
        issued += b.await?;
    }
    // Twenty transfers: the Iou is back with alice, and each shard committed each one once.
    let alice = net.ious("alice").await?;
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0].contract_id, iou);
    net.wait_ledger_ends(&[21, 20 + i64::from(issued)]).await?;
    Ok(())
}
