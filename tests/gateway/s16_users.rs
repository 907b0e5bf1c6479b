//! Users over HTTP (Daml JSON API v1's user management): an admin creates a user with
//! CanActAs on a shard-1 party and grants it CanReadAs on a shard-2 party; with one user
//! token it creates as the first and reads the second's contracts; its own user and rights
//! read back; after a revoke the next command is refused; bad requests are 400/403/404/409
//! with their codes.

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::harness::{Env, IOU};

const ANNA: &str = "s16-anna";
const BERT: &str = "s16-bert";
const USER: &str = "s16-app";

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    for (party, shard) in [(ANNA, "shard-1"), (BERT, "shard-2")] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({ "identifierHint": party, "shard": shard }),
        )
        .await?;
    }
    // bert's Iou, which the user will read.
    env.ok(
        "/v1/create",
        &env.party(BERT)?,
        &json!({ "templateId": IOU, "payload":
            { "issuer": BERT, "owner": BERT, "currency": "EUR", "amount": "7" } }),
    )
    .await?;

    let created = env
        .ok(
            "/v1/user/create",
            &admin,
            &json!({ "userId": USER, "primaryParty": ANNA,
                     "rights": [{ "type": "CanActAs", "party": ANNA }] }),
        )
        .await?;
    ensure!(
        created == json!({ "userId": USER, "primaryParty": ANNA }),
        "{created}"
    );
    let granted = env
        .ok(
            "/v1/user/rights/grant",
            &admin,
            &json!({ "userId": USER, "rights": [{ "type": "CanReadAs", "party": BERT }] }),
        )
        .await?;
    ensure!(
        granted == json!([{ "type": "CanReadAs", "party": BERT }]),
        "{granted}"
    );

    let token = env.network.user_token(USER)?;
    let own = env.api().get("/v1/user", Some(&token)).await?;
    ensure!(own.status == 200 && own.result["userId"] == USER, "{own:?}");
    let rights = env.api().get("/v1/user/rights", Some(&token)).await?;
    ensure!(
        rights.result.as_array().map(Vec::len) == Some(2),
        "{rights:?}"
    );
    // One token: creates as anna (shard-1), reads bert's Iou (shard-2).
    let mine = env
        .ok(
            "/v1/create",
            &token,
            &json!({ "templateId": IOU, "payload":
                { "issuer": ANNA, "owner": ANNA, "currency": "USD", "amount": "3" } }),
        )
        .await?;
    ensure!(mine["signatories"] == json!([ANNA]), "{mine}");
    let seen = env.ious(&token).await?;
    let owners: Vec<&str> = seen.iter().map(|(_, owner)| owner.as_str()).collect();
    ensure!(owners.contains(&BERT) && owners.contains(&ANNA), "{seen:?}");

    // The user may not manage users, nor read others.
    let refused = env
        .post(
            "/v1/user/create",
            Some(&token),
            &json!({ "userId": "s16-other" }),
        )
        .await?;
    ensure!(refused.status == 403, "{refused:?}");
    let listed = env.api().get("/v1/users", Some(&admin)).await?;
    ensure!(
        listed
            .result
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["userId"] == USER)),
        "{listed:?}"
    );
    // Bad requests.
    let dup = env
        .post("/v1/user/create", Some(&admin), &json!({ "userId": USER }))
        .await?;
    ensure!(
        dup.status == 409 && dup.code == "USER_ALREADY_EXISTS",
        "{dup:?}"
    );
    let bad_right = env
        .post(
            "/v1/user/rights/grant",
            Some(&admin),
            &json!({ "userId": USER, "rights": [{ "type": "Owner" }] }),
        )
        .await?;
    ensure!(bad_right.status == 400, "{bad_right:?}");
    let missing = env
        .post("/v1/user", Some(&admin), &json!({ "userId": "s16-nobody" }))
        .await?;
    ensure!(
        missing.status == 404 && missing.code == "USER_NOT_FOUND",
        "{missing:?}"
    );

    // Revoked: the next command as anna is refused.
    let revoked = env
        .ok(
            "/v1/user/rights/revoke",
            &admin,
            &json!({ "userId": USER, "rights": [{ "type": "CanActAs", "party": ANNA }] }),
        )
        .await?;
    ensure!(
        revoked == json!([{ "type": "CanActAs", "party": ANNA }]),
        "{revoked}"
    );
    let after = env
        .post(
            "/v1/create",
            Some(&token),
            &json!({ "templateId": IOU, "payload":
                { "issuer": ANNA, "owner": ANNA, "currency": "USD", "amount": "4" } }),
        )
        .await?;
    ensure!(after.status == 403, "a command after the revoke: {after:?}");
    // Deleted: every request with its token is refused.
    env.ok("/v1/user/delete", &admin, &json!({ "userId": USER }))
        .await
        .context("delete")?;
    let gone = env.api().get("/v1/user/rights", Some(&token)).await?;
    ensure!(gone.status == 403 || gone.status == 404, "{gone:?}");
    Ok(())
}
