//! Authorization: the ledger model's rules and the token's rights; nothing changes on a
//! refusal.

use anyhow::Result;
use serde_json::json;
use tonic::Code;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_commands_are_refused_and_change_nothing() -> Result<()> {
    let net = LedgerNet::with_parties("t04", &[("bank", 0), ("alice", 0), ("bob", 1)]).await?;
    let alices = net.issue("bank", "alice", "EUR", "10.00").await?;
    let bobs = net.issue("bank", "bob", "EUR", "20.00").await?;
    let tx = net
        .submit(
            "alice",
            create(
                "iou:SwapProposal",
                json!({
                    "proposer": "alice", "counterparty": "bob", "offeredCid": alices,
                    "wantedIssuer": "bank", "wantedCurrency": "EUR", "wantedAmount": "20.00"
                }),
            ),
        )
        .await?;
    let proposal = created(&tx)[0].contract_id.clone();
    let ends = vec![3, 2];
    net.wait_ledger_ends(&ends).await?;
    let acs_alice = net.acs("alice").await?;
    let acs_bob = net.acs("bob").await?;

    // alice exercises bob's choice (Accept's controller is the counterparty, bob) on a
    // contract she sees: the ledger's authorization error, naming the missing party.
    let accept = exercise(
        "iou:SwapProposal",
        &proposal,
        "Accept",
        json!({ "counterCid": bobs }),
    );
    assert_status(
        net.submit("alice", accept).await,
        Code::PermissionDenied,
        &["bob", "Accept"],
    );

    // alice transfers bob's Iou (stored on shard-1 for the bank, but alice is no
    // stakeholder): not visible to her.
    assert_status(
        net.transfer("alice", &bobs, "alice").await,
        Code::NotFound,
        &[&bobs],
    );

    // A create whose signatory (the issuer, bank) is not in act_as.
    assert_status(
        net.submit("alice", create_iou("bank", "alice", "EUR", "1000000.00"))
            .await,
        Code::PermissionDenied,
        &["bank", "alice"],
    );

    // A token that does not carry the acting party.
    let as_bank = net.commands_for("bank", create_iou("bank", "alice", "EUR", "5.00"));
    assert_status(
        net.submit_raw(0, &token(&["alice"]), as_bank.clone()).await,
        Code::PermissionDenied,
        &["bank"],
    );
    // A reader's token cannot submit at all.
    assert_status(
        net.submit_raw(0, &reader_token(&["bank"]), as_bank.clone())
            .await,
        Code::PermissionDenied,
        &["bank"],
    );
    // No token, or one signed with another secret: UNAUTHENTICATED.
    let mut commands = net.commands(0);
    let e = commands
        .submit_and_wait(ordo_proto::ledger::v1::SubmitAndWaitRequest {
            commands: Some(as_bank.clone()),
        })
        .await;
    assert_status(e, Code::Unauthenticated, &[]);
    let forged = ordo_participant::auth::mint_hs256(
        "another-secret-of-some-length",
        &ordo_participant::auth::LedgerClaims {
            act_as: vec!["bank".into()],
            ..Default::default()
        },
        None,
    );
    assert_status(
        net.submit_raw(0, &forged, as_bank).await,
        Code::Unauthenticated,
        &[],
    );
    // Reading another party's contracts.
    let e = net
        .state(1)
        .get_active_contracts(with_token(
            ordo_proto::ledger::v1::GetActiveContractsRequest {
                filter: Some(ordo_proto::ledger::v1::TransactionFilter {
                    parties: vec!["bob".into()],
                    template_ids: vec![],
                }),
            },
            &token(&["alice"]),
        ))
        .await;
    assert_status(e.map(|_| ()), Code::PermissionDenied, &["bob"]);
    // Submitting for a party on the other shard.
    let bob_on_shard1 = net.commands_for(
        "bob",
        exercise("iou:Iou", &bobs, "Transfer", json!({"newOwner": "alice"})),
    );
    assert_status(
        net.submit_raw(0, &token(&["bob"]), bob_on_shard1).await,
        Code::FailedPrecondition,
        &["bob", "shard-2"],
    );

    // Nothing changed anywhere.
    assert_eq!(net.ledger_ends().await?, ends);
    assert_eq!(net.acs("alice").await?, acs_alice);
    assert_eq!(net.acs("bob").await?, acs_bob);
    Ok(())
}
