//! Attacks on the mediator's decisions and on the verdicts: two informee trees in one event
//! (well formed, and malformed so that both would be decided at once), a response signed
//! by another member than its sender, a replayed response, and a verdict from a member
//! that is not the mediator. The mediator and the participants decide each request once or
//! ignore the message, raise an alarm, and keep deciding honest requests.

use anyhow::{Context, Result, ensure};
use ordo_core::{Envelope, Hash, Recipients};
use ordo_ledger::ContractId;
use ordo_proto::sequencer::v1 as seq;
use ordo_protocol::{Message, Verdict, VerdictOutcome};
use prost::Message as _;

use crate::a02_poison_views::Target;
use crate::world::{PATIENCE, World};

const PARTICIPANT_ALARMS: &str = "ordo_participant_alarms_total";
const MEDIATOR_ALARMS: &str = "ordo_mediator_alarms_total";

pub async fn run(w: &World) -> Result<()> {
    println!("a03: the mediator and the verdicts");
    let t = Target::new(w).await?;
    duplicate_trees(w, &t).await?;
    foreign_response(w).await?;
    replayed_response(w).await?;
    forged_verdict(w, &t).await
}

/// Waits a moment for stray verdicts, then asserts `request` got exactly one.
async fn one_verdict(w: &World, request: ordo_core::Timestamp) -> Result<Verdict> {
    let (_, verdict) = w.rogue.verdict(request, PATIENCE).await?;
    // A second verdict would be sequenced right after the first; an honest transfer takes
    // longer than that, so run one before counting.
    w.honest_transfer("counting verdicts").await?;
    let all = w.rogue.verdicts_for(request);
    ensure!(
        all.len() == 1,
        "request {request} got {} verdicts: {all:?}",
        all.len()
    );
    Ok(verdict)
}

async fn duplicate_trees(w: &World, t: &Target) -> Result<()> {
    let r = &w.rogue;
    let mediator = w.active("mediator").await?;
    let duplicates = w
        .alarms(&mediator, MEDIATOR_ALARMS, "duplicate_request")
        .await?;

    // A well-formed request whose event carries its informee tree twice.
    let plan = r.plan(&t.stamp(r, "twice")?).await?;
    let mut envelopes = r.envelopes(&plan).await?;
    let tree = envelopes.last().context("no tree envelope")?.clone();
    envelopes.push(tree);
    let request = r.send(envelopes).await?;
    w.wait_alarm(
        &mediator,
        MEDIATOR_ALARMS,
        "duplicate_request",
        duplicates,
        request,
    )
    .await?;
    r.approve(request, &plan.root_hash, &["mallory"]).await?;
    let verdict = one_verdict(w, request).await?;
    ensure!(
        verdict.outcome == VerdictOutcome::Approve,
        "the request with a duplicated tree: {verdict:?}"
    );
    println!("  two informee trees in one event: decided once (Approve)");

    // Two malformed trees in one event: each would be rejected at once.
    let malformed = w
        .alarms(&mediator, MEDIATOR_ALARMS, "malformed_informee_tree")
        .await?;
    let duplicates = w
        .alarms(&mediator, MEDIATOR_ALARMS, "duplicate_request")
        .await?;
    let mut plan = r.plan(&t.stamp(r, "twice-malformed")?).await?;
    plan.informee_tree.root_hash = Hash::of(b"no such root").to_hex();
    let mut envelopes = r.envelopes(&plan).await?;
    let tree = envelopes.last().context("no tree envelope")?.clone();
    envelopes.push(tree);
    let request = r.send(envelopes).await?;
    w.wait_alarm(
        &mediator,
        MEDIATOR_ALARMS,
        "malformed_informee_tree",
        malformed,
        request,
    )
    .await?;
    w.wait_alarm(
        &mediator,
        MEDIATOR_ALARMS,
        "duplicate_request",
        duplicates,
        request,
    )
    .await?;
    let verdict = one_verdict(w, request).await?;
    ensure!(
        matches!(verdict.outcome, VerdictOutcome::Reject { .. }),
        "the request with two malformed trees: {verdict:?}"
    );
    println!("  two malformed informee trees in one event: decided once (Reject)");
    Ok(())
}

/// The rogue sends bob's participant's signed response as its own (taken from the
/// sequencer's database, as a malicious sequencer operator could hand it over).
async fn foreign_response(w: &World) -> Result<()> {
    let r = &w.rogue;
    let bob_shard = r.participant_of("shard-2").await?;
    let db = sqlx::PgPool::connect(&w.network.postgres.url).await?;
    let payload: Vec<u8> = sqlx::query_scalar(
        "SELECT e.payload FROM events e JOIN members m ON m.idx = e.sender
         WHERE m.member_id = $1 AND e.message_id LIKE 'resp-%' ORDER BY e.ts DESC LIMIT 1",
    )
    .bind(bob_shard.as_str())
    .fetch_one(&db)
    .await
    .context("a response of bob's shard in the sequencer's database")?;
    db.close().await;
    let submission = seq::SubmissionRequest::decode(payload.as_slice())?;
    let content = submission
        .envelopes
        .into_iter()
        .next()
        .context("no envelope")?
        .content;
    let mediator_id = r.mediator().await?;
    let mediator = w.active("mediator").await?;
    let before = w
        .alarms(&mediator, MEDIATOR_ALARMS, "signer_not_sender")
        .await?;
    let at = r
        .send(vec![Envelope {
            recipients: Recipients::members([mediator_id]),
            content,
        }])
        .await?;
    w.wait_alarm(&mediator, MEDIATOR_ALARMS, "signer_not_sender", before, at)
        .await?;
    println!("  a response signed by another member: ignored with an alarm");
    w.honest_transfer("a foreign response").await
}

/// mallory2 transfers an Iou issued by mallory to bob: both must confirm. The rogue
/// approves for mallory, sends the same response again, then approves for mallory2.
async fn replayed_response(w: &World) -> Result<()> {
    let r = &w.rogue;
    let payload = serde_json::json!({
        "issuer": "mallory", "owner": "mallory2", "currency": "XTS", "amount": "7"
    });
    let create = r.interpret(r.create("iou:Iou", payload.clone())?, &["mallory"], &[])?;
    let (cid, instance): (ContractId, _) = create
        .created()
        .into_iter()
        .next()
        .context("no Iou created")?;
    let plan = r.plan(&create).await?;
    let request = r.submit(&plan).await?;
    r.approve(request, &plan.root_hash, &["mallory"]).await?;
    let (_, v) = r.verdict(request, PATIENCE).await?;
    ensure!(v.outcome == VerdictOutcome::Approve, "{v:?}");

    let transfer = r.interpret(
        r.exercise(
            "iou:Iou",
            cid,
            "Transfer",
            serde_json::json!({"newOwner": "bob"}),
        )?,
        &["mallory2"],
        &[(cid, instance)],
    )?;
    let plan = r.plan(&transfer).await?;
    let mediator = w.active("mediator").await?;
    let before = w.alarms(&mediator, MEDIATOR_ALARMS, "duplicate").await?;
    let request = r.submit(&plan).await?;
    let approval = r
        .response(
            request,
            &plan.root_hash,
            &["mallory"],
            ordo_protocol::ResponseOutcome::Approve,
        )
        .await?;
    r.send(vec![approval.clone()]).await?;
    let replay = r.send(vec![approval]).await?;
    w.wait_alarm(&mediator, MEDIATOR_ALARMS, "duplicate", before, replay)
        .await?;
    ensure!(
        r.verdicts_for(request).is_empty(),
        "a replayed approval decided the request"
    );
    r.approve(request, &plan.root_hash, &["mallory2"]).await?;
    let verdict = one_verdict(w, request).await?;
    ensure!(verdict.outcome == VerdictOutcome::Approve, "{verdict:?}");
    let xts = w.contracts(&w.bob, "bob", "iou:Iou").await?;
    ensure!(
        xts.iter()
            .filter(|c| c.payload["currency"] == "XTS")
            .count()
            == 1,
        "bob should have the transferred Iou once: {xts:?}"
    );
    println!("  a replayed response: ignored with an alarm; the request decided once");
    Ok(())
}

/// The rogue sends bob's shard an Approve for a pending request, signed by itself.
async fn forged_verdict(w: &World, t: &Target) -> Result<()> {
    let r = &w.rogue;
    let shard2 = w.active("shard-2").await?;
    let before = w
        .alarms(&shard2, PARTICIPANT_ALARMS, "verdict_not_from_mediator")
        .await?;
    let plan = r.plan(&t.stamp(r, "forged")?).await?;
    let request = r.submit(&plan).await?;
    let forged = Message::Verdict(Verdict {
        request,
        root_hash: plan.root_hash.clone(),
        outcome: VerdictOutcome::Approve,
    });
    let at = r
        .send(vec![Envelope {
            recipients: Recipients::members([t.bob_shard.clone()]),
            content: r.sign(&forged),
        }])
        .await?;
    w.wait_alarm(
        &shard2,
        PARTICIPANT_ALARMS,
        "verdict_not_from_mediator",
        before,
        at,
    )
    .await?;
    let forged_receipts = || async {
        let all = w.contracts(&w.bob, "bob", "spin:Receipt").await?;
        anyhow::Ok(all.iter().filter(|c| c.payload["note"] == "forged").count())
    };
    ensure!(
        forged_receipts().await? == 0,
        "bob's shard applied a verdict the rogue signed"
    );
    // The real verdict commits it, once.
    r.approve(request, &plan.root_hash, &["mallory"]).await?;
    let verdict = one_verdict(w, request).await?;
    ensure!(verdict.outcome == VerdictOutcome::Approve, "{verdict:?}");
    ordo_testkit::wait_for("bob's Receipt", PATIENCE, || async {
        (forged_receipts().await.ok()? == 1).then_some(())
    })
    .await?;
    println!("  a verdict from a non-mediator: ignored with an alarm; the real one applied once");
    Ok(())
}
