//! The active replica of every active-passive service (each shard's participant, the
//! mediator, the topology manager) SIGKILLed in a quiet network started by `ordo up`: a
//! passive replica takes over (and network.json follows), a transfer across both shards
//! commits through it, and the killed replica, started again with its own config, comes
//! back passive. A sequencer killed and restarted likewise. Nothing is lost or applied
//! twice (every shard's update log is gapless, each update once; the Iou exists exactly
//! once).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordo_ledger_client::{Command, Filter, LedgerClient, Network, Submission};
use ordo_testkit::{NodeProcess, wait_for};

use crate::up::{replica_status, up};

const IOU: &str = "iou:Iou";
const PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.toml");

/// A node of network.json.
struct Entry {
    name: String,
    service: String,
    pid: i32,
    grpc: String,
    http: String,
}

/// Every node entry of network.json.
fn nodes(network: &serde_json::Value) -> Vec<Entry> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    ["sequencers", "topology", "mediators", "participants"]
        .iter()
        .flat_map(|list| network[*list].as_array().cloned().unwrap_or_default())
        .map(|n| Entry {
            name: text(&n["name"]),
            service: text(&n["service"]),
            pid: n["pid"].as_i64().unwrap_or_default() as i32,
            grpc: text(&n["grpc"]),
            http: text(&n["http"]),
        })
        .collect()
}

fn read_network(file: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()
}

/// The `ordo` subcommand that runs a node of `service`.
fn role_of(service: &str) -> &str {
    if service.starts_with("shard-") {
        "participant"
    } else {
        service
    }
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

/// Transfers the Iou `cid` from `from` to `to` through the failover-aware client (a
/// replica that is passive or gone is skipped, a command caught in a failover keeps its
/// command id). A command the network refused while recovering (ABORTED: its mediator or a
/// participant was down) did not commit, so a new one is safe.
async fn transfer(network: &Network, cid: &str, from: &str, to: &str) -> anyhow::Result<String> {
    let shard = wait_for(
        &format!("the shard of {from}"),
        Duration::from_secs(30),
        || async { network.shard_of(from).await.ok() },
    )
    .await?;
    let client = network.shard_client(&shard, &network.party_token(&[from])?)?;
    let attempt = || async {
        let command = Command::Exercise {
            template_id: IOU.into(),
            contract_id: cid.into(),
            choice: "Transfer".into(),
            argument: serde_json::json!({ "newOwner": to }),
        };
        match client.submit(Submission::new(from, command)).await {
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
                tracing::info!(error = %e, "transfer not committed; retrying");
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

/// Kills the active replica of `service` and waits until another one is active and
/// SERVING (and network.json says so); then starts the killed one again with its config
/// and waits until it is back, passive. Returns the restarted process.
async fn fail_over(dir: &Path, service: &str) -> anyhow::Result<NodeProcess> {
    let file = dir.join("net/network.json");
    let replicas: Vec<Entry> = nodes(&read_network(&file).context("network.json")?)
        .into_iter()
        .filter(|n| n.service == service)
        .collect();
    anyhow::ensure!(
        replicas.len() == 2,
        "{service} has {} replicas",
        replicas.len()
    );
    // The active one by its own account (network.json may lag by a poll).
    let (victim, pid) = wait_for(
        &format!("an active replica of {service}"),
        Duration::from_secs(20),
        || async {
            for r in &replicas {
                if let Some(s) = replica_status(&r.http).await
                    && s.role == "active"
                    && s.serving
                {
                    return Some((r, s.pid));
                }
            }
            None
        },
    )
    .await?;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    let killed_at = std::time::Instant::now();
    let heir = replicas
        .iter()
        .find(|r| r.name != victim.name)
        .context("no other replica")?;
    wait_for(
        &format!("{} to take over {service} from {}", heir.name, victim.name),
        Duration::from_secs(30),
        || async {
            let s = replica_status(&heir.http).await?;
            (s.role == "active" && s.serving && serving(&heir.grpc).await).then_some(())
        },
    )
    .await?;
    tracing::info!(service, from = %victim.name, to = %heir.name, took = ?killed_at.elapsed(), "took over");
    wait_for(
        &format!("network.json to list {} as the active replica", heir.name),
        Duration::from_secs(10),
        || async {
            let network = read_network(&file)?;
            let roles: Vec<(String, String)> = ["topology", "mediators", "participants"]
                .iter()
                .flat_map(|l| network[*l].as_array().cloned().unwrap_or_default())
                .filter(|n| n["service"] == service)
                .map(|n| {
                    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                    (text(&n["name"]), text(&n["role"]))
                })
                .collect();
            let active: Vec<&String> = roles
                .iter()
                .filter(|(_, role)| role == "active")
                .map(|(name, _)| name)
                .collect();
            (active == [&heir.name]).then_some(())
        },
    )
    .await?;

    let config = dir.join(format!("net/config/{}.toml", victim.name));
    let process = NodeProcess::spawn(
        &victim.name,
        Path::new(env!("CARGO_BIN_EXE_ordo")),
        &[
            role_of(service),
            "--config",
            config.to_str().unwrap_or_default(),
        ],
        &dir.join(format!("{}-restarted.log", victim.name)),
    )?;
    wait_for(
        &format!("{} to come back passive", victim.name),
        Duration::from_secs(30),
        || async {
            let s = replica_status(&victim.http).await?;
            (s.role == "passive" && s.pid != pid).then_some(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; its log:\n{}", process.log()))?;
    Ok(process)
}

/// Kills sequencer `name` and starts it again with its config.
async fn restart_sequencer(
    dir: &Path,
    network: &serde_json::Value,
    name: &str,
) -> anyhow::Result<NodeProcess> {
    let node = nodes(network)
        .into_iter()
        .find(|n| n.name == name)
        .with_context(|| format!("{name} is not in network.json"))?;
    kill(Pid::from_raw(node.pid), Signal::SIGKILL)?;
    wait_for(
        &format!("{name} to go down"),
        Duration::from_secs(20),
        || async { (!serving(&node.grpc).await).then_some(()) },
    )
    .await?;
    let config = dir.join(format!("net/config/{name}.toml"));
    let process = NodeProcess::spawn(
        name,
        Path::new(env!("CARGO_BIN_EXE_ordo")),
        &["sequencer", "--config", config.to_str().unwrap_or_default()],
        &dir.join(format!("{name}-restarted.log")),
    )?;
    wait_for(
        &format!("{name} to serve again"),
        Duration::from_secs(60),
        || async { serving(&node.grpc).await.then_some(()) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; its log:\n{}", process.log()))?;
    Ok(process)
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
    let _serial = crate::SERIAL.lock().await;
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
    for victim in ["shard-2", "mediator", "topology", "sequencer-1", "shard-1"] {
        let process = if victim == "sequencer-1" {
            restart_sequencer(dir.path(), &net.network, victim).await?
        } else {
            fail_over(dir.path(), victim).await?
        };
        restarted.push(process);

        let to = if owner == "alice" { "bob" } else { "alice" };
        cid = transfer(&network, &cid, owner, to)
            .await
            .map_err(|e| anyhow::anyhow!("transfer after killing {victim}'s node: {e}"))?;
        owner = to;
        // Committed on both shards: the new owner's shard shows it too.
        let client = party(&network, owner).await?;
        wait_for(
            &format!("{owner} to see the Iou after {victim}'s node was killed"),
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
    // Through shard-1's replica that is active now (the first client's one was killed).
    let bank = party(&network, "bank").await?;
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
