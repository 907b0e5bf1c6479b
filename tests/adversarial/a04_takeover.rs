//! No replay loop after a takeover: bob's shard's active replica is paused (SIGSTOP), every
//! poison request of a02 (and the replay of a committed request) is sequenced meanwhile,
//! and the paused replica is killed
//! (SIGKILL). The other replica takes over, resumes from the database cursor before the
//! poison, and must reject each of them once, as the first did (its own alarm counters,
//! which start at zero, show it), then commit the next honest transfer.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::a02_poison_views::{self as poison, Target};
use crate::world::{PATIENCE, World};

const ALARMS: &str = "ordo_participant_alarms_total";

pub async fn run(w: &mut World) -> Result<()> {
    println!("a04: poison requests met by the replica that takes over");
    let t = Target::new(w).await?;
    let r = &w.rogue;
    // A committed request to replay while the replica is paused.
    let plan = r.plan(&t.stamp(r, "takeover")?).await?;
    let committed = r.envelopes(&plan).await?;
    let request = r.send(committed.clone()).await?;
    r.approve(request, &plan.root_hash, &["mallory"]).await?;
    let (_, verdict) = r.verdict(request, PATIENCE).await?;
    ensure!(
        verdict.outcome == ordo_protocol::VerdictOutcome::Approve,
        "the Stamp to replay should commit: {verdict:?}"
    );

    let old = w.active("shard-2").await?;
    let pid = old.signal(Signal::SIGSTOP).await?;
    let paused = Instant::now();

    let mut requests = Vec::new();
    requests.push(("contract_id_reuse", r.send(committed).await?));
    requests.push(("root_hash_mismatch", poison::root_mismatch(w, &t).await?.1));
    requests.push(("malformed_view", poison::cycle(w, &t).await?.1));
    requests.push((
        "malformed_view",
        poison::hundred_thousand_nodes(w, &t).await?.1,
    ));
    requests.push(("step_budget", poison::over_budget(w, &t).await?.1));
    kill(Pid::from_raw(pid), Signal::SIGKILL).context("killing the paused replica")?;

    let new = w.active("shard-2").await?;
    ensure!(
        new.name != old.name,
        "{} is still the active replica",
        old.name
    );
    println!(
        "  {} took over from {} {} ms after the pause",
        new.name,
        old.name,
        paused.elapsed().as_millis()
    );
    for kind in [
        "contract_id_reuse",
        "root_hash_mismatch",
        "malformed_view",
        "step_budget",
    ] {
        let expected = requests.iter().filter(|(k, _)| *k == kind).count() as f64;
        let first = requests
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, at)| *at)
            .context("no request")?;
        w.wait_alarm(&new, ALARMS, kind, expected - 1.0, first)
            .await
            .with_context(|| format!("{} should reject the {kind} requests", new.name))?;
        let seen = w.alarms(&new, ALARMS, kind).await?;
        ensure!(
            seen == expected,
            "{}: {seen} alarms {kind}, expected {expected} (each request rejected once)",
            new.name
        );
    }
    w.honest_transfer("the takeover").await?;
    ordo_testkit::wait_for("the new replica to stay active", PATIENCE, || async {
        let status = new.status().await.ok()?;
        (status.role == "active" && status.serving).then_some(())
    })
    .await?;
    w.net.restart(&old).await
}
