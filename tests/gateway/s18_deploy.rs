//! What deploy/ relies on, against the live network:
//!
//! - every metric the alert rules (deploy/observability/alerts.yaml) and the Grafana
//!   dashboard (deploy/observability/grafana/ordo.json) name is exported by a node of the
//!   role that metric belongs to;
//! - the HTTP port of a node whose gRPC port requires a client certificate (a sequencer)
//!   serves `/readyz` and `/metrics` to a caller without one, as the kubelet's probes and
//!   Prometheus are, while its gRPC port still refuses that caller;
//! - `ordo mediator init --register-with` (what the init Jobs and the compose file run)
//!   registers the member through the topology manager's admin API with the node's own
//!   certificate, idempotently, and refuses a missing or wrong admin token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use ordo_ledger_client::Network;

use crate::harness::Env;
use crate::s17_metrics::families_by_role;

/// The files whose metric names are checked, from the repository root.
const OBSERVED: &[&str] = &[
    "deploy/observability/alerts.yaml",
    "deploy/observability/grafana/ordo.json",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `ordo_*` metric names in `text` (histogram series named by their family).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ordo_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !preceded {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_owned());
        }
        i = end;
    }
    names
}

/// The roles whose nodes export `metric`, by its prefix.
fn roles_of(metric: &str) -> Result<&'static [&'static str]> {
    const MEMBERS: &[&str] = &["topology", "mediator", "participant"];
    const EVERY: &[&str] = &[
        "sequencer",
        "topology",
        "mediator",
        "participant",
        "gateway",
    ];
    Ok(match metric {
        m if m.starts_with("ordo_sequencer_client_") => MEMBERS,
        m if m.starts_with("ordo_sequencer_") => &["sequencer"],
        m if m.starts_with("ordo_participant_") => &["participant"],
        m if m.starts_with("ordo_mediator_") => &["mediator"],
        m if m.starts_with("ordo_topology_") => &["topology"],
        m if m.starts_with("ordo_gateway_") => &["gateway"],
        m if m.starts_with("ordo_lease_") || m.starts_with("ordo_replica_") => MEMBERS,
        m if m.starts_with("ordo_tls_") || m.starts_with("ordo_throttl") => EVERY,
        other => bail!("{other}: no role's prefix"),
    })
}

async fn observed_metrics_are_exported(env: &Env, network: &Network) -> Result<()> {
    let exported = families_by_role(network, &[env.base.as_str()]).await?;
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in OBSERVED {
        let text = std::fs::read_to_string(repo_root().join(file))
            .with_context(|| format!("reading {file}"))?;
        let names = metric_names(&text);
        ensure!(names.len() >= 10, "{file} names only {names:?}");
        for name in names {
            let roles = roles_of(&name).with_context(|| format!("in {file}"))?;
            let found = roles.iter().any(|r| {
                exported
                    .get(r)
                    .is_some_and(|f: &BTreeSet<String>| f.contains(&name))
            });
            if !found {
                missing.push(format!(
                    "{file}: {name} (expected from {})",
                    roles.join(" or ")
                ));
            }
            checked += 1;
        }
    }
    ensure!(
        missing.is_empty(),
        "metrics the alerts or the dashboard name but no live node of their role exports:\n{}",
        missing.join("\n")
    );
    eprintln!("s18: {checked} metric names of the alert rules and the dashboard, all exported");
    Ok(())
}

async fn http_port_serves_callers_without_a_certificate(network: &Network) -> Result<()> {
    let tls = network
        .tls
        .as_ref()
        .context("the suite's network runs TLS")?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca)?)?;
    // Trusts the domain's CA and presents no certificate: the kubelet, Prometheus.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let sequencer = network.sequencers.first().context("no sequencer")?;
    for path in ["/readyz", "/livez", "/metrics"] {
        let url = format!("{}{path}", sequencer.http.trim_end_matches('/'));
        let answer = anonymous
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        ensure!(
            answer.status() == 200,
            "GET {url} without a certificate: {}",
            answer.status()
        );
    }
    // The gRPC port keeps requiring one.
    let grpc = format!("{}/", sequencer.grpc.trim_end_matches('/'));
    let refused = anonymous.get(&grpc).send().await;
    ensure!(
        refused.is_err(),
        "the sequencer's gRPC port answered a caller without a certificate: {:?}",
        refused.map(|r| r.status())
    );
    Ok(())
}

fn register_with(
    ordo: &Path,
    config: &Path,
    endpoints: &[String],
    token: Option<&str>,
) -> Result<std::process::Output> {
    let mut cmd = Command::new(ordo);
    cmd.args(["mediator", "init", "--json", "--config"])
        .arg(config);
    for e in endpoints {
        cmd.args(["--register-with", e]);
    }
    cmd.env_remove("ORDO_TOPOLOGY_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("ORDO_TOPOLOGY_ADMIN_TOKEN", t);
    }
    Ok(cmd.output()?)
}

async fn init_registers_with_the_topology_manager(network: &Network) -> Result<()> {
    let ordo = Path::new(env!("CARGO_BIN_EXE_ordo"));
    let mediator = network.mediators.first().context("no mediator")?;
    let dir = network.path.parent().context("network.json's folder")?;
    let config = dir.join("config").join(format!("{}.toml", mediator.name));
    let endpoints: Vec<String> = network.topology.iter().map(|t| t.grpc.clone()).collect();
    let token = network.auth.topology_admin_token.clone();

    // Again, for the running mediator: provisioned already, registered already, the same.
    let again = tokio::task::spawn_blocking({
        let (ordo, config, endpoints, token) = (
            ordo.to_owned(),
            config.clone(),
            endpoints.clone(),
            token.clone(),
        );
        move || register_with(&ordo, &config, &endpoints, Some(&token))
    })
    .await??;
    let stderr = String::from_utf8_lossy(&again.stderr);
    ensure!(
        again.status.success(),
        "init --register-with: {:?}\n{stderr}",
        again.status
    );
    let report: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(again.stdout.trim_ascii()).context("init's JSON line")?;
    ensure!(report["created"] == false, "{report:?}");
    ensure!(
        stderr.contains("registered with the topology manager"),
        "no registration logged:\n{stderr}"
    );

    // No token: a usage error naming the variable, before anything is sent.
    let none = register_with(ordo, &config, &endpoints, None)?;
    ensure!(
        none.status.code() == Some(2),
        "without a token: {:?}",
        none.status
    );
    ensure!(
        String::from_utf8_lossy(&none.stderr).contains("ORDO_TOPOLOGY_ADMIN_TOKEN"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    // A wrong token: refused by the manager.
    let wrong = register_with(ordo, &config, &endpoints, Some("not-the-admin-token"))?;
    ensure!(
        wrong.status.code() == Some(1),
        "with a wrong token: {:?}",
        wrong.status
    );
    Ok(())
}

pub async fn run(env: &Env) -> Result<()> {
    let network = Network::load(&env.network.path)?;
    observed_metrics_are_exported(env, &network).await?;
    http_port_serves_callers_without_a_certificate(&network).await?;
    init_registers_with_the_topology_manager(&network).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_read_as_families() {
        let names = metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(ordo_sequencer_commit_seconds_bucket[5m]))) \
             / ordo_lease_role{service=\"x\"} #ordonoactivereplica xordo_not_a_metric",
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["ordo_lease_role", "ordo_sequencer_commit_seconds"]
        );
        assert!(
            roles_of("ordo_sequencer_client_sends_total")
                .unwrap()
                .contains(&"mediator")
        );
        assert_eq!(
            roles_of("ordo_sequencer_sends_total").unwrap(),
            &["sequencer"]
        );
        assert!(roles_of("ordo_unknown").is_err());
    }
}
