//! The suite's world: `ordo up` (real node processes: two sequencers, two replicas of each
//! shard, of the mediator and of the topology manager), honest parties and contracts on
//! the shards, the rogue, and what an operator would look at — each node's alarm counters
//! on its `/metrics`, the parties' active contracts and updates through the Ledger API.
//!
//! Honest: bank and alice on shard-1, bob on shard-2, and the HA harness's worker 0, whose
//! Iou moves between a0 (shard-1) and b0 (shard-2): the honest transfer that must commit
//! after every attack. Rogue: `rogue` serving `shard-rogue`, hosting mallory and mallory2.
//! bob owns a `spin:Counter` that mallory operates.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ordo_core::Timestamp;
use ordo_ledger_client::{Command, Contract, Filter, Network, ShardClient, Submission};
use ordo_testkit::wait_for;

use crate::net::{Ledger, Net, Outcome, Replica};
use crate::rogue::Rogue;

pub const IOU_PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.toml");
pub const SPIN_PACKAGE: &[u8] = include_bytes!("spin.toml");
/// How soon after its sequencing a poison request must be rejected.
pub const REJECTED_WITHIN: Duration = Duration::from_secs(2);
/// How long a verdict or a commit may take to be seen, generously.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// The largest request the network accepts in this suite (the sequencer's maximum): large
/// enough for a view of 100,000 nodes to reach a participant.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;

pub struct World {
    pub net: Net,
    pub network: Network,
    pub rogue: Rogue,
    pub ledger: Arc<Ledger>,
    /// bob's client (shard-2), bank's (shard-1).
    pub bob: ShardClient,
    pub bank: ShardClient,
    /// bob's Counter that mallory operates: its contract id.
    pub counter: String,
}

impl World {
    pub async fn start(ordo: &Path) -> Result<Self> {
        let max = MAX_REQUEST_BYTES.to_string();
        // A message may carry a whole submission of that size.
        let net = Net::start_with_env(
            ordo,
            &[
                ("ORDO_SEQUENCER_MAX_REQUEST_BYTES", &max),
                ("ORDO_SEQUENCER_MAX_BATCH_BYTES", &max),
            ],
        )
        .await?;
        let network = net.network.clone();
        let ledger = Arc::new(Ledger::setup(&network, 1).await?);
        // (bank, an issuer of the HA harness's ledger, is there already.)
        for (party, shard) in [("alice", "shard-1"), ("bob", "shard-2")] {
            network
                .client_for_shard(shard)
                .await?
                .allocate_party(party)
                .await?;
        }
        network
            .client_for_shard("shard-1")
            .await?
            .upload_package(SPIN_PACKAGE.to_vec())
            .await?;
        let rogue = Rogue::join(
            &network,
            "rogue",
            "shard-rogue",
            &["mallory", "mallory2"],
            &[IOU_PACKAGE, SPIN_PACKAGE],
        )
        .await?;
        rogue
            .wait_topology("the rogue's parties and the spin package", |t| {
                t.parties.keys().any(|p| p.as_str() == "mallory2") && t.packages.len() >= 2
            })
            .await?;
        // The operator allows large requests (the sequencer is configured alike).
        let mut parameters = rogue.topology().await?.parameters;
        parameters.max_request_bytes = MAX_REQUEST_BYTES as usize;
        rogue
            .set_parameters(ordo_proto::admin::v1::DomainParameters {
                participant_response_timeout_us: parameters.participant_response_timeout_us,
                deduplication_period_us: parameters.deduplication_period_us,
                max_command_bytes: parameters.max_command_bytes as u64,
                max_request_bytes: parameters.max_request_bytes as u64,
                ..Default::default()
            })
            .await?;
        rogue
            .wait_topology("the larger max_request_bytes", |t| {
                t.parameters.max_request_bytes == MAX_REQUEST_BYTES as usize
            })
            .await?;

        let bob = network.shard_client("shard-2", &network.party_token(&["bob"])?)?;
        let bank = network.shard_client("shard-1", &network.party_token(&["bank"])?)?;
        let created = bob
            .submit(Submission::new(
                "bob",
                Command::Create {
                    template_id: "spin:Counter".into(),
                    payload: serde_json::json!({"owner": "bob", "operator": "mallory"}),
                },
            ))
            .await?;
        let counter = created
            .created_of("spin:Counter")
            .first()
            .context("no Counter created")?
            .to_string();
        Ok(Self {
            net,
            network,
            rogue,
            ledger,
            bob,
            bank,
            counter,
        })
    }

    /// Stops the rogue, then the network (its Postgres too); `ordo up`'s output, for a
    /// failure report.
    pub fn stop(self) -> String {
        let Self { mut net, rogue, .. } = self;
        // A member still subscribed keeps a sequencer draining.
        drop(rogue);
        if !net.stop(Duration::from_secs(60)) {
            eprintln!("ordo up did not stop within 60 s; its process group was killed");
        }
        net.up_log()
    }

    // --- what honest parties see -------------------------------------------------------

    /// `party`'s active contracts of `template` through `client`.
    pub async fn contracts(
        &self,
        client: &ShardClient,
        party: &str,
        template: &str,
    ) -> Result<Vec<Contract>> {
        let filter = Filter {
            parties: vec![party.to_owned()],
            templates: vec![template.to_owned()],
        };
        let acs = client
            .read(|c| {
                let filter = filter.clone();
                async move { c.active_contracts(&filter).await }
            })
            .await?;
        Ok(acs.contracts)
    }

    /// The update ids of every transaction `party` sees through `client`.
    pub async fn update_ids(&self, client: &ShardClient, party: &str) -> Result<Vec<String>> {
        use futures::StreamExt;
        let filter = Filter::party(party);
        let client = client.active().await?;
        let mut stream = client.updates(&filter, 0, false).await?;
        let mut ids = Vec::new();
        while let Some(tx) = stream.next().await {
            ids.push(tx?.update_id);
        }
        Ok(ids)
    }

    /// The honest transfer that must commit after every attack: worker 0's Iou moves to
    /// its other holder, across shards.
    pub async fn honest_transfer(&self, after: &str) -> Result<()> {
        let started = Instant::now();
        let record = self.ledger.transfer(0).await?;
        match record.outcome {
            Outcome::Committed { .. } => {
                println!(
                    "  honest transfer after {after}: committed in {} ms",
                    started.elapsed().as_millis()
                );
                Ok(())
            }
            other => bail!("the honest transfer after {after} did not commit: {other:?}"),
        }
    }

    // --- alarms ------------------------------------------------------------------------

    /// The active replica of `service` (`shard-2`, `mediator`).
    pub async fn active(&self, service: &str) -> Result<Replica> {
        self.net.active(service, PATIENCE).await
    }

    /// The `/metrics` URL of `replica`.
    pub fn metrics_url(&self, replica: &Replica) -> Result<String> {
        let n = &self.network;
        n.participants
            .iter()
            .map(|p| (&p.name, &p.metrics))
            .chain(n.mediators.iter().map(|m| (&m.name, &m.metrics)))
            .chain(n.topology.iter().map(|m| (&m.name, &m.metrics)))
            .find(|(name, _)| **name == replica.name)
            .map(|(_, url)| url.clone())
            .with_context(|| format!("no metrics endpoint for {}", replica.name))
    }

    /// The value of `metric{kind="…"}` on `replica` (0 when never counted).
    pub async fn alarms(&self, replica: &Replica, metric: &str, kind: &str) -> Result<f64> {
        let url = self.metrics_url(replica)?;
        let text = ordo_node::http_client::get_ok(&url).await?;
        Ok(counter(&text, metric, kind))
    }

    /// Waits until `metric{kind}` on `replica` exceeds `before`; how long after the
    /// sequencing time `since` it was seen.
    pub async fn wait_alarm(
        &self,
        replica: &Replica,
        metric: &str,
        kind: &str,
        before: f64,
        since: Timestamp,
    ) -> Result<Duration> {
        wait_for(
            &format!(
                "{metric}{{kind={kind:?}}} on {} above {before}",
                replica.name
            ),
            PATIENCE,
            || async {
                let now = self.alarms(replica, metric, kind).await.ok()?;
                (now > before).then(|| since_sequenced(since))
            },
        )
        .await
    }
}

/// The wall-clock time since the sequencing timestamp `ts` (the sequencer stamps events
/// with this machine's clock).
pub fn since_sequenced(ts: Timestamp) -> Duration {
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    Duration::from_micros(now.micros().saturating_sub(ts.micros()).max(0) as u64)
}

/// Reads `metric{kind="…"} value` from a Prometheus text page.
pub fn counter(text: &str, metric: &str, kind: &str) -> f64 {
    let label = format!("kind=\"{kind}\"");
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .filter(|l| l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Asserts that the request was rejected within [`REJECTED_WITHIN`] of its sequencing:
/// from the moment the sequencer acknowledged the send (the request committed in its
/// database) to the verdict's timestamp. Its own timestamp is assigned inside that
/// transaction, before the payload is written, so for a request of many megabytes the
/// figure from the timestamp includes the sequencer's write; both are printed.
pub fn assert_rejected_in_time(
    what: &str,
    r: &Rogue,
    request: Timestamp,
    verdict: &(Timestamp, ordo_protocol::Verdict),
    reason: &str,
) -> Result<()> {
    let (at, v) = verdict;
    let reasons = match &v.outcome {
        ordo_protocol::VerdictOutcome::Reject { reasons, .. } => reasons.join("; "),
        other => bail!("{what}: expected a rejection, got {other:?}"),
    };
    ensure!(
        reasons.contains(reason),
        "{what}: the rejection should say {reason:?}: {reasons}"
    );
    let since =
        |from: Timestamp| Duration::from_micros((at.micros() - from.micros()).max(0) as u64);
    let (took, from_timestamp) = (since(r.acked(request)), since(request));
    println!(
        "  {what}: rejected {} ms after it was sequenced ({} ms after its timestamp): {reasons}",
        took.as_millis(),
        from_timestamp.as_millis()
    );
    ensure!(
        took <= REJECTED_WITHIN,
        "{what}: rejected {took:?} after it was sequenced, more than {REJECTED_WITHIN:?}"
    );
    Ok(())
}
