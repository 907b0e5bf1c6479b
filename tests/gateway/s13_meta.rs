//! A command's `meta` (Daml JSON API): `actAs` picks which of the token's parties act (as
//! a list or one party), `workflowId` reaches the transaction, `commandId` deduplicates as
//! the top-level one does, within `deduplicationPeriod` when one is given; a party the
//! token does not cover is 403, a period from an offset, of 0 or beyond the domain's, or a
//! command id given twice is 400 naming the field, and none of them commits anything.

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
    // A short deduplication period: the same command id commits again once the first
    // success is older than it; with the domain's period it is a duplicate again.
    let short = |amount: &str, period: Value| {
        iou(
            amount,
            json!({ "actAs": [ISSUER], "commandId": "s13-short", "deduplicationPeriod": period }),
        )
    };
    let ms = |n: u64| json!({ "type": "Duration", "durationInMillis": n });
    env.ok("/v1/create", &both, &short("8", ms(60_000))).await?;
    let within = env
        .post("/v1/create", Some(&both), &short("8", ms(60_000)))
        .await?;
    ensure!(within.status == 409, "within the period: {within:?}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    env.ok("/v1/create", &both, &short("9", ms(10))).await?;
    let again = env
        .post(
            "/v1/create",
            Some(&both),
            &iou("10", json!({ "actAs": [ISSUER], "commandId": "s13-short" })),
        )
        .await?;
    ensure!(again.status == 409, "with the domain's period: {again:?}");
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
    for (period, needle) in [
        (
            json!({ "type": "Offset", "offset": "five" }),
            "meta.deduplicationPeriod",
        ),
        // Beyond the shard's completion end: the participant refuses it.
        (
            json!({ "type": "Offset", "offset": "999999999" }),
            "deduplication_offset",
        ),
        (
            json!({ "type": "Duration", "durationInMillis": 0 }),
            "durationInMillis",
        ),
        // Beyond the domain's deduplication period (24 h): the participant refuses it.
        (
            json!({ "type": "Duration", "durationInMillis": 100u64 * 24 * 3600 * 1000 }),
            "deduplication",
        ),
    ] {
        let refused = env
            .post(
                "/v1/create",
                Some(&both),
                &iou(
                    "5",
                    json!({ "actAs": [ISSUER], "deduplicationPeriod": period }),
                ),
            )
            .await?;
        ensure!(
            refused.status == 400 && refused.errors.contains(needle),
            "{period}: {refused:?}"
        );
    }
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
        after.len() == before.len() + 4,
        "{} Ious before, {} after",
        before.len(),
        after.len()
    );
    Ok(())
}
