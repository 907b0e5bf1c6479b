//! 503: a shard with no serving replica. A second gateway (a short `retry_deadline`) serves
//! a party of shard-3; both shard-3 replicas are killed; a command and a query for that
//! party are answered 503 naming the shard once the deadline has passed, while parties of
//! the other shards are served as before. The replicas are restarted: the party's
//! contracts are exactly those before the kill (the refused command committed nothing),
//! and commands go through again. Runs last: it takes shard-3 down for a while.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use ordo_gateway::GatewayConfig;
use ordo_ledger_client::Network;
use ordo_testkit::wait_for;
use serde_json::json;

use crate::harness::{Env, Gateway, IOU};
use crate::net::Replica;

const PARTY: &str = "s9-dora";
const RETRY_DEADLINE: Duration = Duration::from_millis(1500);

pub async fn run(env: &mut Env) -> Result<()> {
    let admin = env.admin()?;
    let placed = env
        .ok(
            "/v1/parties/allocate",
            &admin,
            &json!({"identifierHint": PARTY, "shard": "shard-3"}),
        )
        .await?;
    ensure!(placed["shard"] == "shard-3", "{placed}");
    let mut config = GatewayConfig {
        network_file: env.network.path.clone(),
        request_timeout: Duration::from_secs(4),
        retry_deadline: RETRY_DEADLINE,
        ..Default::default()
    };
    config.cache.file = env.dir().join("gateway-s9-cache.sqlite");
    let mut gateway = Gateway::start_with(config, &env.http).await?;
    let outcome = unavailable(env, &gateway).await;
    gateway.stop().await?;
    outcome
}

async fn unavailable(env: &mut Env, gateway: &Gateway) -> Result<()> {
    let http = env.http.clone();
    let api = gateway.api(&http);
    let dora = env.party(PARTY)?;
    let iou = |amount: &str| {
        json!({"templateId": IOU, "payload":
            {"issuer": PARTY, "owner": PARTY, "currency": "XAU", "amount": amount}})
    };
    api.ok("/v1/create", &dora, &iou("1")).await?;
    let before = api.ious(&dora).await?;
    ensure!(before.len() == 1, "{before:?}");

    let replicas = shard_replicas(&env.network.path, "shard-3")?;
    ensure!(replicas.len() == 2, "shard-3 replicas: {replicas:?}");
    for r in &replicas {
        r.signal(Signal::SIGKILL)
            .await
            .with_context(|| format!("killing {}", r.name))?;
    }

    let sent = Instant::now();
    let refused = api.post("/v1/create", Some(&dora), &iou("2")).await?;
    let took = sent.elapsed();
    ensure!(
        refused.status == 503 && refused.errors.contains("shard-3"),
        "a create on a shard without replicas: {refused:?}"
    );
    ensure!(
        took >= RETRY_DEADLINE,
        "answered 503 after {took:?}, before the retry deadline of {RETRY_DEADLINE:?}: {refused:?}"
    );
    println!(
        "s9: shard-3 down: a create answered 503 after {took:.1?} (retry deadline {RETRY_DEADLINE:?})"
    );
    let query = api
        .post("/v1/query", Some(&dora), &json!({"templateIds": [IOU]}))
        .await?;
    ensure!(
        query.status == 503 && query.errors.contains("shard-3"),
        "a query of a party on a shard without replicas: {query:?}"
    );
    // The other shards are served as before.
    let bank = env.party("bank")?;
    let other = api
        .post("/v1/query", Some(&bank), &json!({"templateIds": [IOU]}))
        .await?;
    ensure!(other.status == 200, "bank's query meanwhile: {other:?}");

    for r in &replicas {
        env.net().restart(r).await?;
    }
    let after = wait_for(
        "dora's contracts after the restart",
        Duration::from_secs(60),
        || async { api.ious(&dora).await.ok() },
    )
    .await?;
    ensure!(
        after == before,
        "the refused create changed dora's contracts: {before:?} → {after:?}"
    );
    wait_for(
        "a create on shard-3 again",
        Duration::from_secs(60),
        || async {
            let a = api.post("/v1/create", Some(&dora), &iou("3")).await.ok()?;
            (a.status == 200).then_some(())
        },
    )
    .await?;
    Ok(())
}

/// The replicas of `shard` as network.json lists them now (shard-3 came after the start).
fn shard_replicas(file: &std::path::Path, shard: &str) -> Result<Vec<Replica>> {
    let network = Network::load(file)?;
    Ok(network
        .participants
        .iter()
        .filter(|p| p.shard == shard)
        .map(|p| Replica {
            name: p.name.clone(),
            service: p.shard.clone(),
            grpc: p.grpc.clone(),
            http: p.http.clone(),
        })
        .collect())
}
