//! The iou story over HTTP only: parties on both shards, the package, an Iou issued to
//! alice and transferred across shards to bob; queries and fetches per party show it moved;
//! a create-and-exercise, and an atomic swap across the shards with a disclosed contract.

use anyhow::{Context, Result, ensure};
use ordo_testkit::wait_for;
use serde_json::json;

use crate::harness::{CROSS_SHARD, Env, IOU, PACKAGE};

const SWAP: &str = "iou:SwapProposal";

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    let alice = env
        .ok(
            "/v1/parties/allocate",
            &admin,
            &json!({"identifierHint": "alice", "shard": "shard-1"}),
        )
        .await?;
    ensure!(
        alice == json!({"identifier": "alice", "shard": "shard-1"}),
        "{alice}"
    );
    let bob = env
        .ok(
            "/v1/parties/allocate",
            &admin,
            &json!({"identifierHint": "bob", "shard": "shard-2"}),
        )
        .await?;
    ensure!(bob["shard"] == "shard-2", "{bob}");
    // No shard: the least-loaded one.
    let bank = env
        .ok(
            "/v1/parties/allocate",
            &admin,
            &json!({"identifierHint": "bank"}),
        )
        .await?;
    ensure!(
        bank["shard"] == "shard-1" || bank["shard"] == "shard-2",
        "{bank}"
    );
    let parties = env.get("/v1/parties", Some(&admin)).await?;
    for p in ["alice", "bob", "bank"] {
        ensure!(
            parties
                .result
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x["identifier"] == p)),
            "{p} missing from {parties:?}"
        );
    }

    let uploaded = env.post_raw("/v1/packages", Some(&admin), PACKAGE).await?;
    ensure!(uploaded.status == 200, "{uploaded:?}");
    let package_id = uploaded.result["packageId"]
        .as_str()
        .context("packageId")?
        .to_owned();
    let packages = env.get("/v1/packages", Some(&admin)).await?;
    ensure!(
        packages.result.as_array().is_some_and(|l| l
            .iter()
            .any(|p| p["packageId"] == package_id.as_str() && p["name"] == "iou")),
        "{packages:?}"
    );

    let (bank_t, alice_t, bob_t) = (env.party("bank")?, env.party("alice")?, env.party("bob")?);
    let iou = env
        .ok(
            "/v1/create",
            &bank_t,
            &json!({"templateId": IOU, "payload":
                {"issuer": "bank", "owner": "alice", "currency": "USD", "amount": "100.0"}}),
        )
        .await?;
    ensure!(
        iou["templateId"] == IOU && iou["signatories"] == json!(["bank"]),
        "{iou}"
    );
    ensure!(iou["observers"] == json!(["alice"]), "{iou}");
    let cid = iou["contractId"].as_str().context("contractId")?.to_owned();
    let alice_sees = env.ious(&alice_t).await?;
    ensure!(
        alice_sees == vec![(cid.clone(), "alice".to_owned())],
        "{alice_sees:?}"
    );

    // alice (shard-1) → bob (shard-2).
    let moved = env
        .ok(
            "/v1/exercise",
            &alice_t,
            &json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
                    "argument": {"newOwner": "bob"}}),
        )
        .await?;
    let new_cid = moved["exerciseResult"]
        .as_str()
        .context("exerciseResult")?
        .to_owned();
    let events = moved["events"].as_array().context("events")?;
    ensure!(
        events
            .iter()
            .any(|e| e["archived"]["contractId"] == cid.as_str()),
        "{moved}"
    );
    // alice is no stakeholder of bob's new Iou: her view of the transaction has only the
    // archive (the new contract id is the choice's result).
    ensure!(events.iter().all(|e| e.get("created").is_none()), "{moved}");

    ensure!(
        env.ious(&alice_t).await?.is_empty(),
        "alice still sees an Iou"
    );
    let bob_sees = wait_for("bob's shard to show the Iou", CROSS_SHARD, || async {
        let ious = env.ious(&bob_t).await.ok()?;
        (!ious.is_empty()).then_some(ious)
    })
    .await?;
    ensure!(
        bob_sees == vec![(new_cid.clone(), "bob".to_owned())],
        "{bob_sees:?}"
    );
    let bank_sees = wait_for("bank's shard to show the transfer", CROSS_SHARD, || async {
        let ious = env.ious(&bank_t).await.ok()?;
        (ious.first().map(|i| i.0.as_str()) == Some(new_cid.as_str())).then_some(ious)
    })
    .await?;
    ensure!(bank_sees.len() == 1, "{bank_sees:?}");

    // A query on a field, and fetches: the old contract is gone for everyone.
    let by_owner = env
        .ok(
            "/v1/query",
            &bank_t,
            &json!({"templateIds": [IOU], "query": {"owner": "alice"}}),
        )
        .await?;
    ensure!(by_owner == json!([]), "{by_owner}");
    let fetched = env
        .ok("/v1/fetch", &bob_t, &json!({"contractId": new_cid}))
        .await?;
    ensure!(
        fetched["payload"]["owner"] == "bob" && fetched["payload"]["amount"] == "100",
        "{fetched}"
    );
    for token in [&alice_t, &bob_t, &bank_t] {
        let old = env
            .ok("/v1/fetch", token, &json!({"contractId": cid}))
            .await?;
        ensure!(old.is_null(), "{old}");
    }
    let not_bobs = env
        .ok("/v1/fetch", &alice_t, &json!({"contractId": new_cid}))
        .await?;
    ensure!(
        not_bobs.is_null(),
        "alice must not see bob's Iou: {not_bobs}"
    );

    // Create-and-exercise with a consuming choice: bank issues an Iou to itself and
    // transfers it to bob in one command; the issued Iou is transient.
    let issued = env
        .ok(
            "/v1/create-and-exercise",
            &bank_t,
            &json!({"templateId": IOU,
                    "payload": {"issuer": "bank", "owner": "bank", "currency": "EUR", "amount": "7"},
                    "choice": "Transfer", "argument": {"newOwner": "bob"}}),
        )
        .await?;
    let direct = issued["exerciseResult"]
        .as_str()
        .context("exerciseResult")?
        .to_owned();
    let bob_now = wait_for(
        "bob's shard to show the second Iou",
        CROSS_SHARD,
        || async {
            let ious = env.ious(&bob_t).await.ok()?;
            (ious.len() == 2).then_some(ious)
        },
    )
    .await?;
    ensure!(
        bob_now.contains(&(direct.clone(), "bob".to_owned())),
        "{bob_now:?}"
    );

    // bob splits his 100 USD: two Ious, 30 and 70, both his, the original gone.
    let split = env
        .ok(
            "/v1/exercise",
            &bob_t,
            &json!({"templateId": IOU, "contractId": new_cid, "choice": "Split",
                    "argument": {"splitAmount": "30"}}),
        )
        .await?;
    let parts: Vec<String> = serde_json::from_value(split["exerciseResult"].clone())?;
    // GET /v1/query: every active contract bob sees, as POST with no filter answers.
    let all = env.get("/v1/query", Some(&bob_t)).await?;
    ensure!(all.status == 200, "GET /v1/query: {all:?}");
    let posted = env.ok("/v1/query", &bob_t, &json!({})).await?;
    ensure!(
        crate::harness::contract_ids(&all.result) == crate::harness::contract_ids(&posted)
            && !crate::harness::contract_ids(&posted).is_empty(),
        "GET {} vs POST {posted}",
        all.result
    );
    let usd = env
        .ok(
            "/v1/query",
            &bob_t,
            &json!({"templateIds": [IOU], "query": {"currency": "USD"}}),
        )
        .await?;
    let mut amounts: Vec<(String, String)> = usd
        .as_array()
        .context("query result")?
        .iter()
        .map(|c| {
            (
                c["contractId"].as_str().unwrap_or_default().to_owned(),
                c["payload"]["amount"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    amounts.sort_by(|a, b| a.1.cmp(&b.1));
    ensure!(
        amounts.iter().map(|a| a.1.as_str()).collect::<Vec<_>>() == ["30", "70"]
            && amounts.iter().all(|a| parts.contains(&a.0)),
        "after the split bob's USD Ious are {amounts:?}, the split returned {parts:?}"
    );

    // An atomic swap across the shards: alice (shard-1) offers a CHF Iou for bob's (shard-2)
    // 7 EUR. bob does not see alice's Iou, so she hands it over as /v1/fetch shows it and
    // he discloses it with his Accept.
    let chf = env
        .ok(
            "/v1/create",
            &bank_t,
            &json!({"templateId": IOU, "payload":
                {"issuer": "bank", "owner": "alice", "currency": "CHF", "amount": "50"}}),
        )
        .await?["contractId"]
        .as_str()
        .context("contractId")?
        .to_owned();
    wait_for("alice's shard to show the CHF Iou", CROSS_SHARD, || async {
        let ious = env.ious(&alice_t).await.ok()?;
        ious.iter().any(|i| i.0 == chf).then_some(())
    })
    .await?;
    let proposal = env
        .ok(
            "/v1/create",
            &alice_t,
            &json!({"templateId": SWAP, "payload": {"proposer": "alice", "counterparty": "bob",
                    "offeredCid": chf, "wantedIssuer": "bank", "wantedCurrency": "EUR",
                    "wantedAmount": "7"}}),
        )
        .await?["contractId"]
        .as_str()
        .context("contractId")?
        .to_owned();
    wait_for("bob's shard to show the proposal", CROSS_SHARD, || async {
        let seen = env
            .ok("/v1/fetch", &bob_t, &json!({"contractId": proposal}))
            .await
            .ok()?;
        (!seen.is_null()).then_some(())
    })
    .await?;
    let offered = env
        .ok("/v1/fetch", &alice_t, &json!({"contractId": chf}))
        .await?;
    ensure!(offered["payload"]["currency"] == "CHF", "{offered}");
    let swapped = env
        .ok(
            "/v1/exercise",
            &bob_t,
            &json!({"templateId": SWAP, "contractId": proposal, "choice": "Accept",
                    "argument": {"counterCid": direct}, "disclosedContracts": [offered]}),
        )
        .await?;
    let (to_bob, to_alice) = (
        swapped["exerciseResult"]["offered"]
            .as_str()
            .context("offered")?
            .to_owned(),
        swapped["exerciseResult"]["counter"]
            .as_str()
            .context("counter")?
            .to_owned(),
    );
    let bob_after = env.ious(&bob_t).await?;
    ensure!(
        bob_after.contains(&(to_bob.clone(), "bob".to_owned()))
            && !bob_after.iter().any(|i| i.0 == direct),
        "{bob_after:?}"
    );
    let alice_after = wait_for("alice's shard to commit the swap", CROSS_SHARD, || async {
        let ious = env.ious(&alice_t).await.ok()?;
        (ious == vec![(to_alice.clone(), "alice".to_owned())]).then_some(ious)
    })
    .await?;
    let paid = env
        .ok(
            "/v1/fetch",
            &alice_t,
            &json!({"contractId": alice_after[0].0}),
        )
        .await?;
    ensure!(
        paid["payload"]["currency"] == "EUR" && paid["payload"]["amount"] == "7",
        "{paid}"
    );

    // Node endpoints, request ids, metrics.
    let r = env
        .http
        .get(format!("{}/livez", env.base))
        .header("x-request-id", "story-42")
        .send()
        .await?;
    ensure!(r.status() == 200, "{r:?}");
    ensure!(
        r.headers()
            .get("x-request-id")
            .is_some_and(|v| v == "story-42"),
        "{r:?}"
    );
    let r = env
        .http
        .get(format!("{}/v1/parties", env.base))
        .send()
        .await?;
    ensure!(
        r.headers().contains_key("x-request-id"),
        "no request id set: {r:?}"
    );
    let metrics = env
        .http
        .get(format!("{}/metrics", env.base))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("ordo_gateway_requests_total")
                && l.contains("route=\"/v1/exercise\"")
                && l.contains("status=\"200\"")),
        "no request counter in /metrics"
    );
    ensure!(
        metrics.contains("ordo_gateway_request_duration_seconds"),
        "no histogram"
    );
    Ok(())
}
