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
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
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
