//! `ordo up`: one command runs a local network (two active-active sequencers, two replicas
//! each of the topology manager, the mediator and two participant shards, and a gateway);
//! it writes network.json when every node is ready, listing each with its service and role
//! (one active replica per service) and the gateway with its HTTP endpoint, keeps the roles
//! current, stops cleanly on SIGTERM, and a second run on the same directory resumes the
//! same network with its data, member identities and ports. `ordo token` mints a token the
//! participants accept; `ordo admin status` reports every node, `ordo admin failover` hands
//! a service over, and `ordo admin shard add` refuses bad requests with exit code 2,
//! changing nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ordo_proto::admin::v1::ListShardsRequest;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_proto::ledger::v1::GetParticipantIdRequest;
use ordo_proto::ledger::v1::party_management_service_client::PartyManagementServiceClient;

use ordo_core::{Clock, Envelope, KeyPair, Recipients, Submission, SystemClock, Timestamp};
use ordo_lease::ReplicaStatus;
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{NodeProcess, wait_for};

pub(crate) struct Up {
    pub(crate) process: NodeProcess,
    pub(crate) network: serde_json::Value,
}

pub(crate) async fn up(dir: &Path) -> anyhow::Result<Up> {
    let data = dir.join("net");
    let data_arg = data.to_str().unwrap_or_default().to_owned();
    let process = NodeProcess::spawn(
        "ordo-up",
        Path::new(env!("CARGO_BIN_EXE_ordo")),
        &["up", "--data-dir", &data_arg],
        &dir.join("up.log"),
    )?;
    let file = data.join("network.json");
    // The file lists the gateway once it is ready, after the ledger nodes.
    let network = wait_for(
        "network.json with its gateway",
        Duration::from_secs(120),
        || {
            let file = file.clone();
            async move {
                let text = std::fs::read_to_string(file).ok()?;
                let network = serde_json::from_str::<serde_json::Value>(&text).ok()?;
                (network["gateways"].as_array()?.len() == 1).then_some(network)
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; ordo up's output:\n{}", process.log()))?;
    // This process's calls trust the network's CA, as `ordo` commands do.
    ordo_ledger_client::Network::load(&file)?;
    Ok(Up { process, network })
}

fn grpc_of(network: &serde_json::Value, list: &str) -> Vec<String> {
    network[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["grpc"].as_str().map(str::to_owned))
        .collect()
}

/// The gRPC endpoints of the replicas of `list` that network.json lists as active.
fn active_grpc_of(network: &serde_json::Value, list: &str) -> Vec<String> {
    network[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["role"] == "active")
        .filter_map(|n| n["grpc"].as_str().map(str::to_owned))
        .collect()
}

fn endpoints(network: &serde_json::Value) -> Vec<String> {
    grpc_of(network, "sequencers")
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

pub(crate) async fn channel(endpoint: &str) -> anyhow::Result<tonic::transport::Channel> {
    let tls = ordo_node::tls::trusted();
    ordo_node::tls::channel(endpoint, tls.as_ref(), |e| {
        e.connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
    })
    .await
    .with_context(|| format!("connecting to {endpoint}"))
}

fn bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

/// A replica's `GET /status`, or None when it does not answer.
pub(crate) async fn replica_status(http: &str) -> Option<ReplicaStatus> {
    let url = ordo_node::http_client::url(http, "/status").ok()?;
    let body = ordo_node::http_client::get_ok(&url).await.ok()?;
    serde_json::from_str(&body).ok()
}

/// `ordo args`: its exit code, stdout and stderr.
fn ordo_exit(args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

/// What `ordo` prints for `args`, failing on a non-zero exit.
pub(crate) fn ordo(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ordo {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The node names of each list, and the service of each.
const LAYOUT: [(&str, &[(&str, &str)]); 4] = [
    (
        "sequencers",
        &[("sequencer-1", "sequencer"), ("sequencer-2", "sequencer")],
    ),
    (
        "topology",
        &[("topology-a", "topology"), ("topology-b", "topology")],
    ),
    (
        "mediators",
        &[("mediator-a", "mediator"), ("mediator-b", "mediator")],
    ),
    (
        "participants",
        &[
            ("participant-1-a", "shard-1"),
            ("participant-1-b", "shard-1"),
            ("participant-2-a", "shard-2"),
            ("participant-2-b", "shard-2"),
        ],
    ),
];

/// Checks the nodes' entries and roles: every sequencer active and SERVING; every other
/// service exactly one active replica, SERVING, and the passive ones answering `/status`
/// but not SERVING.
async fn check_nodes(network: &serde_json::Value) -> anyhow::Result<()> {
    let mut active: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (list, expected) in LAYOUT {
        let entries = network[list].as_array().cloned().unwrap_or_default();
        let names: Vec<(String, String)> = entries
            .iter()
            .map(|n| (text(&n["name"]), text(&n["service"])))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect();
        assert_eq!(names, expected, "{list} in network.json: {network}");
        for node in &entries {
            for key in ["name", "service", "role", "grpc", "http", "metrics", "log"] {
                assert!(node[key].is_string(), "{list} entry lacks {key}: {node}");
            }
            assert!(
                node["pid"].as_u64().is_some(),
                "{list} entry lacks pid: {node}"
            );
            let grpc = text(&node["grpc"]);
            let serving = ordo_node::serving(&grpc, "").await;
            match text(&node["role"]).as_str() {
                "active" => {
                    assert!(serving, "active {node} is not SERVING");
                    active
                        .entry(text(&node["service"]))
                        .or_default()
                        .push(text(&node["name"]));
                }
                "passive" => {
                    assert_ne!(list, "sequencers", "a passive sequencer: {node}");
                    assert!(!serving, "passive {node} is SERVING");
                    let status = replica_status(&text(&node["http"])).await;
                    assert_eq!(
                        status.map(|s| (s.role, s.pid)),
                        Some((
                            "passive".to_owned(),
                            node["pid"].as_u64().unwrap_or(0) as u32
                        )),
                        "{node}'s /status"
                    );
                }
                other => panic!("role {other:?} in {node}"),
            }
        }
    }
    for service in ["topology", "mediator", "shard-1", "shard-2"] {
        assert_eq!(
            active.get(service).map_or(0, Vec::len),
            1,
            "active replicas of {service}: {active:?}"
        );
    }
    assert_eq!(active["sequencer"].len(), 2);
    let shards: Vec<String> = network["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(&p["shard"]))
        .collect();
    assert_eq!(
        shards,
        ["shard-1", "shard-1", "shard-2", "shard-2"],
        "{network}"
    );
    // Ledger API tokens are EdDSA: the operator's tools sign with the key network.json
    // names, the nodes verify with its public half.
    assert_eq!(network["auth"]["algorithm"], "EdDSA");
    assert!(text(&network["auth"]["secret"]).is_empty(), "{network}");
    let signing = text(&network["auth"]["signing_key_file"]);
    assert!(
        std::fs::read_to_string(&signing)?.contains("PRIVATE KEY"),
        "{signing}"
    );
    assert!(!text(&network["auth"]["topology_admin_token"]).is_empty());
    assert!(!text(&network["auth"]["replica_admin_token"]).is_empty());
    Ok(())
}

/// `ordo admin status --json` agrees with network.json: every node, healthy, same role.
fn check_admin_status(file: &Path, network: &serde_json::Value) -> anyhow::Result<()> {
    let out = ordo(&[
        "admin",
        "status",
        "--json",
        "--network",
        &file.display().to_string(),
    ])?;
    let report: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    let gateway = report
        .iter()
        .find(|r| r["name"] == "gateway-1")
        .with_context(|| format!("no gateway in {out}"))?;
    assert_eq!(
        (&gateway["service"], &gateway["role"], &gateway["healthy"]),
        (&"gateway".into(), &"active".into(), &true.into()),
        "{gateway}"
    );
    assert_eq!(gateway["http"], network["gateways"][0]["http"], "{gateway}");
    let mut listed = 1;
    for (list, _) in LAYOUT {
        for node in network[list].as_array().into_iter().flatten() {
            listed += 1;
            let row = report
                .iter()
                .find(|r| r["name"] == node["name"])
                .with_context(|| format!("{} missing in {out}", node["name"]))?;
            assert_eq!(row["service"], node["service"], "{row}");
            assert_eq!(row["role"], node["role"], "{row}");
            assert_eq!(row["healthy"], true, "{row}");
            assert_eq!(row["pid"], node["pid"], "{row}");
            if list != "sequencers" {
                assert!(row["lease_token"].as_i64().is_some(), "{row}");
            }
        }
    }
    assert_eq!(report.len(), listed, "{out}");
    Ok(())
}

/// network.json lists the gateway `ordo up` runs, with an HTTP endpoint whose `/readyz`
/// answers 200, and the control API; the control token is the owner's only. The gateway's
/// HTTP endpoint.
async fn check_gateway(dir: &Path, network: &serde_json::Value) -> anyhow::Result<String> {
    let gateways = network["gateways"].as_array().cloned().unwrap_or_default();
    assert_eq!(gateways.len(), 1, "{network}");
    let g = &gateways[0];
    assert_eq!(
        (&g["name"], &g["service"]),
        (&"gateway-1".into(), &"gateway".into())
    );
    assert!(g["pid"].as_u64().is_some() && g["log"].is_string(), "{g}");
    assert!(
        g.get("grpc").is_none(),
        "a gateway has no gRPC endpoint: {g}"
    );
    let http = text(&g["http"]);
    assert!(http.starts_with("https://127.0.0.1:"), "{g}");
    let readyz = ordo_node::http_client::get(&format!("{http}/readyz")).await?;
    assert_eq!(readyz.status, 200, "{http}/readyz: {readyz:?}");
    assert!(
        text(&network["control"]["http"]).starts_with("https://127.0.0.1:"),
        "{network}"
    );
    let token = dir.join("net/control-token");
    let mode = std::fs::metadata(&token)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", token.display());
    Ok(http)
}

/// The shards in topology with their participant.
async fn topology_shards(network: &serde_json::Value) -> anyhow::Result<BTreeMap<String, String>> {
    let topology = active_grpc_of(network, "topology");
    let listed = TopologyAdminServiceClient::new(channel(&topology[0]).await?)
        .list_shards(bearer(
            ListShardsRequest {},
            &text(&network["auth"]["topology_admin_token"]),
        )?)
        .await?
        .into_inner();
    Ok(listed
        .shards
        .into_iter()
        .map(|s| (s.shard, s.participant))
        .collect())
}

/// `ordo admin shard add` with `args` exits 2 with a message containing `expected`.
fn refused(args: &[&str], file: &Path, expected: &str) -> anyhow::Result<()> {
    let mut all = vec!["admin", "shard", "add"];
    all.extend_from_slice(args);
    let file = file.display().to_string();
    all.extend(["--network", &file]);
    let (code, stdout, stderr) = ordo_exit(&all)?;
    assert_eq!(code, 2, "ordo {all:?}: {stdout}{stderr}");
    assert!(stderr.contains(expected), "ordo {all:?}: {stderr}");
    Ok(())
}

/// Bad requests to add a shard: each exits 2 with a clear message, and nothing changes —
/// network.json lists the same nodes, topology the same shards, and nothing was recorded
/// or provisioned for a shard.
async fn shard_add_rejections(dir: &Path, network: &serde_json::Value) -> anyhow::Result<()> {
    let file = dir.join("net/network.json");
    let nodes_of = |network: &serde_json::Value| -> Vec<(String, String)> {
        [
            "sequencers",
            "topology",
            "mediators",
            "participants",
            "gateways",
        ]
        .iter()
        .flat_map(|l| network[*l].as_array().cloned().unwrap_or_default())
        .map(|n| (text(&n["name"]), text(&n["http"])))
        .collect()
    };
    let shards_before = topology_shards(network).await?;
    refused(
        &["--name", "shard-x"],
        &file,
        "invalid shard name \"shard-x\"",
    )?;
    refused(&["--name", "east"], &file, "use shard-<n>")?;
    refused(&["--name", "shard-03"], &file, "invalid shard name")?;
    refused(&["--name", "shard-1"], &file, "shard shard-1 exists")?;
    refused(
        &["--name", "shard-3", "--replicas", "0"],
        &file,
        "1 to 3 replicas",
    )?;
    refused(
        &["--name", "shard-3", "--replicas", "4"],
        &file,
        "1 to 3 replicas",
    )?;
    // A copy of the network file with another token next to it.
    let other = dir.join("other");
    std::fs::create_dir_all(&other)?;
    std::fs::copy(&file, other.join("network.json"))?;
    std::fs::write(other.join("control-token"), "not-the-token")?;
    refused(
        &["--name", "shard-3"],
        &other.join("network.json"),
        "wrong bearer token",
    )?;

    let now: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    assert_eq!(nodes_of(&now), nodes_of(network), "network.json changed");
    assert_eq!(topology_shards(&now).await?, shards_before);
    assert_eq!(shards_before.len(), 2, "{shards_before:?}");
    let data = dir.join("net");
    assert!(
        !data.join("shards.json").exists(),
        "a refused shard was recorded"
    );
    assert!(
        !data.join("config/participant-3-a.toml").exists(),
        "a refused shard was provisioned"
    );
    Ok(())
}

/// Each shard's participant member id, as the running participants report it (with a
/// token from `ordo token`) and as the topology manager lists it; the two must agree.
async fn participant_ids(
    dir: &Path,
    network: &serde_json::Value,
) -> anyhow::Result<BTreeMap<String, String>> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["token", "--admin", "--expires-in", "300", "--network"])
        .arg(dir.join("net/network.json"))
        .output()?;
    assert!(
        out.status.success(),
        "ordo token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_owned();

    let mut reported = BTreeMap::new();
    for grpc in active_grpc_of(network, "participants") {
        let id = PartyManagementServiceClient::new(channel(&grpc).await?)
            .get_participant_id(bearer(GetParticipantIdRequest {}, &token)?)
            .await?
            .into_inner();
        reported.insert(id.shard, id.participant_id);
    }
    let listed = topology_shards(network).await?;
    assert_eq!(reported, listed, "participants and topology disagree");
    assert_eq!(reported.len(), 2, "{reported:?}");
    Ok(reported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_stops_and_resumes_a_network() -> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let dir = tempfile::Builder::new().prefix("ordo-up-").tempdir()?;
    // As root, the private Postgres runs as `postgres`, which must reach the data dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;

    let mut first = up(dir.path()).await?;
    let eps = endpoints(&first.network);
    assert_eq!(eps.len(), 2, "network.json: {}", first.network);
    for key in [
        "postgres",
        "topology",
        "mediators",
        "participants",
        "gateways",
        "auth",
    ] {
        assert!(first.network.get(key).is_some(), "network.json lacks {key}");
    }
    check_nodes(&first.network).await?;
    let gateway = check_gateway(dir.path(), &first.network).await?;
    let file = dir.path().join("net/network.json");
    check_admin_status(&file, &first.network)?;
    let ids = participant_ids(dir.path(), &first.network).await?;
    shard_add_rejections(dir.path(), &first.network).await?;

    // A graceful failover of shard-1: the other replica serves, and network.json follows.
    let before = first.network["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["service"] == "shard-1" && p["role"] == "active")
        .map(|p| text(&p["name"]))
        .context("no active replica of shard-1")?;
    let out = ordo(&[
        "admin",
        "failover",
        "--service",
        "shard-1",
        "--json",
        "--network",
        &file.display().to_string(),
    ])?;
    let outcome: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(outcome["from"], before.as_str(), "{outcome}");
    let after = text(&outcome["to"]);
    assert!(
        after.starts_with("participant-1-") && after != before,
        "{outcome}"
    );
    let followed = wait_for(
        "network.json to show the new active replica",
        Duration::from_secs(10),
        || {
            let file = file.clone();
            let after = after.clone();
            async move {
                let network: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
                let active = network["participants"]
                    .as_array()?
                    .iter()
                    .any(|p| p["name"] == after.as_str() && p["role"] == "active");
                active.then_some(network)
            }
        },
    )
    .await?;
    check_nodes(&followed).await?;
    let err = ordo(&[
        "admin",
        "failover",
        "--service",
        "sequencer",
        "--network",
        &file.display().to_string(),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("active-active"), "{err}");
    let token = first.network["auth"]["sequencer_admin_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let key = Arc::new(KeyPair::generate());
    let admin = AdminClient::connect(&eps[1], &token).await?;
    let (member, _) = admin.register_member("alice", &key.public()).await?;
    let alice_tls = ordo_ledger_client::Network::load(&file)?.member_tls("alice")?;
    let client = SequencerClient::connect(ClientConfig {
        tls: alice_tls.clone(),
        ..ClientConfig::new(eps, member.clone(), key.clone())
    })
    .await?;
    let sent = client
        .send(Submission {
            message_id: "kept-across-restarts".into(),
            max_sequencing_time: SystemClock.now().plus(Duration::from_secs(30)),
            envelopes: vec![Envelope {
                recipients: Recipients::members([member.clone()]),
                content: b"hello".to_vec(),
            }],
        })
        .await?;
    drop(client);

    assert!(
        first.process.terminate(Duration::from_secs(30)),
        "ordo up did not stop on SIGTERM"
    );
    assert!(
        !dir.path().join("net/network.json").exists(),
        "network.json outlived the network"
    );
    // Nobody answers for the file of a stopped network.
    refused(
        &["--name", "shard-3"],
        &dir.path().join("other/network.json"),
        "refused the connection",
    )?;

    let mut second = up(dir.path()).await?;
    check_nodes(&second.network).await?;
    assert_eq!(
        check_gateway(dir.path(), &second.network).await?,
        gateway,
        "the gateway's port changed across restarts"
    );
    assert_eq!(
        participant_ids(dir.path(), &second.network).await?,
        ids,
        "the resumed network has other participants"
    );
    let client = SequencerClient::connect(ClientConfig {
        tls: alice_tls,
        ..ClientConfig::new(endpoints(&second.network), member, key)
    })
    .await?;
    let mut sub = client.subscribe(Timestamp::MIN);
    // A member subscribing from the start also gets every broadcast (the topology
    // manager's transactions); alice's own message is among the first events.
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = sub.next().await?;
            if event.timestamp >= sent.timestamp {
                return anyhow::Ok(event);
            }
        }
    })
    .await??;
    assert_eq!(event.timestamp, sent.timestamp);
    assert_eq!(event.message_id, "kept-across-restarts");
    assert_eq!(event.envelopes[0].content, b"hello");
    assert!(second.process.terminate(Duration::from_secs(30)));
    Ok(())
}
