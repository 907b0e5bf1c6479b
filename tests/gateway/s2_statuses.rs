//! Every error status produced by a real request, with a message that says what was wrong,
//! and nothing changed on the ledger.

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::harness::{Answer, Env, IOU};

fn expect(a: &Answer, status: u16, needle: &str, what: &str) -> Result<()> {
    ensure!(
        a.status == status && a.errors.contains(needle),
        "{what}: expected {status} mentioning {needle:?}, got {a:?}"
    );
    Ok(())
}

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    env.ok(
        "/v1/parties/allocate",
        &admin,
        &json!({"identifierHint": "carol", "shard": "shard-1"}),
    )
    .await?;
    let (carol, bank) = (env.party("carol")?, env.party("bank")?);
    let iou = env
        .ok(
            "/v1/create",
            &bank,
            &json!({"templateId": IOU, "payload":
                {"issuer": "bank", "owner": "carol", "currency": "CHF", "amount": "7.5"}}),
        )
        .await?;
    let cid = iou["contractId"].as_str().context("contractId")?.to_owned();
    let before = (env.ious(&carol).await?, env.ious(&bank).await?);
    let transfer = |cid: &str, to: &str| {
        json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
               "argument": {"newOwner": to}})
    };

    // 400: not JSON, a missing field, an ill-typed field, a payload the template refuses.
    let a = env
        .post_raw("/v1/create", Some(&carol), "{not json")
        .await?;
    expect(&a, 400, "not JSON", "malformed body")?;
    let a = env
        .post("/v1/create", Some(&carol), &json!({"payload": {}}))
        .await?;
    expect(&a, 400, "templateId", "missing templateId")?;
    let a = env
        .post(
            "/v1/exercise",
            Some(&carol),
            &json!({"templateId": IOU, "contractId": 5,
        "choice": "Transfer"}),
        )
        .await?;
    expect(&a, 400, "contractId", "ill-typed contractId")?;
    let a = env
        .post(
            "/v1/create",
            Some(&carol),
            &json!({"templateId": IOU, "payload":
            {"issuer": "carol", "owner": "carol", "amount": "1.0"}}),
        )
        .await?;
    expect(&a, 400, "currency", "payload without currency")?;
    let a = env
        .post(
            "/v1/parties/allocate",
            Some(&admin),
            &json!({"identifierHint": "x", "shard": "shard-9"}),
        )
        .await?;
    expect(&a, 400, "shard-9", "unknown shard")?;

    // 401: no token, a token signed with another key.
    let a = env
        .post("/v1/exercise", None, &transfer(&cid, "bob"))
        .await?;
    expect(&a, 401, "Authorization", "no token")?;
    let forged = forge();
    let a = env
        .post("/v1/exercise", Some(&forged), &transfer(&cid, "bob"))
        .await?;
    expect(&a, 401, "invalid token", "forged token")?;

    // 403: party management without admin; a token acting as no party; a party the
    // token does not act as (bank exercising carol's choice is refused by the ledger).
    let a = env
        .post(
            "/v1/parties/allocate",
            Some(&carol),
            &json!({"identifierHint": "eve"}),
        )
        .await?;
    expect(&a, 403, "admin", "allocate without admin")?;
    let a = env
        .post(
            "/v1/create",
            Some(&admin),
            &json!({"templateId": IOU, "payload": {}}),
        )
        .await?;
    expect(&a, 403, "actAs", "command without actAs")?;
    let a = env
        .post("/v1/exercise", Some(&bank), &transfer(&cid, "bank"))
        .await?;
    ensure!(a.status == 403, "bank exercising carol's choice: {a:?}");

    // 404: unknown template, choice, contract.
    let a = env
        .post(
            "/v1/create",
            Some(&carol),
            &json!({"templateId": "iou:Nope", "payload": {}}),
        )
        .await?;
    expect(&a, 404, "Nope", "unknown template")?;
    let a = env
        .post(
            "/v1/exercise",
            Some(&carol),
            &json!({"templateId": IOU, "contractId": cid,
            "choice": "Steal", "argument": {}}),
        )
        .await?;
    expect(&a, 404, "Steal", "unknown choice")?;
    let unknown = "00".repeat(32);
    let a = env
        .post("/v1/exercise", Some(&carol), &transfer(&unknown, "bob"))
        .await?;
    expect(&a, 404, &unknown, "unknown contract")?;

    ensure!(
        (env.ious(&carol).await?, env.ious(&bank).await?) == before,
        "a failed request changed the ledger"
    );

    // 409: a duplicate command id.
    let first = env
        .post(
            "/v1/exercise",
            Some(&carol),
            &json!({"commandId": "carol-once",
            "templateId": IOU, "contractId": cid, "choice": "Split",
            "argument": {"splitAmount": "2.5"}}),
        )
        .await?;
    ensure!(first.status == 200, "{first:?}");
    let after_split = env.ious(&carol).await?;
    ensure!(after_split.len() == 2, "{after_split:?}");
    let a = env
        .post(
            "/v1/create",
            Some(&carol),
            &json!({"commandId": "carol-once", "templateId": IOU,
            "payload": {"issuer": "carol", "owner": "carol", "currency": "X", "amount": "1.0"}}),
        )
        .await?;
    expect(&a, 409, "carol-once", "duplicate command id")?;
    // An archived contract is, to the ledger, one the submitter does not see: 404. (The
    // 409 of a contract locked by a pending transaction is s3's double spend.)
    let a = env
        .post("/v1/exercise", Some(&carol), &transfer(&cid, "bob"))
        .await?;
    expect(&a, 404, &cid, "archived contract")?;
    ensure!(
        env.ious(&carol).await? == after_split,
        "a refused command changed the ledger"
    );
    Ok(())
}

/// A well-formed token signed with a key the network does not use.
fn forge() -> String {
    let mut other = ordo_ledger_client::Network::default();
    other.auth.secret = "not-the-networks-secret-0123456789".into();
    other.party_token(&["carol"]).unwrap_or_default()
}
