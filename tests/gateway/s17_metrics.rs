//! Every node's `/metrics` after the suite's traffic, on every role (sequencers, topology
//! manager, mediator, each shard's replicas, the gateway): every `ordo_*` metric has HELP
//! and TYPE; no summaries; every `*_seconds` metric is a histogram with `_bucket` series
//! (but the few gauges of a point in time or a lag); each role exports its key metrics,
//! the participant its Ledger API and ledger metrics. And the request id: the gateway
//! echoes `X-Request-Id`, a participant takes `x-request-id` metadata and echoes it.
//!
//! [`scrape`] and [`families_by_role`] are the reusable part: what each node of each role
//! exports, e.g. to check that every metric an alert rule or the dashboard names exists.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, ensure};
use ordo_ledger_client::Network;
use serde_json::json;

use crate::harness::{Env, IOU};

const PARTY: &str = "s17-issuer";

/// `*_seconds` metrics that are gauges on purpose: a point in time or a current lag, not a
/// distribution of durations.
const SECONDS_GAUGES: &[&str] = &[
    "ordo_lease_since_renew_seconds",
    "ordo_replica_lag_seconds",
    "ordo_sequencer_tail_lag_seconds",
    "ordo_sequencer_head_timestamp_seconds",
    "ordo_tls_certificate_not_after_seconds",
];

/// What each role must export on every one of its nodes, from the start (a gateway's
/// request metrics come with its first request: checked on the suite's gateway).
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "sequencer",
        &[
            "ordo_sequencer_sends_total",
            "ordo_sequencer_batch_submissions",
            "ordo_sequencer_commit_seconds",
            "ordo_sequencer_subscriptions",
            "ordo_sequencer_events_delivered_total",
            "ordo_throttled_total",
        ],
    ),
    (
        "topology",
        &[
            "ordo_lease_role",
            "ordo_lease_failovers_total",
            "ordo_lease_takeover_seconds",
            "ordo_topology_serial",
            "ordo_topology_alarms_total",
        ],
    ),
    (
        "mediator",
        &[
            "ordo_lease_role",
            "ordo_lease_takeover_seconds",
            "ordo_mediator_pending_requests",
            "ordo_mediator_verdicts_total",
            "ordo_mediator_decision_latency_seconds",
            "ordo_mediator_alarms_total",
        ],
    ),
    (
        "participant",
        &[
            "ordo_lease_role",
            "ordo_lease_takeover_seconds",
            "ordo_participant_ledger_end",
            "ordo_participant_active_contracts",
            "ordo_participant_submissions_total",
            "ordo_participant_command_seconds",
            "ordo_participant_commit_seconds",
            "ordo_participant_ledger_api_requests_total",
            "ordo_participant_ledger_api_request_duration_seconds",
            "ordo_participant_ledger_api_requests_in_flight",
            "ordo_participant_alarms_total",
            "ordo_throttled_total",
        ],
    ),
    (
        "gateway",
        &[
            "ordo_gateway_cache_offset",
            "ordo_gateway_cache_contracts",
            "ordo_gateway_cache_rebuilds_total",
        ],
    ),
];

/// One node's `/metrics`, parsed.
#[derive(Debug, Default)]
pub struct Exported {
    /// Each family's `# TYPE`.
    pub types: BTreeMap<String, String>,
    /// The families with a `# HELP` line.
    pub help: BTreeSet<String>,
    /// Every sample: its name as written (`x_bucket`), its labels (`{…}` or empty), value.
    pub samples: Vec<(String, String, f64)>,
}

impl Exported {
    pub fn parse(text: &str) -> Result<Self> {
        let mut e = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                e.help.insert(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .with_context(|| format!("a TYPE line without a type: {line}"))?;
                e.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                let (series, value) = line
                    .rsplit_once(' ')
                    .with_context(|| format!("a sample without a value: {line}"))?;
                let (name, labels) = match series.find('{') {
                    Some(i) => series.split_at(i),
                    None => (series, ""),
                };
                let value = value
                    .parse()
                    .with_context(|| format!("a sample's value is no number: {line}"))?;
                e.samples.push((name.to_owned(), labels.to_owned(), value));
            }
        }
        Ok(e)
    }

    /// The family a sample belongs to: `x` for `x_bucket`, `x_sum` and `x_count` of a
    /// histogram or summary `x`, else its own name.
    pub fn family_of<'a>(&self, sample: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && matches!(
                    self.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
            {
                return base;
            }
        }
        sample
    }

    /// Every family the node exports (typed or only sampled).
    pub fn families(&self) -> BTreeSet<String> {
        let sampled = self.samples.iter().map(|(n, _, _)| self.family_of(n));
        self.types
            .keys()
            .map(String::as_str)
            .chain(sampled)
            .map(str::to_owned)
            .collect()
    }

    /// The sum of the samples named `name` whose labels contain each of `labels`
    /// (`key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|want| l.contains(want)))
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// Each node's `/metrics` by role (`sequencer`, `topology`, `mediator`, `participant`,
/// `gateway`) and node name: the nodes of `network` (network.json as `ordo up` writes it)
/// and the gateways at `gateways` (base URLs of gateways outside network.json, named by
/// their URL).
pub async fn scrape(
    network: &Network,
    gateways: &[&str],
) -> Result<BTreeMap<&'static str, BTreeMap<String, Exported>>> {
    let mut nodes: Vec<(&'static str, String, String)> = Vec::new();
    let nodes_of_role = [
        ("sequencer", &network.sequencers),
        ("topology", &network.topology),
        ("mediator", &network.mediators),
        ("gateway", &network.gateways),
    ];
    for (role, entries) in nodes_of_role {
        nodes.extend(
            entries
                .iter()
                .map(|n| (role, n.name.clone(), n.metrics.clone())),
        );
    }
    nodes.extend(
        network
            .participants
            .iter()
            .map(|n| ("participant", n.name.clone(), n.metrics.clone())),
    );
    nodes.extend(
        gateways
            .iter()
            .map(|base| ("gateway", (*base).to_owned(), format!("{base}/metrics"))),
    );
    let mut by_role: BTreeMap<&'static str, BTreeMap<String, Exported>> = BTreeMap::new();
    for (role, name, url) in nodes {
        let text = ordo_node::http_client::get_ok(&url)
            .await
            .with_context(|| format!("{role} {name}: GET {url}"))?;
        let exported = Exported::parse(&text).with_context(|| format!("{role} {name}: {url}"))?;
        by_role.entry(role).or_default().insert(name, exported);
    }
    Ok(by_role)
}

/// The metric families each role exports (over all its nodes).
pub async fn families_by_role(
    network: &Network,
    gateways: &[&str],
) -> Result<BTreeMap<&'static str, BTreeSet<String>>> {
    Ok(scrape(network, gateways)
        .await?
        .into_iter()
        .map(|(role, nodes)| {
            let families = nodes.values().flat_map(Exported::families).collect();
            (role, families)
        })
        .collect())
}

/// What is wrong with one node's metrics by the conventions (docs/operations.md).
fn conventions(e: &Exported) -> Vec<String> {
    let mut wrong = Vec::new();
    for family in e.families().iter().filter(|f| f.starts_with("ordo_")) {
        let kind = e.types.get(family).map(String::as_str);
        if kind.is_none() {
            wrong.push(format!("{family}: no # TYPE"));
        }
        if !e.help.contains(family) {
            wrong.push(format!("{family}: no # HELP"));
        }
        if family.ends_with("_seconds") && !SECONDS_GAUGES.contains(&family.as_str()) {
            let buckets = format!("{family}_bucket");
            if kind != Some("histogram") || !e.samples.iter().any(|(n, _, _)| *n == buckets) {
                wrong.push(format!(
                    "{family}: a {kind:?}, not a histogram with buckets"
                ));
            }
        }
        if kind == Some("counter") && !family.ends_with("_total") {
            wrong.push(format!("{family}: a counter not named *_total"));
        }
    }
    wrong.extend(
        e.types
            .iter()
            .filter(|(_, kind)| *kind == "summary")
            .map(|(family, _)| format!("{family}: a summary")),
    );
    wrong
}

pub async fn run(env: &Env) -> Result<()> {
    // Traffic of this test's own, with a request id of the caller's.
    env.ok(
        "/v1/parties/allocate",
        &env.admin()?,
        &json!({ "identifierHint": PARTY, "shard": "shard-1" }),
    )
    .await?;
    let created = env
        .http
        .post(format!("{}/v1/create", env.base))
        .bearer_auth(env.party(PARTY)?)
        .header("X-Request-Id", "s17-test-123")
        .json(&json!({"templateId": IOU, "payload":
            {"issuer": PARTY, "owner": PARTY, "currency": "EUR", "amount": "1"}}))
        .send()
        .await?;
    ensure!(created.status() == 200, "create: {}", created.status());
    ensure!(
        created.headers()["x-request-id"] == "s17-test-123",
        "the gateway does not echo the request id: {:?}",
        created.headers()
    );
    participant_echoes_the_request_id(env).await?;

    // network.json as it is now (s8 added a shard).
    let network = Network::load(&env.network.path)?;
    let scraped = scrape(&network, &[env.base.as_str()]).await?;
    let mut wrong = Vec::new();
    for (role, nodes) in &scraped {
        for (node, exported) in nodes {
            wrong.extend(
                conventions(exported)
                    .into_iter()
                    .map(|w| format!("{role} {node}: {w}")),
            );
        }
    }
    for (role, required) in REQUIRED {
        let nodes = scraped
            .get(role)
            .with_context(|| format!("no {role} scraped"))?;
        for (node, exported) in nodes {
            let families = exported.families();
            for metric in *required {
                if !families.contains(*metric) {
                    wrong.push(format!("{role} {node}: does not export {metric}"));
                }
            }
        }
    }
    // With TLS, every node `ordo up` runs tells when its certificate expires.
    if network.tls.is_some() {
        for (role, nodes) in &scraped {
            for (node, exported) in nodes.iter().filter(|(node, _)| **node != env.base) {
                if !exported
                    .families()
                    .contains("ordo_tls_certificate_not_after_seconds")
                {
                    wrong.push(format!(
                        "{role} {node}: does not export ordo_tls_certificate_not_after_seconds"
                    ));
                }
            }
        }
    }
    ensure!(
        wrong.is_empty(),
        "metrics not as documented:\n{}",
        wrong.join("\n")
    );

    // A gateway's request metrics come with its first request (per route): the suite's.
    let suite_gateway = scraped["gateway"]
        .get(&env.base)
        .context("the suite's gateway not scraped")?;
    for metric in [
        "ordo_gateway_requests_total",
        "ordo_gateway_request_duration_seconds",
    ] {
        ensure!(
            suite_gateway.families().contains(metric),
            "the suite's gateway does not export {metric}"
        );
    }
    ensure!(
        suite_gateway.sum(
            "ordo_gateway_requests_total",
            &["route=\"/v1/create\"", "status=\"200\""]
        ) > 0.0,
        "no /v1/create counted"
    );

    // The roles' metrics, as the helper for alert rules and the dashboard sees them.
    let families = families_by_role(&network, &[env.base.as_str()]).await?;
    ensure!(
        families.keys().copied().collect::<Vec<_>>()
            == [
                "gateway",
                "mediator",
                "participant",
                "sequencer",
                "topology"
            ],
        "roles scraped: {:?}",
        families.keys()
    );

    // Alarm counters at 0 for each kind, from the start.
    for (role, counter, kind) in [
        (
            "participant",
            "ordo_participant_alarms_total",
            "bad_signature",
        ),
        ("mediator", "ordo_mediator_alarms_total", "bad_signature"),
        ("topology", "ordo_topology_alarms_total", "poison_event"),
    ] {
        for (node, e) in &scraped[role] {
            let label = format!("kind=\"{kind}\"");
            ensure!(
                e.samples
                    .iter()
                    .any(|(n, l, _)| n == counter && l.contains(&label)),
                "{role} {node}: no {counter}{{{label}}}"
            );
        }
    }
    // The participants' metrics tell of the suite's traffic.
    let participants = &scraped["participant"];
    let total = |name: &str, labels: &[&str]| -> f64 {
        participants.values().map(|e| e.sum(name, labels)).sum()
    };
    let max = |name: &str| -> f64 {
        participants
            .values()
            .map(|e| e.sum(name, &[]))
            .fold(0.0, f64::max)
    };
    ensure!(
        total(
            "ordo_participant_ledger_api_requests_total",
            &["method=\"CommandService/", "code=\"OK\""]
        ) > 0.0,
        "no CommandService call counted OK"
    );
    ensure!(
        total(
            "ordo_participant_submissions_total",
            &["outcome=\"committed\""]
        ) > 0.0,
        "no committed submission counted"
    );
    ensure!(
        total(
            "ordo_participant_ledger_api_request_duration_seconds_count",
            &[]
        ) > 0.0,
        "no Ledger API call timed"
    );
    ensure!(
        max("ordo_participant_ledger_end") > 0.0,
        "no ledger end above 0"
    );
    ensure!(
        max("ordo_participant_active_contracts") > 0.0,
        "no shard with active contracts"
    );
    // At most one replica of each service is active.
    for (role, nodes) in &scraped {
        let mut active: BTreeMap<String, f64> = BTreeMap::new();
        for e in nodes.values() {
            for (n, labels, v) in &e.samples {
                if n == "ordo_lease_role" {
                    *active.entry(labels.clone()).or_default() += v;
                }
            }
        }
        for (service, n) in active {
            ensure!(
                n <= 1.0,
                "{role} {service}: {n} replicas report ordo_lease_role 1"
            );
        }
    }
    Ok(())
}

/// A participant takes the call's `x-request-id` and echoes it in the response (a passive
/// replica's UNAVAILABLE too), and makes one up for a call without.
async fn participant_echoes_the_request_id(env: &Env) -> Result<()> {
    use ordo_proto::ledger::v1 as ledger;
    let network = Network::load(&env.network.path)?;
    let admin = env.admin()?;
    for replica in network.replicas("shard-1") {
        let channel =
            ordo_node::tls::channel(&replica.grpc, ordo_node::tls::trusted().as_ref(), |e| e)
                .await?;
        let call = |id: Option<&str>| {
            let mut req = tonic::Request::new(ledger::GetLedgerEndRequest {});
            req.metadata_mut()
                .insert("authorization", format!("Bearer {admin}").parse().ok()?);
            if let Some(id) = id {
                req.metadata_mut().insert("x-request-id", id.parse().ok()?);
            }
            Some(req)
        };
        let echoed = |req: tonic::Request<ledger::GetLedgerEndRequest>| {
            let channel = channel.clone();
            async move {
                let mut client = ledger::state_service_client::StateServiceClient::new(channel);
                let metadata = match client.get_ledger_end(req).await {
                    Ok(r) => r.metadata().clone(),
                    Err(status) => status.metadata().clone(),
                };
                metadata
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            }
        };
        let given = echoed(call(Some("s17-grpc-456")).context("a request")?).await;
        ensure!(
            given.as_deref() == Some("s17-grpc-456"),
            "{}: the request id echoed is {given:?}",
            replica.name
        );
        let made_up = echoed(call(None).context("a request")?).await;
        ensure!(
            made_up.as_ref().is_some_and(|id| id.len() == 36),
            "{}: no request id made up: {made_up:?}",
            replica.name
        );
    }
    Ok(())
}
