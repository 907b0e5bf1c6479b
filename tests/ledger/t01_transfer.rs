//! A cross-shard transfer commits atomically on both shards, and every party sees exactly
//! its projection.

use anyhow::Result;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_shard_transfer_commits_on_both_shards_with_projections() -> Result<()> {
    let net = LedgerNet::with_parties(
        "t01",
        &[("bank", 0), ("alice", 0), ("bob", 1), ("carol", 1)],
    )
    .await?;

    let iou = net.issue("bank", "alice", "EUR", "100.00").await?;
    let alice_before = net.ious("alice").await?;
    assert_eq!(alice_before.len(), 1);
    assert_eq!(alice_before[0].contract_id, iou);
    let ends_before = net.ledger_ends().await?;
    assert_eq!(ends_before, vec![1, 0], "the issue touched shard-1 only");

    let tx = net.transfer("alice", &iou, "bob").await?;
    assert_eq!(
        archived(&tx),
        vec![iou.as_str()],
        "alice's view: the archive"
    );

    // Both shards committed the one transaction.
    net.wait_ledger_ends(&[2, 1]).await?;

    // bob: the new Iou in his ACS, created by the transfer; he sees no archive.
    let bob_ious = net.ious("bob").await?;
    assert_eq!(bob_ious.len(), 1, "{bob_ious:?}");
    let new = &bob_ious[0];
    assert_ne!(new.contract_id, iou);
    assert_eq!(new.field("owner"), "bob");
    assert_eq!(new.field("issuer"), "bank");
    assert_eq!(new.field("currency"), "EUR");
    assert_eq!(new.signatories, vec!["bank".to_owned()]);
    assert_eq!(new.observers, vec!["bob".to_owned()]);
    let bob_updates = net.updates("bob").await?;
    assert_eq!(bob_updates.len(), 1);
    let bob_tx = &bob_updates[0];
    assert_eq!(
        bob_tx.update_id, tx.update_id,
        "the same transaction id on every shard"
    );
    assert_eq!(bob_tx.effective_at, tx.effective_at);
    assert!(
        archived(bob_tx).is_empty(),
        "bob is no stakeholder of the old Iou"
    );
    let bob_created: Vec<&str> = created(bob_tx)
        .iter()
        .map(|c| c.contract_id.as_str())
        .collect();
    assert_eq!(bob_created, vec![new.contract_id.as_str()]);
    assert!(
        bob_tx.command_id.is_empty(),
        "the command id is for the submitter only: {bob_tx:?}"
    );

    // alice: the archive in her updates, nothing left in her ACS.
    assert!(net.ious("alice").await?.is_empty());
    let alice_updates = net.updates("alice").await?;
    assert_eq!(alice_updates.len(), 2);
    let alice_tx = find_tx(&alice_updates, &tx.update_id).expect("alice sees the transfer");
    assert_eq!(archived(alice_tx), vec![iou.as_str()]);
    assert!(
        created(alice_tx).is_empty(),
        "alice is no stakeholder of the new Iou"
    );

    // The bank (signatory of both): the archive and the create.
    let bank_updates = net.updates("bank").await?;
    let bank_tx = find_tx(&bank_updates, &tx.update_id).expect("the bank sees the transfer");
    assert_eq!(archived(bank_tx), vec![iou.as_str()]);
    let bank_created: Vec<&str> = created(bank_tx)
        .iter()
        .map(|c| c.contract_id.as_str())
        .collect();
    assert_eq!(bank_created, vec![new.contract_id.as_str()]);
    let bank_ious = net.ious("bank").await?;
    assert_eq!(
        bank_ious, bob_ious,
        "shard-1 and shard-2 agree on the new Iou"
    );

    // carol: nothing at all.
    assert!(net.acs("carol").await?.is_empty());
    assert!(net.updates("carol").await?.is_empty());

    // Every message both shards sent (the request, the responses) is deleted from their
    // outboxes once the sequencer took it: by a later batch's commit or the sender's sweep.
    for (shard, name) in SHARDS.iter().enumerate() {
        let db = sqlx::PgPool::connect(&net.replica_config(Role::Participant(shard)).database_url)
            .await?;
        ordo_testkit::wait_for(&format!("{name}'s outbox to empty"), PATIENCE, || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM p_outbox")
                .fetch_one(&db)
                .await
                .ok()?;
            (left == 0).then_some(())
        })
        .await?;
    }
    Ok(())
}
