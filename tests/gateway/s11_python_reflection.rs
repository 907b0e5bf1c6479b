//! A client ordo did not write: Python's `grpcio-reflection` (gRPC reflection v1alpha)
//! lists a participant's Ledger API services over mutual TLS and resolves a service's
//! methods from the descriptors the node serves (`tests/python/reflection.py`; `.ci/run`
//! installs `grpcio` and `grpcio-reflection`).

use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::harness::Env;

pub async fn run(env: &Env) -> Result<()> {
    let network = ordo_ledger_client::Network::load(&env.network.path)?;
    let replica = network.replicas("shard-1")[0];
    let target = replica
        .grpc
        .strip_prefix("https://")
        .context("the network runs TLS")?
        .to_owned();
    let tls = network
        .tls
        .clone()
        .context("network.json names its TLS files")?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/reflection.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(&target)
        .arg(&tls.ca)
        .arg(&tls.cert)
        .arg(&tls.key)
        .arg("ordo.ledger.v1.CommandService")
        .output()
        .context(
            "running python3 (install Python 3 with `pip install grpcio grpcio-reflection`)",
        )?;
    ensure!(
        out.status.success(),
        "python3 {script} failed (needs `pip install grpcio grpcio-reflection`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
    let listed = |name: &str| {
        answer["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v == name))
    };
    for service in [
        "ordo.ledger.v1.CommandService",
        "ordo.ledger.v1.UpdateService",
        "ordo.ledger.v1.StateService",
        "ordo.ledger.v1.PartyManagementService",
        "grpc.health.v1.Health",
    ] {
        ensure!(
            listed(service),
            "grpcio-reflection did not list {service}: {answer}"
        );
    }
    ensure!(
        !listed("ordo.sequencer.v1.SequencerService"),
        "a participant advertises a service it does not serve: {answer}"
    );
    let methods = answer["methods"].to_string();
    ensure!(
        methods.contains("SubmitAndWait"),
        "CommandService's methods: {methods}"
    );
    println!(
        "s11: grpcio-reflection (v1alpha) listed {}",
        answer["services"]
    );
    Ok(())
}
