//! A narrowed informee tree: the rogue, acting as bob, transfers bob's Iou (issued by bank)
//! to mallory, and tells the mediator that only mallory must confirm. The tree is sealed
//! consistently (its root covers the narrowed commitments), so only the participants'
//! own confirmation-policy check can see the lie: bob's shard and bank's shard each find
//! that their view's actions need bob and bank, reject, raise an alarm, and when the
//! mediator approves anyway (it waited for mallory only), apply nothing.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use ordo_core::PartyId;
use ordo_ledger::ContractId;
use ordo_ledger_client::{Command, Submission};
use ordo_protocol::VerdictOutcome;
use ordo_testkit::wait_for;

use crate::rogue::Rogue;
use crate::world::{PATIENCE, REJECTED_WITHIN, World};

const ALARMS: &str = "ordo_participant_alarms_total";

pub async fn run(w: &World) -> Result<()> {
    println!("a01: a narrowed informee tree");
    let r = &w.rogue;
    let payload = serde_json::json!({
        "issuer": "bank", "owner": "bob", "currency": "CHF", "amount": "100"
    });
    let issued = w
        .bank
        .submit(Submission::new(
            "bank",
            Command::Create {
                template_id: "iou:Iou".into(),
                payload: payload.clone(),
            },
        ))
        .await?;
    let iou = issued
        .created_of("iou:Iou")
        .first()
        .context("no Iou issued")?
        .to_string();
    wait_for("bob's shard to have his Iou", PATIENCE, || async {
        let ious = w.contracts(&w.bob, "bob", "iou:Iou").await.ok()?;
        ious.iter().any(|c| c.contract_id == iou).then_some(())
    })
    .await?;

    let cid: ContractId = iou.parse()?;
    let instance = r.instance("iou:Iou", payload)?;
    let command = r.exercise(
        "iou:Iou",
        cid,
        "Transfer",
        serde_json::json!({ "newOwner": "mallory" }),
    )?;
    let tx = r.interpret(command, &["bob"], &[(cid, instance)])?;
    let mut plan = r.plan(&tx).await?;
    // Every honest view's commitment loses its confirming parties; the rogue's own view
    // declares mallory, so that the mediator has someone to wait for: the rogue.
    let mallory = PartyId::new("mallory")?;
    let commitments = r
        .commitments(&plan)
        .into_iter()
        .map(|mut c| {
            c.confirming_parties = if c.participant == r.member {
                BTreeSet::from([mallory.clone()])
            } else {
                BTreeSet::new()
            };
            c
        })
        .collect();
    r.seal_with(&mut plan, commitments)?;
    let declared = plan.informee_tree.confirming_parties();
    ensure!(
        declared == BTreeSet::from([mallory.clone()]),
        "the narrowed tree declares {declared:?}"
    );

    let shard1 = w.active("shard-1").await?;
    let shard2 = w.active("shard-2").await?;
    let (shard1_ref, shard2_ref) = (&shard1, &shard2);
    let before = |kind: &'static str| async move {
        let one = w.alarms(shard1_ref, ALARMS, kind).await?;
        let two = w.alarms(shard2_ref, ALARMS, kind).await?;
        anyhow::Ok((one, two))
    };
    let (policy1, policy2) = before("confirmation_policy").await?;
    let (contra1, contra2) = before("verdict_contradicts_checks").await?;

    let request = r.submit(&plan).await?;
    for (shard, replica, was) in [("shard-2", &shard2, policy2), ("shard-1", &shard1, policy1)] {
        let took = w
            .wait_alarm(replica, ALARMS, "confirmation_policy", was, request)
            .await?;
        println!(
            "  {shard} rejected the narrowed request {} ms after its sequencing (alarm confirmation_policy)",
            took.as_millis()
        );
        ensure!(
            took <= REJECTED_WITHIN,
            "{shard} took {took:?} to reject the narrowed request"
        );
    }
    // The mediator, told to wait for mallory only, approves once the rogue does.
    r.approve(request, &plan.root_hash, &["mallory"]).await?;
    let (_, verdict) = r.verdict(request, PATIENCE).await?;
    ensure!(
        verdict.outcome == VerdictOutcome::Approve,
        "the mediator should have approved the narrowed request (only mallory was declared), got {:?}",
        verdict.outcome
    );
    for (shard, replica, was) in [("shard-2", &shard2, contra2), ("shard-1", &shard1, contra1)] {
        w.wait_alarm(replica, ALARMS, "verdict_contradicts_checks", was, request)
            .await
            .with_context(|| format!("{shard} should refuse the Approve it contradicts"))?;
    }

    // Nothing of it on any honest shard (each has processed the verdict: it raised the
    // alarm after committing it): bob's Iou is still his on both shards, mallory got
    // nothing, and the transaction is in nobody's updates.
    let update_id = Rogue::update_id(&plan, request)?;
    for (client, party) in [(&w.bob, "bob"), (&w.bank, "bank")] {
        let ious = w.contracts(client, party, "iou:Iou").await?;
        ensure!(
            ious.iter().any(|c| c.contract_id == iou),
            "{party}'s shard no longer has bob's Iou: {ious:?}"
        );
        ensure!(
            !ious.iter().any(|c| c.payload["owner"] == "mallory"),
            "{party}'s shard has an Iou for mallory: {ious:?}"
        );
        let ids = w.update_ids(client, party).await?;
        ensure!(
            !ids.contains(&update_id),
            "{party}'s updates contain the forged transaction"
        );
    }
    let alice = w
        .network
        .shard_client("shard-1", &w.network.party_token(&["alice"])?)?;
    ensure!(!w.update_ids(&alice, "alice").await?.contains(&update_id));
    w.honest_transfer("the narrowed tree").await
}
