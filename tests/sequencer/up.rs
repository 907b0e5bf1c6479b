//! `ordo up`: one command runs a local network (sequencers, topology manager, mediator,
//! two participant shards); it writes network.json when every node is ready, stops
//! cleanly on SIGTERM, and a second run on the same directory resumes the same network
//! with its data and member identities. `ordo token` mints a token the participants
//! accept.

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
    let network = wait_for("network.json", Duration::from_secs(120), || {
        let file = file.clone();
        async move {
            let text = std::fs::read_to_string(file).ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; ordo up's output:\n{}", process.log()))?;
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

fn endpoints(network: &serde_json::Value) -> Vec<String> {
    grpc_of(network, "sequencers")
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

pub(crate) async fn channel(endpoint: &str) -> anyhow::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

fn bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

/// Checks the shape of the new nodes' entries and that every listed node is SERVING.
async fn check_nodes(network: &serde_json::Value) -> anyhow::Result<()> {
    for (list, count) in [
        ("sequencers", 2),
        ("topology", 1),
        ("mediators", 1),
        ("participants", 2),
    ] {
        let entries = network[list].as_array().map_or(0, Vec::len);
        assert_eq!(entries, count, "{list} in network.json: {network}");
        for node in network[list].as_array().into_iter().flatten() {
            for key in ["name", "grpc", "http", "metrics", "log"] {
                assert!(node[key].is_string(), "{list} entry lacks {key}: {node}");
            }
            assert!(
                node["pid"].as_u64().is_some(),
                "{list} entry lacks pid: {node}"
            );
        }
        for grpc in grpc_of(network, list) {
            assert!(
                ordo_node::serving(&grpc, "").await,
                "{list} {grpc} is not SERVING"
            );
        }
    }
    let shards: Vec<String> = network["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(&p["shard"]))
        .collect();
    assert_eq!(shards, ["shard-1", "shard-2"], "{network}");
    assert_eq!(network["auth"]["algorithm"], "HS256");
    assert!(text(&network["auth"]["secret"]).len() >= 16, "{network}");
    assert!(!text(&network["auth"]["topology_admin_token"]).is_empty());
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
    for grpc in grpc_of(network, "participants") {
        let id = PartyManagementServiceClient::new(channel(&grpc).await?)
            .get_participant_id(bearer(GetParticipantIdRequest {}, &token)?)
            .await?
            .into_inner();
        reported.insert(id.shard, id.participant_id);
    }
    let topology = grpc_of(network, "topology");
    let listed = TopologyAdminServiceClient::new(channel(&topology[0]).await?)
        .list_shards(bearer(
            ListShardsRequest {},
            &text(&network["auth"]["topology_admin_token"]),
        )?)
        .await?
        .into_inner();
    let listed: BTreeMap<String, String> = listed
        .shards
        .into_iter()
        .map(|s| (s.shard, s.participant))
        .collect();
    assert_eq!(reported, listed, "participants and topology disagree");
    assert_eq!(reported.len(), 2, "{reported:?}");
    Ok(reported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_stops_and_resumes_a_network() -> anyhow::Result<()> {
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
    let ids = participant_ids(dir.path(), &first.network).await?;
    let token = first.network["auth"]["sequencer_admin_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let key = Arc::new(KeyPair::generate());
    let admin = AdminClient::connect(&eps[1], &token).await?;
    let (member, _) = admin.register_member("alice", &key.public()).await?;
    let client =
        SequencerClient::connect(ClientConfig::new(eps, member.clone(), key.clone())).await?;
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

    let mut second = up(dir.path()).await?;
    check_nodes(&second.network).await?;
    assert_eq!(
        participant_ids(dir.path(), &second.network).await?,
        ids,
        "the resumed network has other participants"
    );
    let client =
        SequencerClient::connect(ClientConfig::new(endpoints(&second.network), member, key))
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
