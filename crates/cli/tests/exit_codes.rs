//! The binary's contract with scripts and supervisors: bad usage or configuration exits 2
//! with a message naming the problem, before anything starts.

use std::path::Path;
use std::process::{Command, Output};

fn ordo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordo"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run ordo: {e}"))
}

fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("sequencer.toml");
    ordo_testkit::write_secret(&path, text)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_string_lossy().into_owned()
}

#[test]
fn missing_config_file_is_named() {
    let out = ordo(&["sequencer", "--config", "/nonexistent/seq.toml"], &[]);
    assert_usage_error(&out, "/nonexistent/seq.toml");
    let out = ordo(
        &["sequencer", "init", "--config", "/nonexistent/seq.toml"],
        &[],
    );
    assert_usage_error(&out, "/nonexistent/seq.toml");
}

#[test]
fn unknown_key_and_invalid_value_are_named() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = write_config(dir.path(), "node_name = \"seq-1\"\nmax_batchh = 3\n");
    assert_usage_error(&ordo(&["sequencer", "-c", &file], &[]), "max_batchh");

    let file = write_config(dir.path(), "pool_size = 2\n");
    assert_usage_error(&ordo(&["sequencer", "init", "-c", &file], &[]), "pool_size");

    let file = write_config(dir.path(), "");
    let out = ordo(
        &["sequencer", "-c", &file],
        &[("ORDO_SEQUENCER_DATABASE_URL", "mysql://db/seq")],
    );
    assert_usage_error(&out, "database_url");
    let out = ordo(&["sequencer", "-c", &file, "--node-name", "Not Valid"], &[]);
    assert_usage_error(&out, "node_name");
}

#[test]
fn missing_config_flag_and_unknown_subcommand_are_usage_errors() {
    assert_usage_error(&ordo(&["sequencer"], &[]), "--config");
    assert_usage_error(&ordo(&["frobnicate"], &[]), "unrecognized subcommand");
}

/// A network file whose nodes listen nowhere (every port is closed).
fn dead_network(dir: &Path) -> String {
    let closed = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        format!("http://127.0.0.1:{port}")
    };
    let node = |name: &str, service: &str, role: &str| {
        serde_json::json!({"name": name, "service": service, "role": role, "pid": 1,
                           "grpc": closed(), "http": closed()})
    };
    let file = serde_json::json!({
        "sequencers": [node("sequencer-1", "sequencer", "active")],
        "topology": [node("topology-a", "topology", "active"), node("topology-b", "topology", "passive")],
        "mediators": [node("mediator", "mediator", "active")],
        "participants": [],
        "auth": {"replica_admin_token": "t"},
    });
    let path = dir.join("network.json");
    std::fs::write(&path, file.to_string()).unwrap_or_else(|e| panic!("write: {e}"));
    path.to_string_lossy().into_owned()
}

#[test]
fn admin_status_reports_unreachable_nodes_and_exits_0() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dead_network(dir.path());
    let out = ordo(&["admin", "status", "--json", "--network", &file], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON: {e}"));
    let rows: Vec<(&str, &str, &str, bool)> = report
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default(),
                r["service"].as_str().unwrap_or_default(),
                r["role"].as_str().unwrap_or_default(),
                r["healthy"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("sequencer-1", "sequencer", "active", false),
            ("topology-a", "topology", "passive", false),
            ("topology-b", "topology", "passive", false),
            ("mediator", "mediator", "passive", false),
        ]
    );
    assert!(
        report[1]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unreachable")),
        "{:?}",
        report[1]
    );
    assert_eq!(report[1]["pid"], 1);

    let out = ordo(
        &["admin", "status", "--network", "/nonexistent/n.json"],
        &[],
    );
    assert_usage_error(&out, "ordo up");
}

#[test]
fn admin_failover_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dead_network(dir.path());
    let failover = |service: &str| {
        ordo(
            &[
                "admin",
                "failover",
                "--service",
                service,
                "--network",
                &file,
            ],
            &[],
        )
    };
    assert_usage_error(
        &failover("shard-9"),
        "unknown service \"shard-9\"; the network has: mediator, sequencer, topology",
    );
    assert_usage_error(&failover("sequencer"), "active-active");
    assert_usage_error(&failover("mediator"), "single replica (mediator)");
    // Both topology replicas are down: nothing is active to hand over (a runtime failure).
    let out = failover("topology");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no replica of topology is active"),
        "{stderr}"
    );
    assert!(stderr.contains("topology-a unreachable"), "{stderr}");
}
