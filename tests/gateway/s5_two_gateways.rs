//! Two gateways, each with its own cache, on the same network: the same queries get the
//! same answers for every party, and a write through one is visible through the other
//! once it has caught up (at once on the writer's shard, after the cross-shard commit on
//! the other).

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use ordo_testkit::wait_for;
use serde_json::{Value, json};

use crate::harness::{Api, CROSS_SHARD, Env, Gateway, IOU, contract_ids};

pub async fn run(env: &Env) -> Result<()> {
    let started = Instant::now();
    let cache = env.dir().join("gateway-2-cache.sqlite");
    let mut second = Gateway::start(&env.network.path, &cache, &env.http).await?;
    let ready = started.elapsed();
    let outcome = compare(env, &second.api(&env.http)).await;
    second.stop().await?;
    println!(
        "s5: a second gateway ready in {ready:.1?}; done in {:.1?}",
        started.elapsed()
    );
    outcome
}

async fn compare(env: &Env, second: &Api<'_>) -> Result<()> {
    let first = env.api();
    let parties = env.parties().await?;
    let queries = [
        json!({}),
        json!({"templateIds": [IOU]}),
        json!({"templateIds": [IOU], "query": {"currency": "USD"}}),
    ];
    let mut compared = 0;
    for party in &parties {
        let token = env.party(party)?;
        for q in &queries {
            let (a, b) = (
                first.ok("/v1/query", &token, q).await?,
                second.ok("/v1/query", &token, q).await?,
            );
            ensure!(
                sorted(&a) == sorted(&b),
                "{party} {q}: the gateways answer differently:\n{a}\n{b}"
            );
            compared += a.as_array().map_or(0, Vec::len);
        }
        let some = first.ok("/v1/query", &token, &queries[0]).await?;
        for c in some.as_array().into_iter().flatten().take(3) {
            let fetch = json!({"contractId": c["contractId"]});
            ensure!(
                first.ok("/v1/fetch", &token, &fetch).await?
                    == second.ok("/v1/fetch", &token, &fetch).await?,
                "{party}: the gateways fetch {} differently",
                c["contractId"]
            );
        }
    }
    ensure!(compared > 10, "too few contracts compared ({compared})");

    // Through the second gateway: the shard-1 issuer gives bob (shard-2) an Iou. The
    // first gateway shows it to the issuer, and to bob once shard-2 committed it.
    let (bank, bob) = (env.party("s4-bank")?, env.party("s4-bob")?);
    let iou = second
        .ok(
            "/v1/create",
            &bank,
            &json!({"templateId": IOU, "payload":
                {"issuer": "s4-bank", "owner": "s4-bob", "currency": "S5", "amount": "3"}}),
        )
        .await?;
    let cid = iou["contractId"].as_str().context("contractId")?.to_owned();
    let s5 = json!({"templateIds": [IOU], "query": {"currency": "S5"}});
    ensure!(
        contract_ids(&first.ok("/v1/query", &bank, &s5).await?).contains(&cid),
        "the first gateway does not show the issuer its write through the second"
    );
    wait_for(
        "the first gateway to show bob the Iou",
        CROSS_SHARD,
        || async {
            let seen = contract_ids(&first.ok("/v1/query", &bob, &s5).await.ok()?);
            seen.contains(&cid).then_some(())
        },
    )
    .await?;

    // Through the first gateway, bob passes it back to the issuer; the second follows.
    let moved = first
        .ok(
            "/v1/exercise",
            &bob,
            &json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
                    "argument": {"newOwner": "s4-bank"}}),
        )
        .await?;
    let back = moved["exerciseResult"].as_str().context("exerciseResult")?;
    ensure!(
        contract_ids(&second.ok("/v1/query", &bob, &s5).await?).is_empty(),
        "the second gateway still shows bob the Iou he transferred"
    );
    wait_for(
        "the second gateway to show the issuer its Iou back",
        CROSS_SHARD,
        || async {
            let seen = contract_ids(&second.ok("/v1/query", &bank, &s5).await.ok()?);
            (seen.contains(back) && !seen.contains(&cid)).then_some(())
        },
    )
    .await?;
    Ok(())
}

fn sorted(answer: &Value) -> Vec<String> {
    let mut all: Vec<String> = answer
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    all.sort();
    all
}
