//! Choice observers (Daml's `observer` on a choice): the parties a choice names as its
//! observers are informees of its exercise and see it in their transaction trees, on
//! another shard too; they confirm nothing, and a party the choice does not name sees
//! nothing.

use anyhow::{Context, Result};
use ordo_proto::ledger::v1 as pb;
use serde_json::json;

use crate::common::*;

const NOTICE: &str = r#"
name = "notice"
version = "1.0.0"

[templates.Asset]
fields = { owner = "party", auditor = "party" }
signatories = "this.owner"

[templates.Asset.choices.Inspect]
controllers = "this.owner"
observers = "[this.auditor]"
consuming = false
"#;

/// The exercised events of the choice `choice` in `party`'s transaction trees (up to the
/// ledger end of its shard).
async fn exercised(net: &LedgerNet, party: &str, choice: &str) -> Result<Vec<pb::ExercisedEvent>> {
    let shard = net.shard_of(party);
    let end = net.ledger_end(shard).await?;
    if end == 0 {
        return Ok(Vec::new());
    }
    let mut stream = net
        .update_stream(shard, &[party], 0, end, pb::UpdateShape::Tree)
        .await?;
    let mut found = Vec::new();
    while let Some(u) = stream.message().await? {
        if let Some(pb::get_updates_response::Update::TransactionTree(t)) = u.update {
            for e in t.events_by_id.into_values() {
                if let Some(pb::tree_event::Kind::Exercised(x)) = e.kind
                    && x.choice == choice
                {
                    found.push(x);
                }
            }
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choice_observer_sees_the_exercise_and_nobody_else_does() -> Result<()> {
    let net = LedgerNet::with_parties(
        "t13",
        &[("olga", 0), ("audrey", 1), ("oscar", 1), ("otto", 0)],
    )
    .await?;
    net.upload(NOTICE).await?;
    let tx = net
        .submit(
            "olga",
            create(
                "notice:Asset",
                json!({ "owner": "olga", "auditor": "audrey" }),
            ),
        )
        .await
        .map_err(|s| anyhow::anyhow!("create: {s:?}"))?;
    let asset = created(&tx)
        .first()
        .map(|c| c.contract_id.clone())
        .context("the Asset")?;
    let ends = net.ledger_ends().await?;
    net.submit(
        "olga",
        exercise("notice:Asset", &asset, "Inspect", json!({})),
    )
    .await
    .map_err(|s| anyhow::anyhow!("exercise: {s:?}"))?;

    // audrey (shard-2), no stakeholder of the Asset, sees the exercise in her tree.
    let seen = ordo_testkit::wait_for("audrey's view of the exercise", PATIENCE, || async {
        let seen = exercised(&net, "audrey", "Inspect").await.ok()?;
        (!seen.is_empty()).then_some(seen)
    })
    .await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].contract_id, asset);
    assert_eq!(seen[0].acting_parties, vec!["olga".to_owned()]);
    assert!(!seen[0].consuming);
    // The exercise is one update on shard-2, where nothing else happened.
    assert_eq!(net.ledger_end(1).await?, ends[1] + 1);
    // The owner sees it too; a party on the same shards that the choice does not name
    // sees nothing.
    assert_eq!(exercised(&net, "olga", "Inspect").await?.len(), 1);
    assert!(exercised(&net, "oscar", "Inspect").await?.is_empty());
    assert!(exercised(&net, "otto", "Inspect").await?.is_empty());
    // And audrey still sees no Asset among her active contracts (she observes the choice,
    // not the contract).
    assert!(net.acs("audrey").await?.is_empty());
    Ok(())
}
