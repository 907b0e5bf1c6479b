//! `ordo admin failover --service NAME`: the active replica of NAME steps down (releasing
//! its lease after its session finished in-flight work), and another replica takes the
//! lease and resumes; this waits until that one is active and SERVING.

use std::collections::BTreeSet;
use std::time::Duration;

use ordo_lease::ReplicaStatus;
use ordo_ledger_client::Network;
use serde::Serialize;
use tokio::time::Instant;

use super::status::{Kind, Listed, SEQUENCER, listed};
use crate::Failure;
use ordo_lease::client as replica_http;

/// How often the replicas are asked whether one of them took over.
const POLL: Duration = Duration::from_millis(50);

/// Who handed over to whom, and how long until the new active replica served.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub service: String,
    pub from: String,
    pub to: String,
    /// The new term's fencing token.
    pub fencing_token: Option<i64>,
    pub took_ms: u64,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} took over from {} in {:.2} s",
            self.service,
            self.to,
            self.from,
            self.took_ms as f64 / 1000.0
        )?;
        if let Some(t) = self.fencing_token {
            write!(f, " (fencing token {t})")?;
        }
        Ok(())
    }
}

/// The replicas of `service` in the file, or why it cannot be failed over.
pub fn replicas_of(nodes: Vec<Listed>, service: &str) -> Result<Vec<Listed>, String> {
    let known: BTreeSet<String> = nodes.iter().map(|n| n.service.clone()).collect();
    let replicas: Vec<Listed> = nodes.into_iter().filter(|n| n.service == service).collect();
    let Some(first) = replicas.first() else {
        let known: Vec<String> = known.into_iter().collect();
        return Err(format!(
            "unknown service {service:?}; the network has: {}",
            known.join(", ")
        ));
    };
    if first.kind == Kind::Sequencer || service == SEQUENCER {
        return Err(
            "the sequencers are active-active: every node serves, there is nothing to fail \
             over (to take one out, stop it; clients move to the others)"
                .into(),
        );
    }
    if first.kind == Kind::Gateway {
        return Err(
            "the gateways are active-active and keep no ledger state: every one serves, \
             there is nothing to fail over (put them behind a load balancer)"
                .into(),
        );
    }
    if replicas.len() < 2 {
        return Err(format!(
            "service {service} has a single replica ({}): there is no other one to take over",
            first.name
        ));
    }
    Ok(replicas)
}

/// The replica holding the live lease among the answering ones (a deposed replica that
/// still believes itself active does not hold the row's token).
fn active_of<'a>(
    statuses: &'a [(&'a Listed, anyhow::Result<ReplicaStatus>)],
) -> Option<(&'a Listed, &'a ReplicaStatus)> {
    let active: Vec<(&Listed, &ReplicaStatus)> = statuses
        .iter()
        .filter_map(|(n, s)| s.as_ref().ok().map(|s| (*n, s)))
        .filter(|(_, s)| s.role == "active")
        .collect();
    active
        .iter()
        .find(|(_, s)| s.token.is_some() && s.token == s.lease_token)
        .or(active.first())
        .copied()
}

async fn statuses(replicas: &[Listed]) -> Vec<(&Listed, anyhow::Result<ReplicaStatus>)> {
    let answers = futures::future::join_all(replicas.iter().map(|r| async move {
        replica_http::status(&r.http)
            .await
            .map_err(anyhow::Error::from)
    }))
    .await;
    replicas.iter().zip(answers).collect()
}

/// One line per replica: its role, or why it did not answer.
fn describe(statuses: &[(&Listed, anyhow::Result<ReplicaStatus>)]) -> String {
    statuses
        .iter()
        .map(|(n, s)| match s {
            Ok(s) => format!("{} {}", n.name, s.role),
            Err(e) => format!("{} unreachable ({e:#})", n.name),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn run(network: &Network, service: &str, timeout: Duration) -> Result<Outcome, Failure> {
    let usage = |m: String| Failure::Usage(anyhow::anyhow!(m));
    let runtime = |m: String| Failure::Runtime(anyhow::anyhow!(m));
    let replicas = replicas_of(listed(network), service).map_err(usage)?;
    let token = network.auth.replica_admin_token.as_str();
    if token.is_empty() {
        return Err(usage(format!(
            "{} has no auth.replica_admin_token, which POST /admin/step-down needs; \
             restart the network with this version of `ordo up`",
            network.path.display()
        )));
    }

    let before = statuses(&replicas).await;
    let Some((from, _)) = active_of(&before) else {
        return Err(runtime(format!(
            "no replica of {service} is active right now ({}); a failover may be in \
             progress: see `ordo admin status`",
            describe(&before)
        )));
    };
    let from = from.clone();
    let started = Instant::now();
    let (code, message) = replica_http::step_down(&from.http, token)
        .await
        .map_err(|e| {
            Failure::Runtime(
                anyhow::Error::from(e).context(format!("asking {} to step down", from.name)),
            )
        })?;
    if code != 200 {
        return Err(runtime(format!(
            "{} refused to step down (HTTP {code}): {message}",
            from.name
        )));
    }
    tracing::debug!(service, replica = %from.name, "stepped down; waiting for another replica");

    let others: Vec<Listed> = replicas
        .into_iter()
        .filter(|r| r.name != from.name)
        .collect();
    let deadline = started + timeout;
    loop {
        let now = statuses(&others).await;
        for (node, status) in &now {
            let Ok(s) = status else { continue };
            if s.role == "active" && s.serving && ordo_node::serving(&node.grpc, "").await {
                return Ok(Outcome {
                    service: service.to_owned(),
                    from: from.name.clone(),
                    to: node.name.clone(),
                    fencing_token: s.token,
                    took_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(runtime(format!(
                "{} stepped down, but no other replica of {service} was active and SERVING \
                 within {timeout:?} ({}); see `ordo admin status` and the replicas' logs",
                from.name,
                describe(&now)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, service: &str, kind: Kind) -> Listed {
        Listed {
            name: name.into(),
            service: service.into(),
            kind,
            grpc: String::new(),
            http: String::new(),
            pid: None,
        }
    }

    fn network() -> Vec<Listed> {
        vec![
            node("sequencer-1", "sequencer", Kind::Sequencer),
            node("sequencer-2", "sequencer", Kind::Sequencer),
            node("topology-a", "topology", Kind::Replica),
            node("topology-b", "topology", Kind::Replica),
            node("mediator", "mediator", Kind::Replica),
            node("gateway-1", "gateway", Kind::Gateway),
        ]
    }

    #[test]
    fn refuses_what_cannot_fail_over() {
        let e = replicas_of(network(), "shard-9").unwrap_err();
        assert_eq!(
            e,
            "unknown service \"shard-9\"; the network has: gateway, mediator, sequencer, \
             topology"
        );
        let e = replicas_of(network(), "gateway").unwrap_err();
        assert!(e.contains("gateways are active-active"), "{e}");
        let e = replicas_of(network(), "sequencer").unwrap_err();
        assert!(e.contains("active-active"), "{e}");
        let e = replicas_of(network(), "mediator").unwrap_err();
        assert!(e.contains("single replica (mediator)"), "{e}");
        let names: Vec<String> = replicas_of(network(), "topology")
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["topology-a", "topology-b"]);
    }

    #[test]
    fn the_active_replica_is_the_lease_holder() {
        let (a, b) = (
            node("p-a", "shard-1", Kind::Replica),
            node("p-b", "shard-1", Kind::Replica),
        );
        let status = |role: &str, token: Option<i64>| ReplicaStatus {
            role: role.into(),
            token,
            lease_token: Some(5),
            ..ReplicaStatus::default()
        };
        // A deposed replica that has not noticed yet still says active with its old token.
        let statuses = vec![
            (&a, Ok(status("active", Some(4)))),
            (&b, Ok(status("active", Some(5)))),
        ];
        assert_eq!(
            active_of(&statuses).map(|(n, _)| n.name.as_str()),
            Some("p-b")
        );
        let statuses = vec![
            (&a, Err(anyhow::anyhow!("refused"))),
            (&b, Ok(status("passive", None))),
        ];
        assert!(active_of(&statuses).is_none());
        assert_eq!(
            describe(&statuses),
            "p-a unreachable (refused); p-b passive"
        );
    }
}
