//! A node of any role SIGKILLed in a quiet network started by `ordo up`, and started again
//! with its own config, resumes where it was: a transfer across both shards commits after
//! each restart, and no update is lost or applied twice (every shard's update log is
//! gapless, each update once; the Iou exists exactly once).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordo_ledger_client::{Filter, LedgerClient, Network};
use ordo_testkit::{NodeProcess, wait_for};

use crate::up::up;

const IOU: &str = "iou:Iou";
const PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.toml");

/// Every node entry of network.json: (name, pid, grpc endpoint).
fn nodes(network: &serde_json::Value) -> Vec<(String, i32, String)> {
    ["sequencers", "topology", "mediators", "participants"]
        .iter()
        .flat_map(|list| network[*list].as_array().cloned().unwrap_or_default())
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_owned(),
                n["pid"].as_i64().unwrap_or_default() as i32,
                n["grpc"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn serving(grpc: &str) -> bool {
    ordo_node::serving(grpc, "").await
}

/// The party's client, once the party is known on its shard.
async fn party(network: &Network, name: &str) -> anyhow::Result<LedgerClient> {
    wait_for(
        &format!("a client for {name}"),
        Duration::from_secs(30),
        || async { network.client_for_party(name).await.ok() },
    )
    .await
}

/// Transfers the Iou `cid` from `from` to `to`, retrying while the network is still
/// recovering (a refused or timed-out command did not commit, so a new one is safe).
async fn transfer(network: &Network, cid: &str, from: &str, to: &str) -> anyhow::Result<String> {
    let client = party(network, from).await?;
    let attempt = || async {
        let result = client
            .exercise(
                from,
                IOU,
                cid,
                "Transfer",
                serde_json::json!({ "newOwner": to }),
            )
            .await;
        match result {
            // The new Iou's id is the choice's result (the sender, no stakeholder of it,
            // does not see its create in the flat form).
            Ok(tx) => Some(
                tx.exercise_result
                    .as_ref()
                    .and_then(|r| r.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("no new Iou id in {tx:?}")),
            ),
            Err(e) if matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Aborted) => {
                tracing::info!(error = %e, "transfer not committed yet; retrying");
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    };
    wait_for(
        &format!("a transfer from {from} to {to}"),
        Duration::from_secs(60),
        attempt,
    )
    .await?
}

/// The offsets and update ids of every transaction `parties` see on `shard`.
async fn update_log(
    network: &Network,
    shard: &str,
    parties: &[&str],
) -> anyhow::Result<Vec<(i64, String)>> {
    use futures::StreamExt;
    let token = network.party_token(parties)?;
    let client = network.client_for_shard_with_token(shard, &token).await?;
    let mut filter = Filter::party(parties[0]);
    filter.parties = parties.iter().map(|p| (*p).to_owned()).collect();
    let mut stream = client.updates(&filter, 0, false).await?;
    let mut log = Vec::new();
    while let Some(tx) = stream.next().await {
        let tx = tx?;
        log.push((tx.offset, tx.update_id));
    }
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_killed_and_restarted_resumes() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("ordo-kill-").tempdir()?;
    // As root, the private Postgres runs as `postgres`, which must reach the data dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let mut net = up(dir.path()).await?;
    let network = Network::load(dir.path().join("net/network.json"))?;

    let shard1 = network.client_for_shard("shard-1").await?;
    let shard2 = network.client_for_shard("shard-2").await?;
    shard1.allocate_party("bank").await?;
    shard1.allocate_party("alice").await?;
    shard2.allocate_party("bob").await?;
    shard1.upload_package(PACKAGE.to_vec()).await?;
    wait_for(
        "shard-2 to vet the package",
        Duration::from_secs(30),
        || async { shard2.list_packages().await.ok().filter(|p| !p.is_empty()) },
    )
    .await?;

    let bank = party(&network, "bank").await?;
    let issued = bank
        .create(
            "bank",
            IOU,
            serde_json::json!({"issuer": "bank", "owner": "alice", "currency": "USD", "amount": "100"}),
        )
        .await?;
    let mut cid = issued.created_of(IOU)[0].to_owned();
    let mut owner = "alice";

    let mut restarted = Vec::new();
    for victim in [
        "participant-2",
        "mediator",
        "topology",
        "sequencer-1",
        "participant-1",
    ] {
        let (name, pid, grpc) = nodes(&net.network)
            .into_iter()
            .find(|(n, _, _)| n == victim)
            .ok_or_else(|| anyhow::anyhow!("{victim} is not in network.json"))?;
        kill(Pid::from_raw(pid), Signal::SIGKILL)?;
        wait_for(
            &format!("{name} to go down"),
            Duration::from_secs(20),
            || {
                let grpc = grpc.clone();
                async move { (!serving(&grpc).await).then_some(()) }
            },
        )
        .await?;

        let role = name.split('-').next().unwrap_or_default().to_owned();
        let config = dir.path().join(format!("net/config/{name}.toml"));
        let process = NodeProcess::spawn(
            &name,
            Path::new(env!("CARGO_BIN_EXE_ordo")),
            &[&role, "--config", config.to_str().unwrap_or_default()],
            &dir.path().join(format!("{name}-restarted.log")),
        )?;
        wait_for(
            &format!("{name} to serve again"),
            Duration::from_secs(60),
            || {
                let grpc = grpc.clone();
                async move { serving(&grpc).await.then_some(()) }
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}; its log:\n{}", process.log()))?;
        restarted.push(process);

        let to = if owner == "alice" { "bob" } else { "alice" };
        cid = transfer(&network, &cid, owner, to)
            .await
            .map_err(|e| anyhow::anyhow!("transfer after restarting {name}: {e}"))?;
        owner = to;
        // Committed on both shards: the new owner's shard shows it too.
        let client = party(&network, owner).await?;
        wait_for(
            &format!("{owner} to see the Iou after {name} restarted"),
            Duration::from_secs(30),
            || async {
                let acs = client.active_contracts(&Filter::party(owner)).await.ok()?;
                acs.contracts
                    .iter()
                    .any(|c| c.contract_id == cid)
                    .then_some(())
            },
        )
        .await?;
    }

    // Nothing lost or applied twice: each shard's log is gapless from 1, each update once.
    for (shard, parties, expected) in [
        ("shard-1", vec!["bank", "alice"], 6),
        ("shard-2", vec!["bob"], 5),
    ] {
        let log = update_log(&network, shard, &parties).await?;
        let offsets: Vec<i64> = log.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (1..=expected).collect::<Vec<i64>>(),
            "{shard}'s update log"
        );
        let mut ids: Vec<&String> = log.iter().map(|(_, id)| id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), log.len(), "{shard} holds an update twice");
    }
    let acs = bank.active_contracts(&Filter::party("bank")).await?;
    assert_eq!(acs.contracts.len(), 1, "the Iou exists once: {acs:?}");
    assert_eq!(acs.contracts[0].contract_id, cid);
    assert_eq!(acs.contracts[0].payload["owner"], owner);

    for mut p in restarted {
        p.terminate(Duration::from_secs(20));
    }
    assert!(net.process.terminate(Duration::from_secs(60)));
    Ok(())
}
