//! A submission of several commands (`Commands.commands`) commits as one transaction or not
//! at all: three commands — two creates and a cross-shard transfer — are one update on the
//! submitting shard; three whose last one fails commit nothing, though the first two alone
//! would have; `command` and `commands` together are refused.

use anyhow::Result;
use ordo_proto::ledger::v1 as pb;
use serde_json::json;
use tonic::Code;

use crate::common::*;

fn cmd(c: pb::command::Command) -> pb::Command {
    pb::Command { command: Some(c) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_commands_commit_as_one_transaction_or_not_at_all() -> Result<()> {
    let net = LedgerNet::with_parties("t14", &[("bank", 0), ("alice", 0), ("bob", 1)]).await?;
    let moved = net.issue("bank", "alice", "EUR", "3.00").await?;
    let ends = net.ledger_ends().await?;
    let three = |last: pb::command::Command| {
        let mut commands = net.commands_for("alice", create_iou("alice", "alice", "EUR", "1.00"));
        commands.command = None;
        commands.commands = vec![
            cmd(create_iou("alice", "alice", "EUR", "1.00")),
            cmd(create_iou("alice", "bank", "EUR", "2.00")),
            cmd(last),
        ];
        commands
    };
    let transfer = |cid: &str| exercise("iou:Iou", cid, "Transfer", json!({ "newOwner": "bob" }));

    // The last command exercises an unknown contract: nothing commits.
    let unknown = "ab".repeat(32);
    let refused = net
        .submit_raw(0, &token(&["alice"]), three(transfer(&unknown)))
        .await;
    let refused = assert_status(refused, Code::NotFound, &[&unknown]);
    assert!(
        ordo_proto::errors::is(&refused, ordo_proto::errors::CONTRACT_NOT_FOUND),
        "{refused:?}"
    );
    assert_eq!(
        net.ledger_ends().await?,
        ends,
        "a failed submission committed"
    );
    assert_eq!(net.ious("alice").await?.len(), 1);

    // All three: one transaction, on alice's shard one update with every event.
    let tx = net
        .submit_raw(0, &token(&["alice"]), three(transfer(&moved)))
        .await
        .map_err(|s| anyhow::anyhow!("three commands refused: {s:?}"))?;
    assert_eq!(archived(&tx), vec![moved.as_str()]);
    assert_eq!(created(&tx).len(), 2, "alice sees her two new Ious: {tx:?}");
    net.wait_ledger_ends(&[ends[0] + 1, ends[1] + 1]).await?;
    assert_eq!(net.ious("alice").await?.len(), 2);
    assert_eq!(net.ious("bob").await?.len(), 1);

    // `command` and `commands` together.
    let mut both = three(transfer(&moved));
    both.command = Some(cmd(create_iou("alice", "alice", "EUR", "9.00")));
    assert_status(
        net.submit_raw(0, &token(&["alice"]), both).await,
        Code::InvalidArgument,
        &["not both"],
    );
    Ok(())
}
