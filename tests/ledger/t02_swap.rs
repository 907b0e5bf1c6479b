//! Atomic swaps of Ious across shards through `SwapProposal`/`Accept`.

use anyhow::{Context, Result};
use serde_json::json;

use crate::common::*;
use ordo_proto::ledger::v1 as pb;

const PARTIES: &[(&str, usize)] = &[("bank", 0), ("alice", 0), ("bank2", 1), ("bob", 1)];

/// alice proposes to swap her Iou `offered` for `wanted_amount` USD of bank2; returns the
/// proposal's contract id.
async fn propose(net: &LedgerNet, offered: &str, wanted_amount: &str) -> Result<String> {
    let tx = net
        .submit(
            "alice",
            create(
                "iou:SwapProposal",
                json!({
                    "proposer": "alice", "counterparty": "bob", "offeredCid": offered,
                    "wantedIssuer": "bank2", "wantedCurrency": "USD", "wantedAmount": wanted_amount
                }),
            ),
        )
        .await
        .map_err(|s| anyhow::anyhow!("proposing: {s:?}"))?;
    Ok(created(&tx)
        .first()
        .context("the proposal was not created")?
        .contract_id
        .clone())
}

/// Everything the four parties see: (ious per party, ledger ends).
async fn snapshot(net: &LedgerNet) -> Result<(Vec<Vec<Contract>>, Vec<i64>)> {
    let mut all = Vec::new();
    for (party, _) in PARTIES {
        all.push(net.acs(party).await?);
    }
    Ok((all, net.ledger_ends().await?))
}

/// What alice's application hands bob's off-ledger: her offered Iou, exactly as her
/// active contracts show it, for bob to pass along as a disclosed contract.
async fn disclose(net: &LedgerNet, offered: &str) -> Result<pb::DisclosedContract> {
    let iou = net
        .ious("alice")
        .await?
        .into_iter()
        .find(|c| c.contract_id == offered)
        .context("alice sees her offered Iou")?;
    Ok(pb::DisclosedContract {
        contract_id: iou.contract_id,
        template_id: iou.template_id,
        create_arguments_json: iou.payload.to_string(),
        signatories: iou.signatories,
        observers: iou.observers,
    })
}

/// bob accepts `proposal` with `counter`, on his own rights only (actAs bob, no readAs),
/// passing `disclosed` along.
async fn accept_disclosed(
    net: &LedgerNet,
    proposal: &str,
    counter: &str,
    disclosed: Vec<pb::DisclosedContract>,
) -> Result<pb::Transaction, tonic::Status> {
    let mut commands = net.commands_for(
        "bob",
        exercise(
            "iou:SwapProposal",
            proposal,
            "Accept",
            json!({ "counterCid": counter }),
        ),
    );
    commands.disclosed_contracts = disclosed;
    net.submit_raw(net.shard_of("bob"), &token(&["bob"]), commands)
        .await
}

/// The swap as the shipped iou.toml documents it: bob accepts with his own rights only.
/// The offered Iou (bank/alice) lives on shard-1 only and bob is not a stakeholder of it,
/// so alice's application hands it to bob's, which passes it as a disclosed contract; the
/// participants of bank and alice check it against their copies. Both Ious change owners
/// in one transaction on both shards; a mismatching counter Iou changes nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_swap_with_counterparty_rights_only() -> Result<()> {
    let net = LedgerNet::with_parties("t02a", PARTIES).await?;
    let offered = net.issue("bank", "alice", "EUR", "100.00").await?;
    let counter = net.issue("bank2", "bob", "USD", "50.00").await?;
    let small = net.issue("bank2", "bob", "USD", "10.00").await?;
    let proposal = propose(&net, &offered, "50.00").await?;
    net.wait_ledger_ends(&[2, 3]).await?;
    let disclosed = disclose(&net, &offered).await?;

    // Without the disclosure bob's participant does not know the offered Iou.
    assert_status(
        accept_disclosed(&net, &proposal, &counter, vec![]).await,
        tonic::Code::NotFound,
        &[&offered],
    );

    let before = snapshot(&net).await?;
    let wrong = accept_disclosed(&net, &proposal, &small, vec![disclosed.clone()]).await;
    assert_status(
        wrong,
        tonic::Code::FailedPrecondition,
        &[
            "the counter IOU must be 50 USD issued by bank2",
            "got 10 USD",
        ],
    );
    assert_eq!(
        snapshot(&net).await?,
        before,
        "a rejected swap changes nothing anywhere"
    );

    let tx = accept_disclosed(&net, &proposal, &counter, vec![disclosed])
        .await
        .map_err(|s| anyhow::anyhow!("bob accepting the swap: {s:?}"))?;
    assert!(archived(&tx).contains(&counter.as_str()));
    assert!(archived(&tx).contains(&proposal.as_str()));
    net.wait_ledger_ends(&[before.1[0] + 1, before.1[1] + 1])
        .await?;

    let owners = |ious: Vec<Contract>| -> Vec<(String, String, String, String)> {
        let mut v: Vec<_> = ious
            .iter()
            .map(|c| {
                (
                    c.field("issuer").to_owned(),
                    c.field("owner").to_owned(),
                    c.field("currency").to_owned(),
                    c.field("amount").to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let iou = |issuer: &str, owner: &str, currency: &str, amount: &str| {
        (
            issuer.to_owned(),
            owner.to_owned(),
            currency.to_owned(),
            amount.to_owned(),
        )
    };
    assert_eq!(
        owners(net.ious("alice").await?),
        vec![iou("bank2", "alice", "USD", "50")]
    );
    assert_eq!(
        owners(net.ious("bob").await?),
        vec![
            iou("bank", "bob", "EUR", "100"),
            iou("bank2", "bob", "USD", "10")
        ]
    );
    assert_eq!(
        owners(net.ious("bank").await?),
        vec![iou("bank", "bob", "EUR", "100")]
    );
    assert_eq!(
        owners(net.ious("bank2").await?),
        vec![
            iou("bank2", "alice", "USD", "50"),
            iou("bank2", "bob", "USD", "10")
        ]
    );
    for party in ["alice", "bob"] {
        assert!(
            net.acs(party)
                .await?
                .iter()
                .all(|c| c.template_id != "iou:SwapProposal"),
            "{party} still sees the proposal"
        );
    }
    // The one transaction, under one id, on both shards.
    let on1 = net.updates_on(0, &["alice", "bank"]).await?;
    let on1 = find_tx(&on1, &tx.update_id).context("shard-1 has the swap")?;
    assert!(archived(on1).contains(&offered.as_str()));
    let on2 = net.updates_on(1, &["bob", "bank2"]).await?;
    let on2 = find_tx(&on2, &tx.update_id).context("shard-2 has the swap")?;
    assert!(archived(on2).contains(&counter.as_str()));
    Ok(())
}

/// A disclosure bob forged (alice's offered Iou with another amount) passes bob's
/// participant, which does not store the Iou, but the participant of bank and alice
/// compares it with its copy and rejects: nothing is committed anywhere, and the genuine
/// disclosure then still works. Disclosures that do not follow from their template are
/// refused at submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_disclosure_is_rejected_and_changes_nothing() -> Result<()> {
    let net = LedgerNet::with_parties("t02f", PARTIES).await?;
    let offered = net.issue("bank", "alice", "EUR", "100.00").await?;
    let counter = net.issue("bank2", "bob", "USD", "50.00").await?;
    let proposal = propose(&net, &offered, "50.00").await?;
    net.wait_ledger_ends(&[2, 2]).await?;
    let genuine = disclose(&net, &offered).await?;

    // Ill-formed disclosures: refused before anything is sent, naming the contract.
    let mut ill_typed = genuine.clone();
    ill_typed.create_arguments_json = json!({
        "issuer": "bank", "owner": "alice", "currency": "EUR", "amount": "lots"
    })
    .to_string();
    let mut wrong_parties = genuine.clone();
    wrong_parties.observers = vec!["bob".into()];
    let mut too_few_signatories = genuine.clone();
    too_few_signatories.signatories = vec!["alice".into()];
    too_few_signatories.observers = vec![];
    for bad in [ill_typed, wrong_parties, too_few_signatories] {
        assert_status(
            accept_disclosed(&net, &proposal, &counter, vec![bad]).await,
            tonic::Code::InvalidArgument,
            &[&offered, "disclosed contract"],
        );
    }

    let before = snapshot(&net).await?;
    let mut forged = genuine.clone();
    forged.create_arguments_json = json!({
        "issuer": "bank", "owner": "alice", "currency": "EUR", "amount": "1000000.00"
    })
    .to_string();
    let rejected = accept_disclosed(&net, &proposal, &counter, vec![forged]).await;
    assert_status(
        rejected,
        tonic::Code::FailedPrecondition,
        &[&format!(
            "contract {offered} does not match the stored contract"
        )],
    );
    assert_eq!(
        snapshot(&net).await?,
        before,
        "a forged disclosure changes nothing anywhere"
    );

    // Nothing stayed locked: the genuine disclosure goes through.
    accept_disclosed(&net, &proposal, &counter, vec![genuine])
        .await
        .map_err(|s| anyhow::anyhow!("accepting with the genuine disclosure: {s:?}"))?;
    net.wait_ledger_ends(&[before.1[0] + 1, before.1[1] + 1])
        .await?;
    let alice = net.ious("alice").await?;
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0].field("issuer"), "bank2");
    Ok(())
}

/// A cross-shard swap: the offered Iou is bank2's (shard-2) to alice (shard-1), the counter
/// Iou bank's (shard-1) to bob (shard-2); bob accepts on shard-2 with the right to read as
/// alice (so his participant may use alice's Iou, which shard-2 stores for bank2). Both
/// Ious change owners in one transaction on both shards; a mismatching counter Iou is
/// rejected and changes nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_across_shards_is_atomic_and_a_mismatch_changes_nothing() -> Result<()> {
    let net = LedgerNet::with_parties("t02", PARTIES).await?;
    let offered = net.issue("bank2", "alice", "USD", "50.00").await?;
    let counter = net.issue("bank", "bob", "EUR", "100.00").await?;
    let small = net.issue("bank", "bob", "EUR", "10.00").await?;

    // A proposal wanting 100 EUR of bank: bob's 10 EUR Iou does not match.
    let tx = net
        .submit(
            "alice",
            create(
                "iou:SwapProposal",
                json!({
                    "proposer": "alice", "counterparty": "bob", "offeredCid": offered,
                    "wantedIssuer": "bank", "wantedCurrency": "EUR", "wantedAmount": "100.00"
                }),
            ),
        )
        .await?;
    let proposal = created(&tx)[0].contract_id.clone();
    // Three issues and the proposal, each on both shards.
    net.wait_ledger_ends(&[4, 4]).await?;
    let before = snapshot(&net).await?;

    let accept =
        |counter_cid: &str, command_id: &str| pb_accept(&net, &proposal, counter_cid, command_id);
    let bob_reads_alice = {
        use ordo_participant::auth::{LedgerClaims, mint_hs256};
        mint_hs256(
            JWT_SECRET,
            &LedgerClaims {
                act_as: vec!["bob".into()],
                read_as: vec!["alice".into()],
                ..Default::default()
            },
            ordo_participant::auth::expiry_in(std::time::Duration::from_secs(3600)),
        )
    };

    let wrong = net
        .submit_raw(1, &bob_reads_alice, accept(&small, "accept-wrong"))
        .await;
    assert_status(
        wrong,
        tonic::Code::FailedPrecondition,
        &[
            "iou:SwapProposal",
            "Accept",
            "the counter IOU must be 100 EUR issued by bank",
            "got 10 EUR",
        ],
    );
    assert_eq!(
        snapshot(&net).await?,
        before,
        "a rejected swap changes nothing anywhere"
    );

    let tx = net
        .submit_raw(1, &bob_reads_alice, accept(&counter, "accept-right"))
        .await
        .map_err(|s| anyhow::anyhow!("accepting (offered {offered}, counter {counter}): {s:?}"))?;
    // One update on each shard.
    net.wait_ledger_ends(&[before.1[0] + 1, before.1[1] + 1])
        .await?;

    // Both Ious changed owners, on both shards.
    let alice = net.ious("alice").await?;
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(
        (
            alice[0].field("issuer"),
            alice[0].field("currency"),
            alice[0].field("owner")
        ),
        ("bank", "EUR", "alice")
    );
    let bob = net.ious("bob").await?;
    let mut bob_view: Vec<(&str, &str, &str)> = bob
        .iter()
        .map(|c| (c.field("issuer"), c.field("currency"), c.field("owner")))
        .collect();
    bob_view.sort();
    assert_eq!(
        bob_view,
        vec![("bank", "EUR", "bob"), ("bank2", "USD", "bob")],
        "bob keeps his small Iou and gets bank2's"
    );
    assert!(bob.iter().all(|c| c.contract_id != counter));
    let bank = net.ious("bank").await?;
    assert!(bank.iter().any(|c| c.contract_id == alice[0].contract_id));
    assert!(bank.iter().all(|c| c.contract_id != counter));
    let bank2 = net.ious("bank2").await?;
    assert_eq!(bank2.len(), 1);
    assert_eq!(bank2[0].field("owner"), "bob");
    assert!(
        net.acs("alice")
            .await?
            .iter()
            .all(|c| c.template_id != "iou:SwapProposal")
    );
    assert!(
        net.acs("bob")
            .await?
            .iter()
            .all(|c| c.template_id != "iou:SwapProposal")
    );

    // The one transaction, under one id, on both shards.
    let shard1 = net.updates_on(0, &["alice", "bank"]).await?;
    let shard2 = net.updates_on(1, &["bob", "bank2"]).await?;
    let on1 = find_tx(&shard1, &tx.update_id).context("shard-1 has the swap")?;
    let on2 = find_tx(&shard2, &tx.update_id).context("shard-2 has the swap")?;
    assert!(archived(on1).contains(&counter.as_str()));
    assert!(archived(on2).contains(&offered.as_str()));
    assert!(archived(on1).contains(&proposal.as_str()));
    assert!(archived(on2).contains(&proposal.as_str()));
    Ok(())
}

fn pb_accept(
    net: &LedgerNet,
    proposal: &str,
    counter: &str,
    what: &str,
) -> ordo_proto::ledger::v1::Commands {
    net.commands_for(
        "bob",
        exercise(
            "iou:SwapProposal",
            proposal,
            "Accept",
            json!({ "counterCid": counter }),
        ),
    )
    .tap_id(what)
}

/// Names the command and lets it read as alice (whose offered Iou bob's shard stores
/// for its issuer bank2).
trait TapId {
    fn tap_id(self, what: &str) -> Self;
}

impl TapId for ordo_proto::ledger::v1::Commands {
    fn tap_id(mut self, what: &str) -> Self {
        self.command_id = format!("{}-{what}", self.command_id);
        self.read_as = vec!["alice".into()];
        self
    }
}
