//! A create-and-exercise whose choice consumes the contract the same command creates: the
//! created contract is transient (created and archived in one transaction), never an
//! input, and the choice's outputs commit on every shard that hosts a stakeholder.

use anyhow::Result;
use ordo_proto::ledger::v1 as pb;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consuming_choice_on_the_contract_created_in_the_same_command_commits() -> Result<()> {
    let net = LedgerNet::with_parties("t10", &[("bank", 0), ("bob", 1)]).await?;

    // bank issues an Iou to itself and transfers it to bob across shards, in one command.
    let command = pb::command::Command::CreateAndExercise(pb::CreateAndExerciseCommand {
        template_id: "iou:Iou".into(),
        create_arguments_json: serde_json::json!({
            "issuer": "bank", "owner": "bank", "currency": "USD", "amount": "25"
        })
        .to_string(),
        choice: "Transfer".into(),
        choice_argument_json: serde_json::json!({ "newOwner": "bob" }).to_string(),
    });
    let tx = net
        .submit("bank", command)
        .await
        .map_err(|s| anyhow::anyhow!("create-and-exercise refused: {s:?}"))?;
    net.wait_ledger_ends(&[1, 1]).await?;

    // The transient Iou is nowhere; bob holds the one the choice created.
    let bob = net.ious("bob").await?;
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert_eq!(bob[0].field("owner"), "bob");
    assert_eq!(bob[0].field("amount"), "25");
    assert!(
        net.ious("bank")
            .await?
            .iter()
            .all(|c| c.field("owner") == "bob")
    );
    let bob_updates = net.updates("bob").await?;
    assert_eq!(bob_updates.len(), 1);
    assert_eq!(bob_updates[0].update_id, tx.update_id);
    Ok(())
}
