//! Query operators (`%gte`, `%lt`, `%in`, …) and paged answers of `/v1/query`, answered
//! from the cache's index: the bank (shard-1) issues Ious of various amounts and
//! currencies to alice (shard-1) and bob (shard-2); each query's answer is exactly the
//! Ious created that match, once each (bob's are stored by both shards), through pages of
//! any size; bad queries are 400 INVALID_ARGUMENT naming what was wrong, and change
//! nothing.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::harness::{CROSS_SHARD, Env, IOU, contract_ids};

const BANK: &str = "s14-bank";
const ALICE: &str = "s14-alice";
const BOB: &str = "s14-bob";

/// (amount, currency, owner) of every Iou created.
const IOUS: [(&str, &str, &str); 12] = [
    ("0.5", "USD", ALICE),
    ("1", "EUR", BOB),
    ("9.99", "CHF", ALICE),
    ("10", "USD", BOB),
    ("10.0001", "EUR", ALICE),
    ("99.5", "CHF", BOB),
    ("100", "USD", ALICE),
    ("150.25", "EUR", BOB),
    ("199.999", "USD", ALICE),
    ("200", "CHF", BOB),
    ("250", "EUR", ALICE),
    ("1000000.000001", "USD", BOB),
];

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    for (party, shard) in [(BANK, "shard-1"), (ALICE, "shard-1"), (BOB, "shard-2")] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({ "identifierHint": party, "shard": shard }),
        )
        .await?;
    }
    let bank = env.party(BANK)?;
    let mut created = Vec::new();
    for (amount, currency, owner) in IOUS {
        let c = env
            .ok(
                "/v1/create",
                &bank,
                &json!({"templateId": IOU, "payload": {"issuer": BANK, "owner": owner,
                        "currency": currency, "amount": amount}}),
            )
            .await?;
        let id = c["contractId"].as_str().context("contractId")?.to_owned();
        created.push((id, amount.parse::<f64>()?, currency, owner));
    }
    // The bank sees every Iou on shard-1, bob his on shard-2 (the same contracts).
    let bank_bob = env.network.party_token(&[BANK, BOB])?;
    // Bob's shard commits the cross-shard creates on its own.
    let bob = env.party(BOB)?;
    ordo_testkit::wait_for("bob to see his 6 Ious", CROSS_SHARD, || async {
        let seen = env.ious(&bob).await.ok()?;
        (seen.len() == 6).then_some(())
    })
    .await?;
    let expect = |pred: &dyn Fn(f64, &str, &str) -> bool| -> BTreeSet<String> {
        created
            .iter()
            .filter(|(_, a, c, o)| pred(*a, c, o))
            .map(|(id, ..)| id.clone())
            .collect()
    };

    let cases: [(Value, BTreeSet<String>); 5] = [
        (
            json!({"amount": {"%gte": "10.0", "%lt": "200"}}),
            expect(&|a, _, _| (10.0..200.0).contains(&a)),
        ),
        (
            json!({"amount": {"%gt": 10, "%lte": "200.000"}}),
            expect(&|a, _, _| a > 10.0 && a <= 200.0),
        ),
        (
            json!({"currency": {"%in": ["USD", "EUR"]}, "amount": {"%lt": "150.25"}}),
            expect(&|a, c, _| c != "CHF" && a < 150.25),
        ),
        (
            json!({"currency": {"%gte": "EUR", "%lt": "USD"}, "owner": BOB}),
            expect(&|_, c, o| c == "EUR" && o == BOB),
        ),
        (json!({"amount": "100.00"}), expect(&|a, _, _| a == 100.0)),
    ];
    for (query, expected) in &cases {
        let body = json!({"templateIds": [IOU], "query": query});
        let all = env.ok("/v1/query", &bank_bob, &body).await?;
        ensure!(
            contract_ids(&all) == *expected,
            "{query}: {all}, expected {expected:?}"
        );
        ensure!(
            all.as_array().map(Vec::len) == Some(expected.len()),
            "{query}: an Iou answered twice: {all}"
        );
        for size in [1, 2, 5] {
            let paged = pages(env, &bank_bob, &body, size).await?;
            ensure!(
                paged.len() == expected.len()
                    && paged.iter().cloned().collect::<BTreeSet<_>>() == *expected,
                "{query} in pages of {size}: {paged:?}, expected {expected:?}"
            );
        }
    }
    // bob alone, on shard-2: his Ious in the range.
    let bob_range = env
        .ok(
            "/v1/query",
            &bob,
            &json!({"templateIds": [IOU], "query": {"amount": {"%gte": "10", "%lt": "1000"}}}),
        )
        .await?;
    ensure!(
        contract_ids(&bob_range) == expect(&|a, _, o| o == BOB && (10.0..1000.0).contains(&a)),
        "bob: {bob_range}"
    );

    // Bad queries: 400 INVALID_ARGUMENT naming what was wrong.
    let before = env.ok("/v1/query", &bank_bob, &json!({})).await?;
    for (body, needle) in [
        (
            json!({"templateIds": [IOU], "query": {"amount": {"%gtx": "1"}}}),
            "unknown operator `%gtx`",
        ),
        (
            json!({"templateIds": [IOU], "query": {"owner": {"%gte": BOB}}}),
            "not a party",
        ),
        (
            json!({"templateIds": [IOU], "query": {"amount": {"%lt": "ten"}}}),
            "query.amount",
        ),
        (
            json!({"templateIds": [IOU], "query": {"amount": {"%lt": true}}}),
            "query.amount",
        ),
        (
            json!({"templateIds": [IOU], "query": {"weight": {"%lt": "1"}}}),
            "unknown field `query.weight`",
        ),
        (
            json!({"templateIds": [IOU], "query": {"currency": {"%in": "USD"}}}),
            "%in",
        ),
        (json!({"templateIds": [IOU], "pageSize": 0}), "pageSize"),
        (
            json!({"templateIds": [IOU], "pageToken": "00"}),
            "pageToken",
        ),
        (
            json!({"templateIds": [IOU], "pageSize": 1, "pageToken": "zz"}),
            "pageToken",
        ),
    ] {
        let r = env
            .http
            .post(format!("{}/v1/query", env.base))
            .bearer_auth(&bank_bob)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let answer: Value = r.json().await?;
        let errors = answer["errors"].to_string();
        ensure!(
            status == 400 && answer["code"] == "INVALID_ARGUMENT" && errors.contains(needle),
            "{body}: {status} {answer}"
        );
    }
    // A page token is bound to its query.
    let page = env
        .http
        .post(format!("{}/v1/query", env.base))
        .bearer_auth(&bank_bob)
        .json(&json!({"templateIds": [IOU], "query": {"amount": {"%gte": "1"}}, "pageSize": 1}))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let token = page["nextPageToken"].as_str().context("nextPageToken")?;
    let other = env
        .post(
            "/v1/query",
            Some(&bank_bob),
            &json!({"templateIds": [IOU], "query": {"amount": {"%gte": "2"}}, "pageSize": 1,
                    "pageToken": token}),
        )
        .await?;
    ensure!(
        other.status == 400 && other.errors.contains("another query"),
        "{other:?}"
    );
    let after = env.ok("/v1/query", &bank_bob, &json!({})).await?;
    ensure!(
        contract_ids(&before) == contract_ids(&after),
        "a refused query changed what the parties see"
    );
    // GET /v1/query (streamed): every contract of the parties, once each.
    let everything = env.get("/v1/query", Some(&bank_bob)).await?;
    ensure!(
        contract_ids(&everything.result) == contract_ids(&after)
            && everything.result.as_array().map(Vec::len) == Some(contract_ids(&after).len()),
        "GET /v1/query: {}",
        everything.result
    );
    Ok(())
}

/// Every page of `body`'s answer, `size` at a time: the contract ids in order.
async fn pages(env: &Env, token: &str, body: &Value, size: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut body = body.clone();
    body["pageSize"] = json!(size);
    loop {
        let r = env
            .http
            .post(format!("{}/v1/query", env.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        ensure!(r.status() == 200, "{body}: {}", r.status());
        let page: Value = r.json().await?;
        let result = page["result"].as_array().context("result")?;
        ensure!(result.len() <= size, "a page larger than {size}: {page}");
        out.extend(
            result
                .iter()
                .filter_map(|c| c["contractId"].as_str().map(str::to_owned)),
        );
        match page["nextPageToken"].as_str() {
            Some(next) => {
                ensure!(result.len() == size, "a short page before the last: {page}");
                body["pageToken"] = json!(next);
            }
            None => return Ok(out),
        }
    }
}
