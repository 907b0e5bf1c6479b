//! Pruning a shard mid-story. A second gateway follows the network, then loses its feed
//! (its cache token expires) while shard-1 commits more and is pruned with `ordo admin
//! prune` past that gateway's offset: shard-1's active contracts are unchanged, its update
//! log and completions from before the pruned offset are refused with
//! PARTICIPANT_PRUNED_DATA_ACCESSED naming it (a WebSocket stream resuming from there is
//! told to start from a new snapshot), GetLatestPrunedOffsets reports it; once the
//! gateway's token is renewed it rebuilds shard-1's part of its cache from a snapshot,
//! without a restart, and answers every party's query as the shards' active contracts
//! are, serving shard-2's party throughout.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt};
use ordo_gateway::GatewayConfig;
use ordo_ledger_client::{Filter, LedgerClient, LedgerError};
use ordo_proto::errors::PARTICIPANT_PRUNED_DATA_ACCESSED;
use ordo_testkit::wait_for;
use serde_json::{Value, json};

use crate::harness::{Api, CROSS_SHARD, Env, Gateway, IOU, contract_ids};
use crate::s6_stream as ws;

const ANN: &str = "s12-ann";
const BO: &str = "s12-bo";
/// How long the second gateway's first cache token lasts.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12);
/// Ious ann creates while that gateway cannot follow, and how many she then transfers.
const CREATES: usize = 60;
const TRANSFERS: usize = 20;

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    for (party, shard) in [(ANN, "shard-1"), (BO, "shard-2")] {
        let placed = env
            .ok(
                "/v1/parties/allocate",
                &admin,
                &json!({ "identifierHint": party, "shard": shard }),
            )
            .await?;
        ensure!(placed["shard"] == shard, "{placed}");
    }
    let (ann, bo) = (env.party(ANN)?, env.party(BO)?);
    env.ok("/v1/create", &ann, &iou(ANN, ANN, "1")).await?;
    env.ok("/v1/create", &bo, &iou(BO, BO, "1")).await?;

    // The second gateway, its cache token expiring soon.
    let signer = env.network.token_signer()?;
    let token = |lifetime: Duration| -> Result<String> {
        let exp = (SystemTime::now() + lifetime).duration_since(UNIX_EPOCH)?;
        signer
            .sign(&json!({ "readAsAnyParty": true, "exp": exp.as_secs() }))
            .map_err(anyhow::Error::msg)
    };
    let token_file = env.dir().join("gateway-s12-cache.token");
    ordo_testkit::write_secret(&token_file, token(TOKEN_LIFETIME)?)?;
    let expires = tokio::time::Instant::now() + TOKEN_LIFETIME;
    let mut config = GatewayConfig {
        network_file: env.network.path.clone(),
        ..Default::default()
    };
    config.cache.file = env.dir().join("gateway-s12-cache.sqlite");
    config.cache.token_file = Some(token_file.clone());
    let mut gateway = Gateway::start_with(config, &env.http).await?;
    let outcome = async {
        let api = gateway.api(&env.http);
        ensure!(api.ious(&ann).await?.len() == 1, "ann before");
        // Its feeds end at the expiry and cannot resume once the participants' leeway for
        // clock skew (5 s past `exp`) is over.
        tokio::time::sleep_until(expires + Duration::from_secs(7)).await;
        let rebuilt_before = crate::s4_cache::rebuilds(env, "pruned").await?;
        let shard_1 = env.network.client_for_party(ANN).await?;
        let end_before = shard_1.ledger_end().await?;

        // shard-1 commits more: creates, then transfers (archives) some to bo on shard-2.
        let created: Vec<String> = futures::stream::iter(0..CREATES)
            .map(|i| {
                let ann = ann.clone();
                async move {
                    let c = env
                        .ok("/v1/create", &ann, &iou(ANN, ANN, &format!("{}", i + 2)))
                        .await?;
                    c["contractId"]
                        .as_str()
                        .map(str::to_owned)
                        .context("contractId")
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        futures::stream::iter(created.iter().take(TRANSFERS))
            .map(|cid| {
                let ann = ann.clone();
                async move {
                    env.ok(
                        "/v1/exercise",
                        &ann,
                        &json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
                                "argument": {"newOwner": BO}}),
                    )
                    .await
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await?;
        let acs_before = active(&shard_1, ANN).await?;
        let end = shard_1.ledger_end().await?;
        ensure!(
            end > end_before,
            "shard-1 did not move: {end_before} → {end}"
        );

        // Pruned through the operator's command.
        let pruned = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args([
                "admin",
                "prune",
                "--service",
                "shard-1",
                "--json",
                "--up-to",
            ])
            .arg(end.to_string())
            .arg("--network")
            .arg(&env.network.path)
            .output()
            .await?;
        ensure!(
            pruned.status.success(),
            "ordo admin prune: {}",
            String::from_utf8_lossy(&pruned.stderr)
        );
        let outcome: Value = serde_json::from_slice(&pruned.stdout)?;
        ensure!(
            outcome["pruned"]["updates"] == end
                && outcome["updates_deleted"].as_i64() >= Some(end - end_before),
            "{outcome}"
        );
        println!("s12: shard-1 pruned up to {end}: {outcome}");

        // Active contracts unchanged; the log starts after the pruned offset.
        ensure!(
            active(&shard_1, ANN).await? == acs_before,
            "pruning changed ann's contracts"
        );
        let offsets = shard_1.latest_pruned_offsets().await?;
        ensure!(
            offsets.updates == end && offsets.completions > 0,
            "{offsets:?}"
        );
        let refused = first_update(&shard_1, 0)
            .await
            .expect_err("read pruned updates");
        ensure!(
            refused.is(PARTICIPANT_PRUNED_DATA_ACCESSED)
                && refused.message().contains(&format!("up to offset {end}")),
            "reading from offset 0: {refused:?}"
        );
        let refused = match shard_1.completions(&[ANN.to_owned()], 0).await {
            Err(e) => e,
            Ok(mut stream) => stream
                .next()
                .await
                .context("the completion stream ended")?
                .expect_err("read pruned completions"),
        };
        ensure!(
            refused.is(PARTICIPANT_PRUNED_DATA_ACCESSED),
            "completions from 0: {refused:?}"
        );
        // The live gateway, whose feed was never behind, answers as before.
        ensure!(
            ids_of(&env.api(), &ann).await? == acs_before,
            "the first gateway after pruning"
        );
        // A WebSocket stream resumed from before the pruned offset is told plainly to
        // start again from a snapshot; one without `offset` gets that snapshot.
        let mut stream = ws::open(env, ws::Token::Header(&ann)).await?;
        stream
            .send(&json!({ "templateIds": [IOU], "offset": { "shard-1": 1 } }))
            .await?;
        let failure = loop {
            let m = stream.next().await?;
            if m.get("errors").is_some() {
                break m;
            }
            ensure!(m["live"] == true, "before the failure: {m}");
        };
        ensure!(
            failure["status"] == 409
                && failure["code"] == PARTICIPANT_PRUNED_DATA_ACCESSED.id
                && failure["errors"][0]
                    .as_str()
                    .is_some_and(|m| m.contains("without `offset`")),
            "{failure}"
        );
        let close = stream.next().await?;
        ensure!(close == json!({ "close": 1008 }), "{close}");
        let mut stream = ws::open(env, ws::Token::Header(&ann)).await?;
        stream.send(&json!({ "templateIds": [IOU] })).await?;
        let (events, live) = stream.until_live().await?;
        let snapshot: BTreeSet<String> = events
            .iter()
            .filter_map(|e| e["created"]["contractId"].as_str().map(str::to_owned))
            .collect();
        ensure!(snapshot == acs_before, "the new snapshot: {snapshot:?}");
        ensure!(live["offset"]["shard-1"].as_i64() >= Some(end), "{live}");

        // The second gateway gets a token again: bo (shard-2) is served at once, and
        // shard-1's part is rebuilt from a snapshot.
        ordo_testkit::write_secret(&token_file, token(Duration::from_secs(600))?)?;
        let bo_acs = active(&env.network.client_for_party(BO).await?, BO).await?;
        wait_for(
            "bo's contracts on the second gateway",
            CROSS_SHARD,
            || async { (ids_of(&api, &bo).await.ok()? == bo_acs).then_some(()) },
        )
        .await?;
        wait_for(
            "ann's contracts on the second gateway",
            CROSS_SHARD,
            || async { (ids_of(&api, &ann).await.ok()? == acs_before).then_some(()) },
        )
        .await?;
        ensure!(
            crate::s4_cache::rebuilds(env, "pruned").await? > rebuilt_before,
            "the second gateway did not rebuild shard-1 after the pruning"
        );
        // And it follows shard-1 again.
        let next = env.ok("/v1/create", &ann, &iou(ANN, ANN, "99")).await?;
        let cid = next["contractId"]
            .as_str()
            .context("contractId")?
            .to_owned();
        wait_for(
            "ann's new Iou on the second gateway",
            CROSS_SHARD,
            || async { ids_of(&api, &ann).await.ok()?.contains(&cid).then_some(()) },
        )
        .await?;
        let after = first_update(&shard_1, end).await?;
        ensure!(
            after.is_some_and(|o| o > end),
            "reading from the pruned offset: {after:?}"
        );
        anyhow::Ok(())
    }
    .await;
    gateway.stop().await?;
    outcome
}

fn iou(issuer: &str, owner: &str, amount: &str) -> Value {
    json!({"templateId": IOU, "payload":
        {"issuer": issuer, "owner": owner, "currency": "EUR", "amount": amount}})
}

/// The ids of the active Ious `party` sees on a shard, through the Ledger API.
async fn active(client: &LedgerClient, party: &str) -> Result<BTreeSet<String>> {
    let mut filter = Filter::party(party);
    filter.templates.push(IOU.to_owned());
    Ok(client
        .active_contracts(&filter)
        .await?
        .contracts
        .into_iter()
        .map(|c| c.contract_id)
        .collect())
}

/// The ids of the Ious a gateway answers `token`'s query with.
async fn ids_of(api: &Api<'_>, token: &str) -> Result<BTreeSet<String>> {
    let a = api
        .post("/v1/query", Some(token), &json!({ "templateIds": [IOU] }))
        .await?;
    ensure!(a.status == 200, "{a:?}");
    Ok(contract_ids(&a.result))
}

/// The offset of ann's first update after `from` up to the ledger end, if any.
async fn first_update(client: &LedgerClient, from: i64) -> Result<Option<i64>, LedgerError> {
    let mut updates = client.updates(&Filter::party(ANN), from, false).await?;
    match updates.next().await {
        None => Ok(None),
        Some(tx) => Ok(Some(tx?.offset)),
    }
}
