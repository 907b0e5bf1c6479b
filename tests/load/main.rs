//! `ordo load` as a user runs it: the built `ordo` binary against a network from `ordo up`
//! (real node processes over a real Postgres), each run's `--json` report parsed and
//! checked: every command accounted for, something committed, nothing timed out, the
//! cross-check against the shards' update logs matching, the HTML report written with its
//! charts. And bad input refused with a message that says what is wrong.
//!
//! One network serves the whole suite (starting one takes about ten seconds); the runs go
//! one after another on it, each with its own run id, so none sees another's parties.

#[allow(dead_code)] // the HA suite's network harness; this suite uses `Net::start`
#[path = "../ha/harness.rs"]
mod net;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ordo_ledger_client::Network;
use ordo_testkit::wait_for;
use serde_json::Value;

use net::Net;

const ORDO: &str = env!("CARGO_BIN_EXE_ordo");

async fn ordo_load(args: &[&str]) -> Result<Output> {
    Ok(tokio::process::Command::new(ORDO)
        .arg("load")
        .args(args)
        .output()
        .await?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ordo load` with `args` and `--json` on the network; its report.
async fn report(network: &Path, args: &[&str]) -> Result<Value> {
    let network = network.to_str().context("a UTF-8 path")?;
    let mut all = vec!["--network", network, "--json"];
    all.extend_from_slice(args);
    let out = ordo_load(&all).await?;
    ensure!(
        out.status.success(),
        "ordo load {args:?} exited {}:\n{}",
        out.status,
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let line = stdout.lines().last().context("no output")?;
    let report: Value =
        serde_json::from_str(line).with_context(|| format!("not one JSON object: {stdout}"))?;
    eprintln!("ordo load {args:?}: {line}");
    Ok(report)
}

fn number(report: &Value, field: &str) -> Result<u64> {
    report[field]
        .as_u64()
        .with_context(|| format!("no {field} in {report}"))
}

/// What every run's report must show.
fn check(report: &Value, scenario: &str, via: &str) -> Result<()> {
    ensure!(
        report["scenario"] == scenario && report["via"] == via,
        "{report}"
    );
    let [submitted, committed, rejected, timed_out] =
        ["submitted", "committed", "rejected", "timed_out"].map(|f| number(report, f));
    let (submitted, committed, rejected, timed_out) =
        (submitted?, committed?, rejected?, timed_out?);
    ensure!(
        submitted == committed + rejected + timed_out,
        "not every command is accounted for: {report}"
    );
    ensure!(committed > 0, "nothing committed: {report}");
    ensure!(timed_out == 0, "commands timed out: {report}");
    let errors: u64 = report["errors"]
        .as_object()
        .context("errors is an object")?
        .values()
        .filter_map(Value::as_u64)
        .sum();
    ensure!(errors == rejected + timed_out, "errors by kind: {report}");
    let x = &report["cross_check"];
    ensure!(
        x["matches"] == true && x["committed"] == committed && x["in_logs"] == committed,
        "the cross-check does not match: {report}"
    );
    let [p50, p99, max] =
        ["p50_ms", "p99_ms", "max_ms"].map(|f| report[f].as_f64().unwrap_or(-1.0));
    ensure!(0.0 < p50 && p50 <= p99 && p99 <= max, "latencies: {report}");
    ensure!(
        report["committed_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{report}"
    );
    // The network's nodes run on this machine: each is measured.
    let nodes = report["nodes"].as_array().context("nodes")?;
    ensure!(
        nodes.iter().any(|n| n["name"] == "participant-1-a")
            && nodes.iter().all(|n| n["cpu_percent"].as_f64().is_some()),
        "nodes: {report}"
    );
    Ok(())
}

/// The HTML report exists and draws its charts.
fn check_html(path: &Path) -> Result<()> {
    let html = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    ensure!(
        html.matches("<svg").count() == 2,
        "two charts in {}",
        path.display()
    );
    // Self-contained: nothing to load from elsewhere.
    ensure!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("<link"),
        "{} loads something",
        path.display()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordo_load_counts_what_the_shards_commit() -> Result<()> {
    // Bad input is refused before anything is dialled (exit code 2).
    let out = ordo_load(&["--scenario", "bogus", "--clients", "2"]).await?;
    ensure!(out.status.code() == Some(2), "{}", out.status);
    let stderr = text(&out.stderr);
    ensure!(
        stderr.contains("invalid value 'bogus' for '--scenario") && stderr.contains("transfer"),
        "{stderr}"
    );
    let out = ordo_load(&["--count", "5"]).await?;
    ensure!(out.status.code() == Some(2), "{}", out.status);
    ensure!(
        text(&out.stderr).contains("--clients N"),
        "{}",
        text(&out.stderr)
    );

    let mut net = Net::start(Path::new(ORDO)).await?;
    let outcome = runs(&net).await;
    net.stop(Duration::from_secs(60));
    outcome.map_err(|e| anyhow::anyhow!("{e:#}\n--- ordo up's output:\n{}", net.up_log()))
}

/// Each shard's active replica shows where its commands' time went, stage by stage.
async fn stage_metrics(net: &Net) -> Result<()> {
    for shard in ["shard-1", "shard-2"] {
        let active = net.active(shard, Duration::from_secs(10)).await?;
        let metrics = ordo_node::http_client::get_ok(&format!("{}/metrics", active.http)).await?;
        for series in [
            "ordo_participant_submission_seconds_count",
            "ordo_participant_interpretation_seconds_count",
            "ordo_participant_send_seconds_count{outcome=\"sequenced\"}",
            "ordo_participant_command_seconds_count{outcome=\"committed\"}",
            "ordo_participant_batch_events_count",
            "ordo_participant_commit_seconds_bucket{le=\"0.005\"}",
        ] {
            let count = metrics
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok());
            ensure!(
                count.is_some_and(|c| c > 0.0),
                "{shard} ({}): no {series} after the transfers",
                active.name
            );
        }
    }
    Ok(())
}

async fn runs(net: &Net) -> Result<()> {
    let dir = net.dir.path();
    let file = net.network.path.clone();

    let html = dir.join("transfer.html");
    let r = report(
        &file,
        &["--scenario", "issue", "--clients", "4", "--count", "40"],
    )
    .await?;
    check(&r, "issue", "grpc")?;
    ensure!(r["commands"]["issue"]["committed"] == r["committed"], "{r}");
    let html_arg = html.to_str().context("path")?;
    let r = report(
        &file,
        &[
            "--scenario",
            "transfer",
            "--clients",
            "4",
            "--count",
            "40",
            "--ious",
            "2",
            "--report",
            html_arg,
        ],
    )
    .await?;
    check(&r, "transfer", "grpc")?;
    check_html(&html)?;
    stage_metrics(net).await?;

    let r = report(
        &file,
        &[
            "--scenario",
            "swap",
            "--clients",
            "4",
            "--count",
            "12",
            "--ious",
            "2",
        ],
    )
    .await?;
    check(&r, "swap", "grpc")?;
    ensure!(
        r["commands"]["accept"]["committed"].as_u64() > Some(0),
        "no swap accepted: {r}"
    );

    // An open loop mixing every kind.
    let r = report(
        &file,
        &[
            "--scenario",
            "mix",
            "--rate",
            "20",
            "--clients",
            "4",
            "--count",
            "30",
            "--ious",
            "2",
        ],
    )
    .await?;
    check(&r, "mix", "grpc")?;
    // Accepts answer proposals on top of the 30 commands the schedule made due.
    let accepts = &r["commands"]["accept"];
    let answers = ["committed", "rejected", "timed_out"].map(|f| accepts[f].as_u64().unwrap_or(0));
    ensure!(
        r["loop"] == "open" && number(&r, "submitted")? == 30 + answers.iter().sum::<u64>(),
        "{r}"
    );

    // Through the gateway, once ordo up lists it.
    let listed = wait_for(
        "network.json to list the gateway",
        Duration::from_secs(120),
        || async { Network::load(&file).ok().filter(|n| !n.gateways.is_empty()) },
    )
    .await?;
    let without = dir.join("no-gateway.json");
    let mut copy: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    copy["gateways"] = Value::Array(Vec::new());
    std::fs::write(&without, copy.to_string())?;
    let out = ordo_load(&[
        "--network",
        without.to_str().context("path")?,
        "--via",
        "http",
        "--clients",
        "2",
        "--count",
        "2",
    ])
    .await?;
    ensure!(out.status.code() == Some(2), "{}", out.status);
    ensure!(
        text(&out.stderr).contains("lists none under `gateways`"),
        "{}",
        text(&out.stderr)
    );

    let html = dir.join("http.html");
    let r = report(
        &listed.path,
        &[
            "--via",
            "http",
            "--scenario",
            "transfer",
            "--clients",
            "4",
            "--count",
            "30",
            "--ious",
            "2",
            "--report",
            html.to_str().context("path")?,
        ],
    )
    .await?;
    check(&r, "transfer", "http")?;
    check_html(&html)?;
    Ok(())
}
