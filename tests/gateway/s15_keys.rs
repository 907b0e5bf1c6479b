//! Contract keys over HTTP (examples/packages/registry.toml): two users on two shards
//! register one name at once through `/v1/exercise`; exactly one gets it, the other a 409
//! with DUPLICATE_CONTRACT_KEY. `/v1/fetch` by `templateId` + `key` finds the holder for
//! those who see it (and shows its `key`), `/v1/exercise` by `key` releases it, which frees
//! the name for the other user; bad requests are 400/404 naming what is wrong.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::harness::{CROSS_SHARD, Env};
use crate::s6_stream::{Token, open_at};

const REG: &str = "s15-reg";
const KIM: &str = "s15-kim";
const LEE: &str = "s15-lee";
const PACKAGE: &[u8] = include_bytes!("../../examples/packages/registry.toml");
const NAME: &str = "registry:Name";

fn key(name: &str) -> Value {
    json!({ "authority": REG, "name": name })
}

fn register(registrar: &str, name: &str) -> Value {
    json!({ "templateId": "registry:Registrar", "contractId": registrar,
            "choice": "Register", "argument": { "name": name } })
}

fn fetch_by_key(name: &str) -> Value {
    json!({ "templateId": NAME, "key": key(name) })
}

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    for (party, shard) in [(REG, "shard-1"), (KIM, "shard-1"), (LEE, "shard-2")] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({ "identifierHint": party, "shard": shard }),
        )
        .await?;
    }
    let uploaded = env.post_raw("/v1/packages", Some(&admin), PACKAGE).await?;
    ensure!(uploaded.status == 200, "upload: {uploaded:?}");
    let (reg, kim, lee) = (env.party(REG)?, env.party(KIM)?, env.party(LEE)?);

    // The authority gives each user a Registrar; lee's is seen on shard-2 once it got there.
    let mut registrars = Vec::new();
    for (user, token) in [(KIM, &kim), (LEE, &lee)] {
        let created = env
            .ok(
                "/v1/create",
                &reg,
                &json!({ "templateId": "registry:Registrar",
                         "payload": { "authority": REG, "user": user } }),
            )
            .await?;
        let cid = created["contractId"]
            .as_str()
            .context("contract id")?
            .to_owned();
        let seen = json!({ "contractId": cid });
        ordo_testkit::wait_for("the user's Registrar", CROSS_SHARD, || async {
            let found = env.ok("/v1/fetch", token, &seen).await.ok()?;
            (!found.is_null()).then_some(())
        })
        .await?;
        registrars.push(cid);
    }

    // One name, registered by both at once: one holder, one DUPLICATE_CONTRACT_KEY.
    let (by_kim, by_lee) = (
        register(&registrars[0], "ann"),
        register(&registrars[1], "ann"),
    );
    let (a, b) = tokio::join!(
        env.post("/v1/exercise", Some(&kim), &by_kim),
        env.post("/v1/exercise", Some(&lee), &by_lee),
    );
    let (a, b) = (a?, b?);
    let (winner, winner_token, loser, loser_token, loser_registrar, refused) =
        match (a.status, b.status) {
            (200, 409) => (KIM, &kim, LEE, &lee, &registrars[1], b),
            (409, 200) => (LEE, &lee, KIM, &kim, &registrars[0], a),
            _ => anyhow::bail!("exactly one registration must commit: {a:?} / {b:?}"),
        };
    ensure!(
        refused.code == "DUPLICATE_CONTRACT_KEY" && refused.errors.contains("ann"),
        "{refused:?}"
    );

    // Fetch by key: the holder and the authority see the Name, with its key; the other
    // user does not see it (null).
    let held = env
        .ok("/v1/fetch", winner_token, &fetch_by_key("ann"))
        .await?;
    ensure!(
        held["payload"]["owner"] == winner && held["key"] == key("ann"),
        "{held}"
    );
    let cid = held["contractId"]
        .as_str()
        .context("contract id")?
        .to_owned();
    let by_reg = env.ok("/v1/fetch", &reg, &fetch_by_key("ann")).await?;
    ensure!(by_reg["contractId"] == cid.as_str(), "{by_reg}");
    let hidden = env
        .ok("/v1/fetch", loser_token, &fetch_by_key("ann"))
        .await?;
    ensure!(hidden.is_null(), "{hidden}");
    let nobody = env
        .ok("/v1/fetch", winner_token, &fetch_by_key("bob"))
        .await?;
    ensure!(nobody.is_null(), "{nobody}");

    // The authority follows the name by key on a WebSocket (`/v1/stream/fetch`): the
    // holder now, then its archive and the next holder (below).
    let mut by_key = open_at(env, "/v1/stream/fetch", Token::Header(&reg)).await?;
    by_key
        .send(&json!([{ "templateId": NAME, "key": key("ann") }]))
        .await?;
    let (snapshot, _) = by_key.until_live().await?;
    ensure!(
        snapshot.len() == 1
            && snapshot[0]["created"]["contractId"] == cid.as_str()
            && snapshot[0]["matchedQueries"] == json!([0]),
        "{snapshot:?}"
    );
    // Three queries on one socket: each event names the queries it matches.
    let mut both_queries = open_at(env, "/v1/stream/query", Token::Header(&reg)).await?;
    both_queries
        .send(&json!([
            { "templateIds": [NAME], "query": { "owner": winner } },
            { "templateIds": [NAME], "query": { "name": "ann" } },
            { "templateIds": ["registry:Registrar"] }
        ]))
        .await?;
    let (snapshot, _) = both_queries.until_live().await?;
    let matched = |id: &str| {
        snapshot
            .iter()
            .find(|e| e["created"]["contractId"] == id)
            .map(|e| e["matchedQueries"].clone())
    };
    ensure!(matched(&cid) == Some(json!([0, 1])), "{snapshot:?}");
    ensure!(
        registrars.iter().all(|r| matched(r) == Some(json!([2]))),
        "{snapshot:?}"
    );
    // A key of the wrong shape ends a fetch stream with a 400 and close 1008.
    let mut bad = open_at(env, "/v1/stream/fetch", Token::Header(&reg)).await?;
    bad.send(&json!([{ "templateId": NAME, "key": "ann" }]))
        .await?;
    let failure = bad.next().await?;
    ensure!(failure["status"] == 400, "{failure}");
    ensure!(
        bad.next().await? == json!({ "close": 1008 }),
        "no close 1008"
    );

    // Bad fetches and exercises: 400 or 404, naming what is wrong.
    for (body, status, says) in [
        (
            json!({ "contractId": cid, "templateId": NAME, "key": key("ann") }),
            400,
            "once",
        ),
        (json!({ "templateId": NAME }), 400, "once"),
        (
            json!({ "templateId": "registry:Registrar", "key": key("ann") }),
            400,
            "has no contract key",
        ),
        (
            json!({ "templateId": NAME, "key": { "name": "ann" } }),
            400,
            "authority",
        ),
        (
            json!({ "templateId": "registry:Nope", "key": key("ann") }),
            404,
            "registry:Nope",
        ),
    ] {
        let a = env.post("/v1/fetch", Some(winner_token), &body).await?;
        ensure!(
            a.status == status && a.errors.contains(says),
            "{body}: {a:?}"
        );
    }
    let both = env
        .post(
            "/v1/exercise",
            Some(winner_token),
            &json!({ "templateId": NAME, "contractId": cid, "key": key("ann"),
                     "choice": "Release" }),
        )
        .await?;
    ensure!(both.status == 400, "{both:?}");
    let missing = env
        .post(
            "/v1/exercise",
            Some(winner_token),
            &json!({ "templateId": NAME, "key": key("nobody"), "choice": "Release" }),
        )
        .await?;
    ensure!(
        missing.status == 404 && missing.code == "CONTRACT_KEY_NOT_FOUND",
        "{missing:?}"
    );

    // Exercise by key: the holder releases the name, which frees it for the other user.
    let released = env
        .ok(
            "/v1/exercise",
            winner_token,
            &json!({ "templateId": NAME, "key": key("ann"), "choice": "Release" }),
        )
        .await?;
    ensure!(
        released["events"] == json!([{ "archived": { "contractId": cid, "templateId": NAME } }]),
        "{released}"
    );
    let gone = env
        .ok("/v1/fetch", winner_token, &fetch_by_key("ann"))
        .await?;
    ensure!(gone.is_null(), "{gone}");
    env.ok(
        "/v1/exercise",
        loser_token,
        &register(loser_registrar, "ann"),
    )
    .await?;
    let moved = env
        .ok("/v1/fetch", loser_token, &fetch_by_key("ann"))
        .await?;
    ensure!(
        moved["payload"]["owner"] == loser && moved["contractId"] != cid.as_str(),
        "{moved}"
    );
    // The authority's fetch stream saw the release, then the new holder.
    let released = by_key.next().await?;
    ensure!(
        released["events"]
            == json!([{ "archived": { "contractId": cid, "templateId": NAME },
                        "matchedQueries": [0] }]),
        "{released}"
    );
    let next = by_key.next().await?;
    ensure!(
        next["events"][0]["created"]["contractId"] == moved["contractId"]
            && next["events"][0]["matchedQueries"] == json!([0]),
        "{next}"
    );
    Ok(())
}
