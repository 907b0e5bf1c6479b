//! `ordo admin status`: what every node of the network file says about itself, gathered
//! concurrently (a frozen node costs one short timeout, not the whole report).
//!
//! `healthy` means: for a sequencer and for a service's active replica, `grpc.health.v1`
//! answers SERVING; for a passive replica, its `GET /status` answers (it is up and warm,
//! ready to take over); for a gateway, its `GET /readyz` answers 200. A replica whose
//! `/status` does not answer is reported `passive` (it is not serving), unhealthy, with
//! `last_error` saying why it is unreachable.

use std::fmt::Write as _;

use ordo_ledger_client::Network;
use serde::Serialize;

use ordo_lease::client as replica_http;

/// The service name of the sequencers (active-active: every node serves).
pub const SEQUENCER: &str = "sequencer";
/// The service name of the gateways (active-active).
pub const GATEWAY: &str = "gateway";

/// What a node is, which decides how it is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A sequencer node: no lease, its gRPC health.
    Sequencer,
    /// A replica of an active-passive service: its `GET /status`.
    Replica,
    /// A JSON API gateway: no lease, no gRPC, its `GET /readyz`.
    Gateway,
}

/// A node as the network file lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub service: String,
    pub kind: Kind,
    pub grpc: String,
    pub http: String,
    pub pid: Option<u32>,
}

/// One row of the report; the JSON form is an array of these. Fields that do not apply
/// (a sequencer's lease, an unreachable replica's cursor) are `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub service: String,
    /// `active` or `passive`.
    pub role: String,
    pub healthy: bool,
    pub pid: Option<u32>,
    pub grpc: String,
    pub http: String,
    /// The replica's lease holder id (`name#suffix`, one per process) and, while active,
    /// its fencing token.
    pub holder: Option<String>,
    pub token: Option<i64>,
    /// The service's lease row as the replica read it: holder, token, unexpired.
    pub lease_holder: Option<String>,
    pub lease_token: Option<i64>,
    pub lease_live: Option<bool>,
    /// How long after sequencing the last processed event was processed (ms).
    pub lag_ms: Option<u64>,
    /// The last processed sequencer event's timestamp.
    pub cursor: Option<String>,
    pub last_error: Option<String>,
}

/// Every node of the file: sequencers, topology manager, mediators, participants,
/// gateways, in that order. The service defaults to the list's (files of older versions
/// have none).
pub fn listed(network: &Network) -> Vec<Listed> {
    let mut out = Vec::new();
    let lists = [
        (&network.sequencers, SEQUENCER, Kind::Sequencer),
        (&network.topology, "topology", Kind::Replica),
        (&network.mediators, "mediator", Kind::Replica),
    ];
    let entry = |n: &ordo_ledger_client::network::NodeEntry, service: &str, kind| Listed {
        name: n.name.clone(),
        service: or(&n.service, service),
        kind,
        grpc: n.grpc.clone(),
        http: n.http.clone(),
        pid: n.pid,
    };
    for (nodes, default_service, kind) in lists {
        out.extend(nodes.iter().map(|n| entry(n, default_service, kind)));
    }
    for p in &network.participants {
        out.push(Listed {
            name: p.name.clone(),
            service: or(&p.service, &p.shard),
            kind: Kind::Replica,
            grpc: p.grpc.clone(),
            http: p.http.clone(),
            pid: p.pid,
        });
    }
    out.extend(
        network
            .gateways
            .iter()
            .map(|n| entry(n, GATEWAY, Kind::Gateway)),
    );
    out
}

fn or(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}

/// Every node's status, in file order.
pub async fn probe_all(network: &Network) -> Vec<NodeStatus> {
    futures::future::join_all(listed(network).iter().map(probe)).await
}

/// One node's status.
pub async fn probe(node: &Listed) -> NodeStatus {
    let mut s = NodeStatus {
        name: node.name.clone(),
        service: node.service.clone(),
        role: "active".into(),
        healthy: false,
        pid: node.pid,
        grpc: node.grpc.clone(),
        http: node.http.clone(),
        holder: None,
        token: None,
        lease_holder: None,
        lease_token: None,
        lease_live: None,
        lag_ms: None,
        cursor: None,
        last_error: None,
    };
    match node.kind {
        Kind::Sequencer => {
            s.healthy = ordo_node::serving(&node.grpc, "").await;
            if !s.healthy {
                s.last_error = Some(format!("not SERVING on {} (down or starting)", node.grpc));
            }
            return s;
        }
        Kind::Gateway => {
            s.healthy = crate::up::readyz(&node.http).await;
            if !s.healthy {
                s.last_error = Some(format!(
                    "GET {}/readyz does not answer 200 (down, starting or catching up)",
                    node.http
                ));
            }
            return s;
        }
        Kind::Replica => {}
    }
    match replica_http::status(&node.http).await {
        Err(e) => {
            s.role = "passive".into();
            s.last_error = Some(format!("unreachable: {e:#}"));
        }
        Ok(r) => {
            s.role = r.role;
            s.pid = Some(r.pid);
            s.holder = Some(r.holder).filter(|h| !h.is_empty());
            s.token = r.token;
            s.lease_holder = r.lease_holder;
            s.lease_token = r.lease_token;
            s.lease_live = r.lease_live;
            s.lag_ms = r.lag_ms;
            s.cursor = r.cursor;
            s.last_error = r.last_error;
            s.healthy = if s.role == "active" {
                r.serving && ordo_node::serving(&node.grpc, "").await
            } else {
                true
            };
            if s.role == "active" && !s.healthy && s.last_error.is_none() {
                s.last_error = Some("active but not SERVING yet (resuming)".into());
            }
        }
    }
    s
}

/// The report for people: one line per node, in columns.
pub fn table(nodes: &[NodeStatus]) -> String {
    let dash = || "-".to_owned();
    let mut rows: Vec<Vec<String>> = vec![
        [
            "NAME",
            "SERVICE",
            "ROLE",
            "HEALTHY",
            "PID",
            "LEASE (TOKEN)",
            "LAG",
            "CURSOR",
            "LAST ERROR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for n in nodes {
        let lease = match (&n.lease_holder, n.lease_token) {
            (Some(h), Some(t)) => {
                let expired = if n.lease_live == Some(false) {
                    ", expired"
                } else {
                    ""
                };
                format!("{h} ({t}{expired})")
            }
            _ => dash(),
        };
        rows.push(vec![
            n.name.clone(),
            n.service.clone(),
            n.role.clone(),
            if n.healthy { "yes" } else { "NO" }.to_owned(),
            n.pid.map_or_else(dash, |p| p.to_string()),
            lease,
            n.lag_ms.map_or_else(dash, |l| format!("{l} ms")),
            n.cursor.clone().unwrap_or_else(dash),
            n.last_error.as_deref().map_or_else(dash, one_line),
        ]);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const FILE: &str = r#"{
      "sequencers": [{"name": "sequencer-1", "service": "sequencer", "role": "active", "pid": 1,
                      "grpc": "http://127.0.0.1:1", "http": "http://127.0.0.1:2"}],
      "topology": [{"name": "topology-a", "service": "topology", "role": "active", "pid": 2,
                    "grpc": "http://127.0.0.1:3", "http": "http://127.0.0.1:4"}],
      "mediators": [{"name": "mediator", "pid": 3, "grpc": "g", "http": "h"}],
      "participants": [{"name": "participant-1-b", "shard": "shard-1", "service": "shard-1",
                        "role": "passive", "grpc": "http://127.0.0.1:5", "http": "http://127.0.0.1:6"},
                       {"name": "participant-2", "shard": "shard-2", "grpc": "g2", "http": "h2"}],
      "gateways": [{"name": "gateway-1", "role": "active", "pid": 4, "http": "http://127.0.0.1:7"}]
    }"#;

    #[test]
    fn lists_every_node_with_its_service() {
        let network = Network::parse(FILE, Path::new("n.json")).unwrap();
        let nodes = listed(&network);
        let names: Vec<(&str, &str, Kind)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.service.as_str(), n.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("sequencer-1", "sequencer", Kind::Sequencer),
                ("topology-a", "topology", Kind::Replica),
                // Older files have no service: the list's, or the shard.
                ("mediator", "mediator", Kind::Replica),
                ("participant-1-b", "shard-1", Kind::Replica),
                ("participant-2", "shard-2", Kind::Replica),
                ("gateway-1", "gateway", Kind::Gateway),
            ]
        );
    }

    #[tokio::test]
    async fn an_unreachable_replica_is_passive_and_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let node = Listed {
            name: "mediator-b".into(),
            service: "mediator".into(),
            kind: Kind::Replica,
            grpc: format!("http://127.0.0.1:{port}"),
            http: format!("http://127.0.0.1:{port}"),
            pid: Some(42),
        };
        let s = probe(&node).await;
        assert_eq!(
            (s.role.as_str(), s.healthy, s.pid),
            ("passive", false, Some(42))
        );
        assert!(
            s.last_error
                .as_deref()
                .unwrap_or_default()
                .starts_with("unreachable: "),
            "{s:?}"
        );
        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "name",
            "service",
            "role",
            "healthy",
            "pid",
            "lease_holder",
            "lag_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        let text = table(&[s]);
        assert!(
            text.lines().nth(1).unwrap().starts_with("mediator-b"),
            "{text}"
        );
        assert!(text.contains("  NO  "), "{text}");
        assert!(text.starts_with("NAME        SERVICE   ROLE"), "{text}");
    }
}
