//! A command's `meta` (Daml JSON API): `actAs` picks which of the token's parties act (as
//! a list or one party), `workflowId` reaches the transaction, `commandId` deduplicates as
//! the top-level one does; a party the token does not cover is 403, an unsupported
//! `deduplicationPeriod` or a command id given twice is 400 naming the field, and none of
//! them commits anything.

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use ordo_ledger_client::{Event, Filter};
use serde_json::{Value, json};

use crate::harness::{Env, IOU};

const ISSUER: &str = "s13-issuer";
const CLERK: &str = "s13-clerk";

fn iou(amount: &str, meta: Value) -> Value {
    json!({"templateId": IOU, "meta": meta, "payload":
        {"issuer": ISSUER, "owner": ISSUER, "currency": "EUR", "amount": amount}})
}

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    for party in [ISSUER, CLERK] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({ "identifierHint": party, "shard": "shard-1" }),
        )
        .await?;
    }
    // A token acting as the clerk first, then the issuer.
    let both = env.network.party_token(&[CLERK, ISSUER])?;
    let issuer_ious = || async { env.ious(&env.party(ISSUER)?).await };
    let before = issuer_ious().await?;

    // Without meta the clerk acts, who cannot sign the issuer's Iou.
    let refused = env
        .post("/v1/create", Some(&both), &iou("1", json!({})))
        .await?;
    ensure!(refused.status == 403, "acting as the clerk: {refused:?}");
    // With meta.actAs the issuer acts: as a list, and as one party, with a workflow id.
    let listed = env
        .ok(
            "/v1/create",
            &both,
            &iou("2", json!({ "actAs": [ISSUER], "workflowId": "s13-flow" })),
        )
        .await?;
    ensure!(listed["signatories"] == json!([ISSUER]), "{listed}");
    let single = env
        .ok(
            "/v1/create",
            &both,
            &iou(
                "3",
                json!({ "actAs": ISSUER, "commandId": "s13-once", "submissionId": "s13-sub" }),
            ),
        )
        .await?;
    ensure!(single["signatories"] == json!([ISSUER]), "{single}");
    // meta.commandId deduplicates.
    let again = env
        .post(
            "/v1/create",
            Some(&both),
            &iou("3", json!({ "actAs": ISSUER, "commandId": "s13-once" })),
        )
        .await?;
    ensure!(
        again.status == 409 && again.result.is_null(),
        "the same meta.commandId again: {again:?}"
    );
    // The workflow id reached the transaction.
    let client = env.network.client_for_party(ISSUER).await?;
    let created = listed["contractId"].as_str().context("contractId")?;
    // (shard-1 was pruned by s12: its log starts at the pruned offset.)
    let from = client.latest_pruned_offsets().await?.updates;
    let flows: Vec<String> = client
        .updates(&Filter::party(ISSUER), from, false)
        .await?
        .filter_map(|t| async move { t.ok() })
        .filter(|t| {
            let hit = t
                .events
                .iter()
                .any(|e| matches!(e, Event::Created(c) if c.contract_id == created));
            async move { hit }
        })
        .map(|t| t.workflow_id)
        .collect()
        .await;
    ensure!(flows == ["s13-flow"], "workflow ids: {flows:?}");

    // Refusals, each naming what was wrong.
    let stranger = env
        .post(
            "/v1/create",
            Some(&both),
            &iou("4", json!({ "actAs": ["bank"] })),
        )
        .await?;
    ensure!(
        stranger.status == 403 && stranger.errors.contains("bank"),
        "meta.actAs beyond the token: {stranger:?}"
    );
    let dedup = env
        .post(
            "/v1/create",
            Some(&both),
            &iou(
                "5",
                json!({ "actAs": [ISSUER],
                        "deduplicationPeriod": { "type": "Duration", "durationInMillis": 1000 } }),
            ),
        )
        .await?;
    ensure!(
        dedup.status == 400 && dedup.errors.contains("meta.deduplicationPeriod"),
        "{dedup:?}"
    );
    let mut twice = iou("6", json!({ "actAs": [ISSUER], "commandId": "a" }));
    twice["commandId"] = json!("b");
    let twice = env.post("/v1/create", Some(&both), &twice).await?;
    ensure!(
        twice.status == 400 && twice.errors.contains("meta.commandId"),
        "{twice:?}"
    );
    let unknown = env
        .post(
            "/v1/create",
            Some(&both),
            &iou("7", json!({ "actAs": [ISSUER], "ledgerId": "x" })),
        )
        .await?;
    ensure!(
        unknown.status == 400 && unknown.errors.contains("ledgerId"),
        "{unknown:?}"
    );

    // Exactly the two accepted creates committed.
    let after = issuer_ious().await?;
    ensure!(
        after.len() == before.len() + 2,
        "{} Ious before, {} after",
        before.len(),
        after.len()
    );
    Ok(())
}
