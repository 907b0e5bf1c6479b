//! `ordo config check`: the shipped examples pass, and a bad file fails with exit code 1
//! and a message naming the key; usage errors exit 2.

use std::path::{Path, PathBuf};
use std::process::Output;

const ROLES: [&str; 5] = [
    "sequencer",
    "topology",
    "mediator",
    "participant",
    "gateway",
];
const MANAGER: &str = "topology::00112233445566778899aabbccddeeff";

/// `ordo config check …` with only `env` as its environment.
fn check(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["config", "check"])
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ordo: {e}"))
}

fn example(role: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/{role}.toml"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_fails(out: &Output, code: i32, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

#[test]
fn every_example_passes_for_its_role() {
    for role in ROLES {
        let file = example(role);
        let out = check(&["--role", role, &file.to_string_lossy()], &[]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{role}: {}", text(&out.stderr));
        assert!(
            stdout.starts_with(&format!("ok: {role} config ")),
            "{role}: {stdout}"
        );
    }
    let out = check(
        &[
            "--role",
            "participant",
            &example("participant").to_string_lossy(),
        ],
        &[],
    );
    assert!(
        text(&out.stdout).contains("(node participant-1, shard shard-1)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_file_of_another_role_fails() {
    let out = check(
        &[
            "--role",
            "sequencer",
            &example("participant").to_string_lossy(),
        ],
        &[],
    );
    // A participant key the sequencer does not know.
    assert_fails(&out, 1, &["unknown field", "for key", "participant.toml"]);
}

#[test]
fn bad_files_fail_naming_the_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        path.to_string_lossy().into_owned()
    };
    let env = [("ORDO_MEDIATOR_TOPOLOGY_MANAGER", MANAGER)];

    let bare = write("bare.toml", "[replica]\nttl = 3000\n");
    let out = check(&["--role", "mediator", &bare], &env);
    assert_fails(
        &out,
        1,
        &[
            "replica.ttl",
            "\"30s\" or \"500ms\"",
            "bare number",
            "bare.toml",
        ],
    );

    let unknown = write("unknown.toml", "ack_intervall = \"5s\"\n");
    let out = check(&["--role", "mediator", &unknown], &env);
    assert_fails(&out, 1, &["ack_intervall"]);

    // The node's own validation runs too: renew_period must fit inside the ttl.
    let invalid = write(
        "invalid.toml",
        "[replica]\nttl = \"1s\"\nrenew_period = \"2s\"\n",
    );
    let out = check(&["--role", "mediator", &invalid], &env);
    assert_fails(&out, 1, &["replica.renew_period"]);

    // From the environment the same rule holds, and the variable is named.
    let fine = write("fine.toml", "ack_interval = \"5s\"\n");
    let out = check(
        &["--role", "mediator", &fine],
        &[env[0], ("ORDO_MEDIATOR_ACK_INTERVAL", "5")],
    );
    assert_fails(&out, 1, &["ACK_INTERVAL", "ORDO_MEDIATOR_", "\"30s\""]);
    let out = check(&["--role", "mediator", &fine], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A setting the deployment gives from the environment is required here too.
    let out = check(&["--role", "mediator", &fine], &[]);
    assert_fails(&out, 1, &["topology_manager", "ORDO_MEDIATOR_"]);

    let out = check(&["--role", "mediator", "--json", &bare], &env);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(report["ok"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap_or("")
            .contains("replica.ttl"),
        "{report}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let file = example("mediator");
    let out = check(&["--role", "ledger", &file.to_string_lossy()], &[]);
    assert_fails(&out, 2, &["ledger"]);
    let out = check(&[&file.to_string_lossy()], &[]);
    assert_fails(&out, 2, &["--role"]);
}

#[test]
fn nothing_is_created_or_read_beyond_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("p.toml");
    // Key, certificate and token files that do not exist: a CI checkout has no secrets.
    let body = format!(
        "topology_manager = \"{MANAGER}\"\nkey_file = \"{0}/missing.key\"\n\
         [auth]\nkey_file = \"{0}/missing-jwks.json\"\n\
         [tls]\ncert = \"{0}/missing.pem\"\nkey = \"{0}/missing-key.pem\"\nca = \"{0}/ca.pem\"\n",
        dir.path().display()
    );
    std::fs::write(&file, body).unwrap_or_else(|e| panic!("{e}"));
    let out = check(&["--role", "participant", &file.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(entries, ["p.toml"], "the check created files");
}
