//! Concurrent double spend over HTTP: two transfers of one Iou at once, exactly one 200 and
//! one 409, and the Iou has exactly one new owner.

use anyhow::{Context, Result, ensure};
use ordo_testkit::wait_for;
use serde_json::json;

use crate::harness::{CROSS_SHARD, Env, IOU};

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    env.ok(
        "/v1/parties/allocate",
        &admin,
        &json!({"identifierHint": "dave", "shard": "shard-1"}),
    )
    .await?;
    env.ok(
        "/v1/parties/allocate",
        &admin,
        &json!({"identifierHint": "erin", "shard": "shard-2"}),
    )
    .await?;
    let (bank, dave) = (env.party("bank")?, env.party("dave")?);
    let iou = env
        .ok(
            "/v1/create",
            &bank,
            &json!({"templateId": IOU, "payload":
                {"issuer": "bank", "owner": "dave", "currency": "GBP", "amount": "50.0"}}),
        )
        .await?;
    let cid = iou["contractId"].as_str().context("contractId")?;
    let spend = |to: &str| {
        json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
               "argument": {"newOwner": to}})
    };
    let (to_erin, to_bank) = (spend("erin"), spend("bank"));
    let (a, b) = tokio::join!(
        env.post("/v1/exercise", Some(&dave), &to_erin),
        env.post("/v1/exercise", Some(&dave), &to_bank),
    );
    let (a, b) = (a?, b?);
    let mut statuses = [a.status, b.status];
    statuses.sort();
    ensure!(statuses == [200, 409], "double spend: {a:?} / {b:?}");
    let loser = if a.status == 409 { &a } else { &b };
    ensure!(!loser.errors.is_empty(), "{loser:?}");
    ensure!(env.ious(&dave).await?.is_empty(), "dave still holds an Iou");
    // The issuer sees every GBP Iou: exactly one, with the winner as its owner.
    let winner = if a.status == 200 { "erin" } else { "bank" };
    let gbp = json!({"templateIds": [IOU], "query": {"currency": "GBP"}});
    let held = wait_for(
        "the issuer to see the winner's Iou",
        CROSS_SHARD,
        || async {
            let r = env.ok("/v1/query", &bank, &gbp).await.ok()?;
            let list = r.as_array()?.clone();
            list.iter()
                .any(|c| c["payload"]["owner"] == winner)
                .then_some(list)
        },
    )
    .await?;
    ensure!(held.len() == 1, "both transfers committed: {held:?}");
    Ok(())
}
