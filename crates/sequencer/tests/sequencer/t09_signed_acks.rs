//! An acknowledgement moves the pruning bound only when the member's registered key signed
//! it, for this member and this timestamp: a stolen bearer token alone cannot get a member's
//! unread events pruned. The latest signature is stored with the acknowledgement.

use anyhow::Result;
use ordo_core::{KeyPair, PublicKey, Signature};
use ordo_proto::sequencer::v1 as pb;
use ordo_sequencer::SequencerError;
use ordo_sequencer::auth::ack_message;
use sqlx::PgPool;
use tonic::Code;

use crate::harness::*;

fn refused(res: Result<pb::AcknowledgeResponse, tonic::Status>, needle: &str) {
    match res {
        Ok(_) => panic!("an acknowledgement that should fail ({needle}) was accepted"),
        Err(s) => {
            assert_eq!(s.code(), Code::Unauthenticated, "{needle}: {}", s.message());
            assert!(
                s.message().contains(needle),
                "{:?} should mention {needle:?}",
                s.message()
            );
        }
    }
}

/// What ListMembers says `m` acknowledged.
async fn acknowledged(node: &Node, m: &Member) -> Result<i64> {
    let members = node
        .admin()
        .await?
        .list_members(with_token(pb::ListMembersRequest {}, ADMIN))
        .await?
        .into_inner()
        .members;
    members
        .iter()
        .find(|i| i.member == m.id)
        .map(|i| i.acknowledged)
        .ok_or_else(|| anyhow::anyhow!("{} is not listed", m.id))
}

/// The stored acknowledgement of `member` and its signature.
async fn stored(pool: &PgPool, member: &str) -> Result<(i64, Option<Vec<u8>>)> {
    Ok(sqlx::query_as(
        "SELECT acknowledged, acknowledged_signature FROM members WHERE member_id = $1",
    )
    .bind(member)
    .fetch_one(pool)
    .await?)
}

/// Checks that the stored signature proves `m` authorized the stored bound.
fn assert_proves(m: &Member, (acknowledged, signature): &(i64, Option<Vec<u8>>)) -> Result<()> {
    let signature = signature
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no signature stored for {}", m.id))?;
    let key = PublicKey::from_bytes(m.key.public().as_bytes())?;
    key.verify(
        &ack_message(&m.id, *acknowledged),
        &Signature::from_bytes(signature)?,
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledgements_need_the_members_signature() -> Result<()> {
    let net = start_net("signed_acks", 1).await?;
    let n = &net.nodes[0];
    let alice = member(n, "alice").await?;
    let bob = member(n, "bob").await?;
    let mut ts = Vec::new();
    for i in 0..3 {
        let sent = send(n, &bob, submission(&format!("m-{i}"), &[&alice.id], b"x")).await?;
        ts.push(sent.timestamp);
    }
    let pool = PgPool::connect(&net.url).await?;

    // Alice's token alone (a thief's view of alice) cannot acknowledge for her.
    let mut unsigned = signed_ack(&alice, ts[1]);
    unsigned.signature.clear();
    refused(acknowledge(n, &alice, unsigned).await, "not signed");
    let mut by_bob = signed_ack(&alice, ts[1]);
    by_bob.signature = bob
        .key
        .sign(&ack_message(&alice.id, ts[1]))
        .to_bytes()
        .to_vec();
    refused(acknowledge(n, &alice, by_bob).await, "does not verify");
    let mut by_stranger = signed_ack(&alice, ts[1]);
    by_stranger.signature = KeyPair::generate()
        .sign(&ack_message(&alice.id, ts[1]))
        .to_bytes()
        .to_vec();
    refused(acknowledge(n, &alice, by_stranger).await, "does not verify");
    // A real signature of alice's, replayed for a later timestamp.
    let mut replayed = signed_ack(&alice, ts[0]);
    replayed.timestamp = ts[2];
    refused(acknowledge(n, &alice, replayed).await, "does not verify");
    let mut truncated = signed_ack(&alice, ts[1]);
    truncated.signature.truncate(63);
    refused(acknowledge(n, &alice, truncated).await, "expected 64 bytes");
    assert_eq!(acknowledged(n, &alice).await?, 0, "a refused ack moved");
    assert_eq!(stored(&pool, &alice.id).await?, (0, None));

    // Signed by alice: it moves, and the stored signature proves she authorized it.
    acknowledge(n, &alice, signed_ack(&alice, ts[1])).await?;
    assert_eq!(acknowledged(n, &alice).await?, ts[1]);
    let proof = stored(&pool, &alice.id).await?;
    assert_eq!(proof.0, ts[1]);
    assert_proves(&alice, &proof)?;

    // An older one is accepted but changes neither the bound nor its proof.
    acknowledge(n, &alice, signed_ack(&alice, ts[0])).await?;
    assert_eq!(acknowledged(n, &alice).await?, ts[1]);
    assert_eq!(stored(&pool, &alice.id).await?, proof);
    // A refused one after a good one leaves both too.
    let mut replayed = signed_ack(&alice, ts[1]);
    replayed.timestamp = ts[2];
    refused(acknowledge(n, &alice, replayed).await, "does not verify");
    assert_eq!(stored(&pool, &alice.id).await?, proof);

    acknowledge(n, &alice, signed_ack(&alice, ts[2])).await?;
    assert_eq!(acknowledged(n, &alice).await?, ts[2]);
    let proof = stored(&pool, &alice.id).await?;
    assert_eq!(proof.0, ts[2]);
    assert_proves(&alice, &proof)?;
    assert_eq!(acknowledged(n, &bob).await?, 0, "bob never acknowledged");

    pool.close().await;
    for n in net.nodes {
        n.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_upgrades_a_schema_1_database() -> Result<()> {
    let net = start_net("ack_upgrade", 1).await?;
    let alice = member(&net.nodes[0], "alice").await?;
    let bob = member(&net.nodes[0], "bob").await?;
    let at = send(&net.nodes[0], &bob, submission("m", &[&alice.id], b"x"))
        .await?
        .timestamp;
    for n in net.nodes {
        n.stop().await?;
    }
    // Back to what a schema-1 node left: no signature column, an unsigned acknowledgement.
    let pool = PgPool::connect(&net.url).await?;
    for statement in [
        "ALTER TABLE members DROP COLUMN acknowledged_signature",
        "DELETE FROM _sqlx_migrations WHERE version = 2",
        "UPDATE seq_meta SET schema_version = 1",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    sqlx::query("UPDATE members SET acknowledged = $1 WHERE member_id = $2")
        .bind(at)
        .bind(&alice.id)
        .execute(&pool)
        .await?;

    let cfg = config(&net.url, "seq-0");
    let listeners = ordo_sequencer::Listeners::bind(&cfg).await?;
    let err = ordo_sequencer::run(cfg.clone(), listeners, std::future::pending())
        .await
        .expect_err("a schema-1 database must be refused");
    assert!(
        matches!(
            err,
            SequencerError::SchemaVersion {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!ordo_sequencer::init(&cfg).await?.created);
    let node = start_node(&net.url, "seq-0").await?;
    assert_eq!(stored(&pool, &alice.id).await?, (at, None));

    // Tokens survive the upgrade (same secret); a signed acknowledgement of the same
    // timestamp supplies the proof the unsigned one lacked.
    acknowledge(&node, &alice, signed_ack(&alice, at)).await?;
    let proof = stored(&pool, &alice.id).await?;
    assert_eq!(proof.0, at);
    assert_proves(&alice, &proof)?;

    pool.close().await;
    node.stop().await?;
    Ok(())
}
