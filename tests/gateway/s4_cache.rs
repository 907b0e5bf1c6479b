//! The gateway's cache. After the earlier modules' transactions and a mix of creates,
//! cross-shard transfers, splits and merges here, every party's contracts in the cache —
//! read from its SQLite file and through `/v1/query` — equal the union of the shards'
//! active contracts for that party, read directly through the Ledger API. Deleting the
//! file, corrupting it, or leaving it ahead of a shard's ledger end, then restarting the
//! gateway, rebuilds the same contents; a plain restart resumes from the stored offsets
//! without rebuilding. Read-your-writes holds under concurrent writers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use ordo_gateway::cache::{self, Store};
use ordo_ledger_client::{Contract, Filter};
use ordo_testkit::wait_for;
use serde_json::{Value, json};

use crate::harness::{CROSS_SHARD, Env, IOU, contract_ids};

/// (shard-1, shard-2) issuers and owners; each issuer's Ious go to the owner on its shard.
const BANK: (&str, &str) = ("s4-bank", "s4-bank2");
const OWNER: (&str, &str) = ("s4-alice", "s4-bob");
/// Concurrent writers of the read-your-writes check, and their rounds each.
const WRITERS: usize = 8;
const ROUNDS: usize = 3;

/// A contract as compared here: id, template and payload (as JSON text).
type Seen = BTreeSet<(String, String, String)>;

pub async fn run(env: &mut Env) -> Result<()> {
    let started = Instant::now();
    let admin = env.admin()?;
    for (party, shard) in [
        (BANK.0, "shard-1"),
        (OWNER.0, "shard-1"),
        (BANK.1, "shard-2"),
        (OWNER.1, "shard-2"),
    ] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({"identifierHint": party, "shard": shard}),
        )
        .await?;
    }
    mix(env).await?;
    let settled = settle(env).await?;
    println!(
        "s4: the cache equals the ledger for {} parties ({} contracts)",
        settled.len(),
        settled.values().map(BTreeSet::len).sum::<usize>()
    );

    // A restart resumes from the stored offsets, rebuilding nothing: a contract created
    // while the gateway was down shows, and shard-1's offset only moved forward.
    let file = env.cache_file.clone();
    let rebuilt_before = rebuilds(env, "").await?;
    env.stop_gateway().await?;
    let stopped_at = shard_1_offset(&file).await?;
    let bank = env.party(BANK.0)?;
    let ledger = env
        .network
        .client_for_shard_with_token("shard-1", &bank)
        .await?;
    let payload = json!({"issuer": BANK.0, "owner": OWNER.0, "currency": "DOWN", "amount": "1"});
    let while_down = ledger.create(BANK.0, IOU, payload).await?;
    let settled = {
        env.restart_gateway().await?;
        // Ready means caught up: the file already holds shard-1 at its ledger end.
        let end = ledger.ledger_end().await?;
        let reader = Store::open_read_only(&file).await?;
        let held = reader.offset("shard-1").await?;
        reader.close().await;
        ensure!(
            held >= Some(end),
            "ready with shard-1 at {held:?} in the cache, its ledger end {end}"
        );
        let created = while_down.created_of(IOU);
        let fetched = env
            .ok("/v1/fetch", &bank, &json!({"contractId": created.first()}))
            .await?;
        ensure!(
            fetched["payload"]["currency"] == "DOWN",
            "the contract created while the gateway was down: {fetched}"
        );
        settle(env).await?
    };
    ensure!(
        rebuilds(env, "").await? == rebuilt_before,
        "a plain restart rebuilt the cache"
    );
    let missing_before = rebuilds(env, "file_missing").await?;
    env.stop_gateway().await?;
    let resumed_at = shard_1_offset(&file).await?;
    ensure!(
        resumed_at > stopped_at,
        "shard-1's offset {stopped_at} → {resumed_at}"
    );

    // Rebuilt from the shards' snapshots: after the file was deleted, after it was
    // corrupted, and after it was left ahead of shard-1's ledger end.
    std::fs::remove_file(&file)?;
    restarted_with_the_same_contents(env, &settled).await?;
    ensure!(
        rebuilds(env, "file_missing").await? >= missing_before + 2.0,
        "no file_missing rebuilds counted"
    );

    let before = rebuilds(env, "file_corrupt").await?;
    env.stop_gateway().await?;
    std::fs::write(&file, vec![0xA5u8; 64 * 1024])?;
    restarted_with_the_same_contents(env, &settled).await?;
    ensure!(
        rebuilds(env, "file_corrupt").await? >= before + 2.0,
        "no file_corrupt rebuilds counted"
    );
    let mut aside = file.clone().into_os_string();
    aside.push(".corrupt");
    ensure!(
        std::path::Path::new(&aside).exists(),
        "the corrupt file was not moved aside"
    );

    let before = rebuilds(env, "ahead_of_shard").await?;
    env.stop_gateway().await?;
    let offset = shard_1_offset(&file).await?;
    let (store, _) = Store::open(&file).await?;
    store.apply("shard-1", offset + 1000, &[]).await?;
    store.close().await;
    restarted_with_the_same_contents(env, &settled).await?;
    ensure!(
        rebuilds(env, "ahead_of_shard").await? >= before + 1.0,
        "no ahead_of_shard rebuild counted"
    );
    let metrics = env.api().metrics().await?;
    for gauge in [
        "ordo_gateway_cache_offset{shard=\"shard-1\"}",
        "ordo_gateway_cache_contracts",
    ] {
        ensure!(metrics.contains(gauge), "no {gauge} in /metrics");
    }

    let rebuilt = started.elapsed();
    read_your_writes(env).await?;
    println!(
        "s4: rebuilt three times; {WRITERS} writers read their {} writes; done in {:.1?} ({rebuilt:.1?} to the rebuilds)",
        WRITERS * ROUNDS * 2,
        started.elapsed()
    );
    Ok(())
}

/// Creates, transfers across shards, splits and merges.
async fn mix(env: &Env) -> Result<()> {
    let (bank, bank2) = (env.party(BANK.0)?, env.party(BANK.1)?);
    let (alice, bob) = (env.party(OWNER.0)?, env.party(OWNER.1)?);
    let mut usd = Vec::new();
    for amount in ["100", "50", "70"] {
        usd.push(create(env, &bank, BANK.0, OWNER.0, "USD", amount).await?);
    }
    // alice (shard-1) → bob (shard-2), then bob splits and merges what he holds.
    let to_bob = exercise(
        env,
        &alice,
        &usd[0],
        "Transfer",
        json!({"newOwner": OWNER.1}),
    )
    .await?;
    let to_bob = to_bob["exerciseResult"]
        .as_str()
        .context("exerciseResult")?
        .to_owned();
    exercise(env, &alice, &usd[1], "Split", json!({"splitAmount": "20"})).await?;
    wait_for(
        "bob's shard to show alice's transfer",
        CROSS_SHARD,
        || async {
            let ious = env.ious(&bob).await.ok()?;
            ious.iter().any(|(cid, _)| *cid == to_bob).then_some(())
        },
    )
    .await?;
    let parts = exercise(env, &bob, &to_bob, "Split", json!({"splitAmount": "40"})).await?;
    let parts: Vec<String> = serde_json::from_value(parts["exerciseResult"].clone())?;
    ensure!(parts.len() == 2, "{parts:?}");
    exercise(env, &bob, &parts[0], "Merge", json!({"otherCid": parts[1]})).await?;
    // The shard-2 issuer's Iou to bob, transferred to alice (shard-2 → shard-1).
    let eur = create(env, &bank2, BANK.1, OWNER.1, "EUR", "10").await?;
    exercise(env, &bob, &eur, "Transfer", json!({"newOwner": OWNER.0})).await?;
    // And one of bob's own, archived by a transfer to himself.
    let own = create(env, &bank2, BANK.1, OWNER.1, "EUR", "5").await?;
    exercise(env, &bob, &own, "Transfer", json!({"newOwner": OWNER.1})).await?;
    Ok(())
}

async fn create(
    env: &Env,
    token: &str,
    issuer: &str,
    owner: &str,
    currency: &str,
    amount: &str,
) -> Result<String> {
    let iou = env
        .ok(
            "/v1/create",
            token,
            &json!({"templateId": IOU, "payload":
                {"issuer": issuer, "owner": owner, "currency": currency, "amount": amount}}),
        )
        .await?;
    Ok(iou["contractId"].as_str().context("contractId")?.to_owned())
}

async fn exercise(
    env: &Env,
    token: &str,
    cid: &str,
    choice: &str,
    argument: Value,
) -> Result<Value> {
    env.ok(
        "/v1/exercise",
        token,
        &json!({"templateId": IOU, "contractId": cid, "choice": choice, "argument": argument}),
    )
    .await
}

/// Every party's contracts three ways: the union of the shards' active contracts read
/// through the Ledger API, the cache file, and `/v1/query`.
struct Views {
    ledger: BTreeMap<String, Seen>,
    file: BTreeMap<String, Seen>,
    query: BTreeMap<String, Seen>,
}

impl Views {
    async fn read(env: &Env) -> Result<Self> {
        let parties = env.parties().await?;
        let mut views = Self {
            ledger: BTreeMap::new(),
            file: BTreeMap::new(),
            query: BTreeMap::new(),
        };
        for party in parties {
            let token = env.party(&party)?;
            let mut ledger = Seen::new();
            for shard in env.network.shards() {
                let client = env
                    .network
                    .client_for_shard_with_token(&shard, &token)
                    .await?;
                let acs = client.active_contracts(&Filter::party(&party)).await?;
                ledger.extend(acs.contracts.iter().map(seen));
            }
            let file = cache::read_contracts(&env.cache_file, &party).await?;
            let answer = env.ok("/v1/query", &token, &json!({})).await?;
            let query = answer
                .as_array()
                .context("query result")?
                .iter()
                .map(|c| {
                    (
                        c["contractId"].as_str().unwrap_or_default().to_owned(),
                        c["templateId"].as_str().unwrap_or_default().to_owned(),
                        c["payload"].to_string(),
                    )
                })
                .collect();
            views.ledger.insert(party.clone(), ledger);
            views
                .file
                .insert(party.clone(), file.iter().map(seen).collect());
            views.query.insert(party, query);
        }
        Ok(views)
    }

    fn agree(&self) -> bool {
        self.ledger == self.file && self.ledger == self.query
    }

    /// The parties whose views differ, and how.
    fn differences(&self) -> String {
        let mut out = Vec::new();
        for (party, ledger) in &self.ledger {
            let (file, query) = (&self.file[party], &self.query[party]);
            if ledger != file || ledger != query {
                out.push(format!(
                    "{party}: ledger {ledger:?}\n  cache file {file:?}\n  /v1/query {query:?}"
                ));
            }
        }
        out.join("\n")
    }
}

fn seen(c: &Contract) -> (String, String, String) {
    (
        c.contract_id.clone(),
        c.template_id.clone(),
        c.payload.to_string(),
    )
}

/// Waits until, for every party, the cache (file and query) equals the ledger (cross-shard
/// transactions may still be committing on their second shard); that state.
async fn settle(env: &Env) -> Result<BTreeMap<String, Seen>> {
    let agreed = wait_for("the cache to equal the ledger", CROSS_SHARD, || async {
        let views = Views::read(env).await.ok()?;
        views.agree().then_some(views.ledger)
    })
    .await;
    match agreed {
        Ok(ledger) => {
            ensure!(
                ledger.values().map(BTreeSet::len).sum::<usize>() > 10,
                "too few contracts to compare: {ledger:?}"
            );
            Ok(ledger)
        }
        Err(e) => bail!("{e}:\n{}", Views::read(env).await?.differences()),
    }
}

/// Starts the gateway again; its cache (file and query) holds `settled` for every party.
async fn restarted_with_the_same_contents(
    env: &mut Env,
    settled: &BTreeMap<String, Seen>,
) -> Result<()> {
    env.restart_gateway().await?;
    let views = Views::read(env).await?;
    ensure!(
        views.agree() && &views.ledger == settled,
        "after a restart:\n{}\nsettled before: {settled:?}",
        views.differences()
    );
    Ok(())
}

/// The offset of shard-1 the (stopped) gateway's cache file holds.
async fn shard_1_offset(file: &std::path::Path) -> Result<i64> {
    let (store, _) = Store::open(file).await?;
    let offset = store.offset("shard-1").await?;
    store.close().await;
    offset.context("no offset of shard-1")
}

/// `ordo_gateway_cache_rebuilds_total` for `reason` (every reason: empty), over every
/// shard (the process's gateways share one metrics registry).
pub async fn rebuilds(env: &Env, reason: &str) -> Result<f64> {
    let metrics = env.api().metrics().await?;
    let label = if reason.is_empty() {
        String::new()
    } else {
        format!("reason=\"{reason}\"")
    };
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("ordo_gateway_cache_rebuilds_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Concurrent writers, each creating Ious and splitting them, and each reading its own
/// writes through the same gateway at once: the new contracts seen, the archived not.
async fn read_your_writes(env: &Env) -> Result<()> {
    let writers = (0..WRITERS).map(|w| writer(env, w));
    futures::future::try_join_all(writers).await?;
    Ok(())
}

async fn writer(env: &Env, w: usize) -> Result<()> {
    let (issuer, owner) = if w.is_multiple_of(2) {
        (BANK.0, OWNER.0)
    } else {
        (BANK.1, OWNER.1)
    };
    let (issuer_t, owner_t) = (env.party(issuer)?, env.party(owner)?);
    let currency = format!("RW{w}");
    let mine = json!({"templateIds": [IOU], "query": {"currency": currency}});
    for round in 0..ROUNDS {
        let cid = create(env, &issuer_t, issuer, owner, &currency, "10").await?;
        let seen = contract_ids(&env.ok("/v1/query", &issuer_t, &mine).await?);
        ensure!(
            seen.contains(&cid),
            "writer {w} round {round}: its create {cid} not in its query {seen:?}"
        );
        let fetched = env
            .ok("/v1/fetch", &issuer_t, &json!({"contractId": cid}))
            .await?;
        ensure!(
            fetched["contractId"] == cid.as_str(),
            "writer {w}: fetch {fetched}"
        );

        let split = exercise(env, &owner_t, &cid, "Split", json!({"splitAmount": "4"})).await?;
        let parts: BTreeSet<String> = serde_json::from_value(split["exerciseResult"].clone())?;
        for token in [&owner_t, &issuer_t] {
            let seen = contract_ids(&env.ok("/v1/query", token, &mine).await?);
            ensure!(
                !seen.contains(&cid) && parts.is_subset(&seen),
                "writer {w} round {round}: after splitting {cid} into {parts:?}, a query shows {seen:?}"
            );
            let fetched = env
                .ok("/v1/fetch", token, &json!({"contractId": cid}))
                .await?;
            ensure!(
                fetched.is_null(),
                "writer {w}: the split Iou is still fetched: {fetched}"
            );
        }
    }
    Ok(())
}
