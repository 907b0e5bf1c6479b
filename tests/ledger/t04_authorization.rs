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
        ordo_participant::auth::expiry_in(std::time::Duration::from_secs(3600)),
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

/// A token that is not yet valid is refused; a live update stream and a completion stream
/// opened with a token that then expires end within a second of its expiry, with
/// UNAUTHENTICATED saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_when_their_token_expires() -> Result<()> {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use ordo_participant::auth::{LedgerClaims, mint_hs256};
    use ordo_proto::ledger::v1 as pb;

    let net = LedgerNet::with_parties("t04e", &[("bank", 0)]).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = LedgerClaims {
        act_as: vec!["bank".into()],
        application_id: Some(APP.into()),
        ..Default::default()
    };

    // `nbf` an hour ahead: not valid yet.
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "actAs": ["bank"], "nbf": now + 3600, "exp": now + 7200 }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )?;
    let refused = net
        .updates_client(0)
        .get_updates(with_token(updates_of("bank"), &early))
        .await
        .expect_err("a token not valid yet opened a stream");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("not valid yet"), "{refused:?}");

    // Expiring in three seconds (whole seconds since the epoch).
    let exp = now + 3;
    let token = mint_hs256(JWT_SECRET, &claims, exp);
    let mut updates = net
        .updates_client(0)
        .get_updates(with_token(updates_of("bank"), &token))
        .await?
        .into_inner();
    let mut completions =
        pb::command_completion_service_client::CommandCompletionServiceClient::new(net.channel(0))
            .completion_stream(with_token(
                pb::CompletionStreamRequest {
                    application_id: APP.into(),
                    parties: vec!["bank".into()],
                    begin_exclusive: 0,
                },
                &token,
            ))
            .await?
            .into_inner();
    let expiry = UNIX_EPOCH + Duration::from_secs(exp);
    for (what, ended) in [
        ("updates", drain(&mut updates).await),
        ("completions", drain(&mut completions).await),
    ] {
        let (status, at) = ended;
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(status.message().contains("expired"), "{what}: {status:?}");
        let late = at.duration_since(expiry).unwrap_or_default();
        let early = expiry.duration_since(at).unwrap_or_default();
        assert!(
            late <= Duration::from_secs(1) && early.is_zero(),
            "{what} ended {late:?} after / {early:?} before the expiry"
        );
    }
    Ok(())
}

fn updates_of(party: &str) -> ordo_proto::ledger::v1::GetUpdatesRequest {
    ordo_proto::ledger::v1::GetUpdatesRequest {
        begin_exclusive: 0,
        end_inclusive: 0,
        filter: Some(ordo_proto::ledger::v1::TransactionFilter {
            parties: vec![party.into()],
            template_ids: vec![],
        }),
        shape: ordo_proto::ledger::v1::UpdateShape::Flat as i32,
    }
}

/// Reads `stream` to its end (at most 10 s): the status it ended with, and when.
async fn drain<T>(stream: &mut tonic::Streaming<T>) -> (tonic::Status, std::time::SystemTime) {
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Status::ok("ended without an error"),
                Err(status) => return status,
            }
        }
    })
    .await
    .unwrap_or_else(|_| tonic::Status::deadline_exceeded("still open after 10 s"));
    (ended, std::time::SystemTime::now())
}
