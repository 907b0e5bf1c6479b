//! Poison views: requests that used to halt a shard (a view with a cycle looped for ever, a
//! reused root hash collided on the update id and was retried for ever) or to cost it
//! minutes of CPU. Each is on bob's Counter, which mallory operates, so that bob must
//! confirm: bob's shard rejects it within 2 s of its sequencing (the mediator's Reject
//! verdict, in sequencer time, shows it), raises the alarm of its kind, and commits the
//! next honest transfer right after.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use ordo_core::{MemberId, PartyId};
use ordo_ledger::{ContractId, ContractInstance, Limits, Node, Transaction, ViewRoot};
use ordo_ledger_client::{Command, Submission};
use ordo_participant::views::RequestPlan;
use ordo_protocol::VerdictOutcome;
use ordo_testkit::wait_for;

use crate::rogue::Rogue;
use crate::world::{PATIENCE, World, assert_rejected_in_time};

const ALARMS: &str = "ordo_participant_alarms_total";

/// What the poison cases share: bob's Counter as the rogue knows it, and bob's shard.
pub struct Target {
    pub counter: (ContractId, ContractInstance),
    pub bob_shard: MemberId,
}

impl Target {
    pub async fn new(w: &World) -> Result<Self> {
        let instance = w.rogue.instance(
            "spin:Counter",
            serde_json::json!({"owner": "bob", "operator": "mallory"}),
        )?;
        Ok(Self {
            counter: (w.counter.parse()?, instance),
            bob_shard: w.rogue.participant_of("shard-2").await?,
        })
    }

    /// mallory exercises `choice` on bob's Counter.
    fn operate(&self, r: &Rogue, choice: &str, argument: serde_json::Value) -> Result<Transaction> {
        let command = r.exercise("spin:Counter", self.counter.0, choice, argument)?;
        r.interpret(command, &["mallory"], std::slice::from_ref(&self.counter))
    }

    /// mallory spins bob's Counter `n` times.
    pub fn spin(&self, r: &Rogue, n: i64) -> Result<Transaction> {
        self.operate(r, "Spin", serde_json::json!({ "n": n }))
    }

    /// mallory stamps a Receipt signed by bob.
    pub fn stamp(&self, r: &Rogue, note: &str) -> Result<Transaction> {
        self.operate(r, "Stamp", serde_json::json!({ "note": note }))
    }

    /// A view for bob's shard whose roots are `copies` copies of the single node of
    /// `tx` (a Spin), each a root of the transaction.
    pub fn many_roots(&self, tx: &Transaction, copies: usize) -> Result<Transaction> {
        let node = tx.nodes.first().context("an empty transaction")?.clone();
        Ok(Transaction {
            seed: tx.seed,
            submitters: tx.submitters.clone(),
            roots: (0..copies).collect(),
            nodes: vec![node; copies],
            input_contracts: tx.input_contracts.clone(),
        })
    }

    /// bob's view in `plan`.
    pub fn bob_view<'a>(&self, plan: &'a mut RequestPlan) -> Result<&'a mut ordo_ledger::View> {
        Ok(&mut plan
            .views
            .get_mut(&self.bob_shard)
            .context("no view for bob's shard")?
            .view)
    }
}

/// A request whose view for bob's shard no longer hashes to its commitment.
pub async fn root_mismatch(w: &World, t: &Target) -> Result<(RequestPlan, ordo_core::Timestamp)> {
    let r = &w.rogue;
    let mut plan = r.plan(&t.spin(r, 1)?).await?;
    // The view bob receives spins twice; the commitment still says once.
    let view = t.bob_view(&mut plan)?;
    if let Some(Node::Exercise { argument, .. }) = view.nodes.get_mut(&0) {
        *argument = r.packages.argument_from_json(
            &"spin:Counter".parse()?,
            "Spin",
            &serde_json::json!({"n": 2}),
        )?;
    }
    let payload = plan.views[&t.bob_shard].clone();
    if let Some(m) = plan.messages.get_mut(&t.bob_shard) {
        m.view = ordo_participant::views::view_json(&payload);
    }
    let request = r.submit(&plan).await?;
    Ok((plan, request))
}

/// A request whose view for bob's shard has a cycle (sealed consistently).
pub async fn cycle(w: &World, t: &Target) -> Result<(RequestPlan, ordo_core::Timestamp)> {
    let r = &w.rogue;
    let mut plan = r.plan(&t.stamp(r, "cycle")?).await?;
    let view = t.bob_view(&mut plan)?;
    // Node 0 (the Stamp) has child 1 (the Receipt's create); make 1 an exercise whose
    // child is 0.
    let mut back = view.nodes.get(&0).context("no node 0")?.clone();
    if let Node::Exercise { children, .. } = &mut back {
        *children = vec![0];
    }
    view.nodes.insert(1, back);
    r.seal(&mut plan)?;
    let request = r.submit(&plan).await?;
    Ok((plan, request))
}

/// A request whose view for bob's shard has 100,000 nodes (sealed consistently).
pub async fn hundred_thousand_nodes(
    w: &World,
    t: &Target,
) -> Result<(RequestPlan, ordo_core::Timestamp)> {
    let r = &w.rogue;
    let mut plan = r.plan(&t.spin(r, 0)?).await?;
    let view = t.bob_view(&mut plan)?;
    // As small as a node gets (a fetch naming nobody: the count is checked before what
    // the nodes say), under one root, so that the request is 13 MB.
    let fetch = Node::Fetch {
        contract_id: t.counter.0,
        template: "s:C".parse()?,
        actors: BTreeSet::new(),
        signatories: BTreeSet::new(),
        stakeholders: BTreeSet::new(),
    };
    view.nodes = (0..100_000).map(|i| (i, fetch.clone())).collect();
    view.roots = vec![ViewRoot {
        node: 0,
        parent: None,
        authorizers: view.submitters.clone(),
    }];
    // The commitment still names bob, so that the mediator waits for him.
    let bob = BTreeSet::from([PartyId::new("bob")?]);
    let commitments = r
        .commitments(&plan)
        .into_iter()
        .map(|mut c| {
            if c.participant == t.bob_shard {
                c.informees = bob.clone();
                c.confirming_parties = bob.clone();
            }
            c
        })
        .collect();
    r.seal_with(&mut plan, commitments)?;
    let request = r.submit(&plan).await?;
    Ok((plan, request))
}

/// A request whose view for bob's shard has ten roots, each within the domain's step
/// budget and all together several times over it.
pub async fn over_budget(w: &World, t: &Target) -> Result<(RequestPlan, ordo_core::Timestamp)> {
    let r = &w.rogue;
    let budget = r.topology().await?.parameters.max_interpretation_steps;
    let limits = Limits {
        max_operations: budget,
        ..Limits::default()
    };
    let bob = BTreeSet::from([PartyId::new("bob")?]);
    let view_of = |tx: &Transaction| tx.view(&bob);
    // Steps per iteration of Spin, measured on the same core the participants run.
    let big = Limits {
        max_operations: u64::MAX / 2,
        ..Limits::default()
    };
    let probe = ordo_ledger::reinterpret_view(&r.packages, &view_of(&t.spin(r, 1000)?), &big)?;
    let n = (budget as f64 * 0.4 / (probe as f64 / 1000.0)) as i64;
    let one = t.spin(r, n)?;
    let tx = t.many_roots(&one, 10)?;
    // The attack is exactly the budget per view: one root passes, ten do not.
    let single = ordo_ledger::reinterpret_view(&r.packages, &view_of(&one), &limits)?;
    ensure!(
        single < budget,
        "one Spin({n}) takes {single} steps, not under the budget {budget}"
    );
    ensure!(
        ordo_ledger::reinterpret_view(&r.packages, &view_of(&tx), &limits).is_err(),
        "ten Spin({n}) roots should exceed the budget {budget}"
    );
    println!("  over budget: 10 roots of Spin({n}), {single} steps each, budget {budget}");
    let plan = r.plan(&tx).await?;
    let request = r.submit(&plan).await?;
    Ok((plan, request))
}

pub async fn run(w: &World) -> Result<()> {
    println!("a02: poison views");
    let r = &w.rogue;
    let t = Target::new(w).await?;
    let shard2 = w.active("shard-2").await?;

    let cases: [(&str, &str, &str); 4] = [
        (
            "a view that does not hash to the root",
            "root_hash_mismatch",
            "does not hash",
        ),
        ("a view with a cycle", "malformed_view", "pre-order"),
        (
            "a view with 100,000 nodes",
            "malformed_view",
            "100000 nodes",
        ),
        ("a view over the step budget", "step_budget", "step limit"),
    ];
    for (i, (what, kind, reason)) in cases.iter().enumerate() {
        let before = w.alarms(&shard2, ALARMS, kind).await?;
        let (plan, request) = match i {
            0 => root_mismatch(w, &t).await?,
            1 => cycle(w, &t).await?,
            2 => {
                // A 17 MB request is as fast as the disk takes its write: have the
                // machine's pending writes (the build that preceded the tests) flushed
                // first, so that what is measured is this request.
                tokio::task::spawn_blocking(nix::unistd::sync).await?;
                hundred_thousand_nodes(w, &t).await?
            }
            _ => over_budget(w, &t).await?,
        };
        let verdict = r.verdict(request, PATIENCE).await?;
        // Freeing a plan of 100,000 nodes takes this process a while: not while the
        // nodes it measures are at work.
        drop(plan);
        assert_rejected_in_time(what, r, request, &verdict, reason)?;
        w.wait_alarm(&shard2, ALARMS, kind, before, request).await?;
        w.honest_transfer(what).await?;
    }

    replays(w, &t).await
}

/// The rogue's committed Stamp, sent again unchanged (the same root hash): first while
/// its Receipt is active, then after bob archived it. Neither may create it again.
async fn replays(w: &World, t: &Target) -> Result<()> {
    let r = &w.rogue;
    let shard2 = w.active("shard-2").await?;
    let plan = r.plan(&t.stamp(r, "first")?).await?;
    let envelopes = r.envelopes(&plan).await?;
    let request = r.send(envelopes.clone()).await?;
    r.approve(request, &plan.root_hash, &["mallory"]).await?;
    let (_, verdict) = r.verdict(request, PATIENCE).await?;
    ensure!(
        verdict.outcome == VerdictOutcome::Approve,
        "the honest Stamp should commit: {verdict:?}"
    );
    let receipts = || async {
        let all = w.contracts(&w.bob, "bob", "spin:Receipt").await?;
        anyhow::Ok(
            all.into_iter()
                .filter(|c| c.payload["note"] == "first")
                .collect::<Vec<_>>(),
        )
    };
    let receipt = wait_for("bob's Receipt", PATIENCE, || async {
        receipts().await.ok()?.into_iter().next()
    })
    .await?;

    let reuse = |what: &'static str| {
        let envelopes = envelopes.clone();
        let shard2 = shard2.clone();
        async move {
            let before = w.alarms(&shard2, ALARMS, "contract_id_reuse").await?;
            let replay = r.send(envelopes).await?;
            let verdict = r.verdict(replay, PATIENCE).await?;
            assert_rejected_in_time(what, r, replay, &verdict, "already exists")?;
            w.wait_alarm(&shard2, ALARMS, "contract_id_reuse", before, replay)
                .await?;
            w.honest_transfer(what).await
        }
    };
    reuse("a replay of a committed request (its Receipt active)").await?;
    ensure!(
        receipts().await?.len() == 1,
        "the replay created a second Receipt"
    );

    w.bob
        .submit(Submission::new(
            "bob",
            Command::Exercise {
                template_id: "spin:Receipt".into(),
                contract_id: receipt.contract_id.clone(),
                choice: "Archive".into(),
                argument: serde_json::json!({}),
            },
        ))
        .await?;
    reuse("a replay of a committed request (its Receipt archived)").await?;
    ensure!(
        receipts().await?.is_empty(),
        "the replay brought the archived Receipt back"
    );
    // The committed Stamp is in bob's updates once, under the id derived from its root and
    // its own sequencing time.
    let id = Rogue::update_id(&plan, request)?;
    let ids = w.update_ids(&w.bob, "bob").await?;
    ensure!(
        ids.iter().filter(|u| **u == id).count() == 1,
        "bob's updates should hold the Stamp once"
    );
    Ok(())
}
