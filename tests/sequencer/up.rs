//! `ordo up`: one command runs a local network; it writes network.json when every node is
//! ready, stops cleanly on SIGTERM, and a second run on the same directory resumes the
//! same network with its data.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ordo_core::{Clock, Envelope, KeyPair, Recipients, Submission, SystemClock, Timestamp};
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{NodeProcess, wait_for};

struct Up {
    process: NodeProcess,
    network: serde_json::Value,
}

async fn up(dir: &Path) -> anyhow::Result<Up> {
    let data = dir.join("net");
    let data_arg = data.to_str().unwrap_or_default().to_owned();
    let process = NodeProcess::spawn(
        "ordo-up",
        Path::new(env!("CARGO_BIN_EXE_ordo")),
        &["up", "--data-dir", &data_arg],
        &dir.join("up.log"),
    )?;
    let file = data.join("network.json");
    let network = wait_for("network.json", Duration::from_secs(90), || {
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

fn endpoints(network: &serde_json::Value) -> Vec<String> {
    network["sequencers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["grpc"].as_str().map(str::to_owned))
        .collect()
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
    assert!(first.network["sequencers"][0]["pid"].as_u64().is_some());
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
    let client =
        SequencerClient::connect(ClientConfig::new(endpoints(&second.network), member, key))
            .await?;
    let mut sub = client.subscribe(Timestamp::MIN);
    let event = tokio::time::timeout(Duration::from_secs(20), sub.next()).await??;
    assert_eq!(event.timestamp, sent.timestamp);
    assert_eq!(event.message_id, "kept-across-restarts");
    assert_eq!(event.envelopes[0].content, b"hello");
    assert!(second.process.terminate(Duration::from_secs(30)));
    Ok(())
}
