//! Every bad input gets its precise status, and nothing is written.

use anyhow::Result;
use ordo_core::KeyPair;
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_auth_service_client::SequencerAuthServiceClient;
use tonic::Code;

use crate::harness::*;

fn expect(res: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    match res {
        Ok(v) => panic!("expected {code:?} ({needle}), got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{needle}: {}", s.message());
            assert!(
                s.message().contains(needle),
                "{:?} should mention {needle:?}",
                s.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_sends_are_rejected_and_write_nothing() -> Result<()> {
    let net = start_net("badinput", 1).await?;
    let n = &net.nodes[0];
    let alice = member(n, "alice").await?;
    let bob = member(n, "bob").await?;
    let dave = member(n, "dave").await?;
    send(n, &alice, submission("ok-1", &[&bob.id], b"x")).await?;
    let before = status(n).await?.events;
    let good = || submission("m-1", &[&bob.id], b"x");
    let mut seq = n.seq().await?;

    expect(
        seq.send(good()).await,
        Code::Unauthenticated,
        "authorization",
    );
    expect(
        seq.send(with_token(good(), "garbage")).await,
        Code::Unauthenticated,
        "token",
    );
    let mut r = good();
    r.sender = bob.id.clone();
    expect(send(n, &alice, r).await, Code::PermissionDenied, &bob.id);
    expect(
        send(n, &alice, submission("big", &[&bob.id], &vec![0u8; 70_000])).await,
        Code::ResourceExhausted,
        "max_request_bytes",
    );
    expect(
        send(n, &alice, submission("", &[&bob.id], b"x")).await,
        Code::InvalidArgument,
        "message_id",
    );
    let mut r = good();
    r.envelopes.clear();
    expect(send(n, &alice, r).await, Code::InvalidArgument, "envelopes");
    expect(
        send(n, &alice, submission("m", &[], b"x")).await,
        Code::InvalidArgument,
        "envelopes[0].recipients",
    );
    let mut r = good();
    r.envelopes[0].recipients = None;
    expect(
        send(n, &alice, r).await,
        Code::InvalidArgument,
        "envelopes[0].recipients",
    );
    expect(
        send(n, &alice, submission("m", &["nope"], b"x")).await,
        Code::InvalidArgument,
        "envelopes[0].recipients.members[0]",
    );
    let ghost = ordo_core::MemberId::new("ghost", &KeyPair::generate().public())?.to_string();
    expect(
        send(n, &alice, submission("m", &[&ghost], b"x")).await,
        Code::NotFound,
        &ghost,
    );
    let mut r = good();
    r.max_sequencing_time = 1;
    expect(
        send(n, &alice, r).await,
        Code::FailedPrecondition,
        "max_sequencing_time 1",
    );

    // Disabled members can be neither recipients nor authenticated.
    let mut admin = n.admin().await?;
    admin
        .disable_member(with_token(
            pb::DisableMemberRequest {
                member: dave.id.clone(),
            },
            ADMIN,
        ))
        .await?;
    expect(
        send(n, &alice, submission("m", &[&dave.id], b"x")).await,
        Code::NotFound,
        &dave.id,
    );
    expect(
        send(n, &dave, good()).await,
        Code::Unauthenticated,
        &dave.id,
    );
    let mut auth = SequencerAuthServiceClient::new(n.channel().await?);
    expect(
        auth.challenge(pb::ChallengeRequest {
            member: dave.id.clone(),
        })
        .await,
        Code::NotFound,
        &dave.id,
    );
    expect(
        auth.challenge(pb::ChallengeRequest {
            member: ghost.clone(),
        })
        .await,
        Code::NotFound,
        &ghost,
    );
    let ch = auth
        .challenge(pb::ChallengeRequest {
            member: alice.id.clone(),
        })
        .await?
        .into_inner();
    let wrong = KeyPair::generate().sign(&ordo_sequencer::auth::signed_message(&ch.challenge));
    let bad = pb::AuthenticateRequest {
        member: alice.id.clone(),
        challenge: ch.challenge.clone(),
        signature: wrong.to_bytes().to_vec(),
    };
    expect(
        auth.authenticate(bad).await,
        Code::Unauthenticated,
        "signature",
    );
    let sig = alice
        .key
        .sign(&ordo_sequencer::auth::signed_message(&ch.challenge));
    let other = pb::AuthenticateRequest {
        member: bob.id.clone(),
        challenge: ch.challenge,
        signature: sig.to_bytes().to_vec(),
    };
    expect(
        auth.authenticate(other).await,
        Code::Unauthenticated,
        "challenge",
    );

    // Subscribing / acknowledging as someone else, or past the head.
    let sub = pb::SubscribeRequest {
        member: bob.id.clone(),
        after_timestamp: 0,
        heartbeat_interval_ms: 0,
    };
    expect(
        seq.subscribe(with_token(sub, &alice.token))
            .await
            .map(|_| ()),
        Code::PermissionDenied,
        &bob.id,
    );
    // Bob's own signature does not let alice's token acknowledge for him.
    expect(
        acknowledge(n, &alice, signed_ack(&bob, 1)).await,
        Code::PermissionDenied,
        &bob.id,
    );
    expect(
        acknowledge(n, &alice, signed_ack(&alice, i64::MAX)).await,
        Code::InvalidArgument,
        "timestamp",
    );
    expect(
        acknowledge(n, &alice, signed_ack(&alice, -1)).await,
        Code::InvalidArgument,
        "timestamp",
    );

    // Admin authentication and registration input.
    expect(
        admin.status(pb::StatusRequest {}).await,
        Code::Unauthenticated,
        "admin",
    );
    expect(
        admin
            .status(with_token(pb::StatusRequest {}, "wrong"))
            .await,
        Code::Unauthenticated,
        "admin token",
    );
    let reg = |name: &str, key: Vec<u8>| {
        with_token(
            pb::RegisterMemberRequest {
                name: name.into(),
                public_key: key,
            },
            ADMIN,
        )
    };
    expect(
        admin.register_member(reg("x", vec![1, 2, 3])).await,
        Code::InvalidArgument,
        "public_key",
    );
    expect(
        admin
            .register_member(reg(
                "Bad Name",
                KeyPair::generate().public().as_bytes().to_vec(),
            ))
            .await,
        Code::InvalidArgument,
        "name",
    );
    let again = admin
        .register_member(reg("alice", alice.key.public().as_bytes().to_vec()))
        .await?
        .into_inner();
    assert_eq!(
        (again.member.as_str(), again.created),
        (alice.id.as_str(), false)
    );

    assert_eq!(
        status(n).await?.events,
        before,
        "a rejected request wrote something"
    );

    // A batch answers each request; only the valid one is written.
    let batch = pb::SendBatchRequest {
        requests: vec![
            good(),
            submission("m-2", &[&ghost], b"x"),
            submission("", &[&bob.id], b"x"),
        ],
    };
    let results = seq
        .send_batch(with_token(batch, &alice.token))
        .await?
        .into_inner()
        .results;
    let codes: Vec<i32> = results
        .iter()
        .map(|r| match &r.outcome {
            Some(pb::send_result::Outcome::Sequenced(_)) => 0,
            Some(pb::send_result::Outcome::Error(e)) => e.code,
            None => -1,
        })
        .collect();
    assert_eq!(
        codes,
        vec![0, Code::NotFound as i32, Code::InvalidArgument as i32]
    );
    assert_eq!(status(n).await?.events, before + 1);

    // A node without an admin token has the admin API disabled.
    let mut cfg = config(&net.url, "no-admin");
    cfg.admin_token.clear();
    let plain = start_node_with(cfg).await?;
    let resp = plain
        .admin()
        .await?
        .status(with_token(pb::StatusRequest {}, ADMIN))
        .await;
    expect(resp, Code::FailedPrecondition, "admin API disabled");
    plain.stop().await?;
    for n in net.nodes {
        n.stop().await?;
    }
    Ok(())
}
