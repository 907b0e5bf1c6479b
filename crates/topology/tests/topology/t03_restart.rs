//! A restarted manager resumes from its database: state intact, nothing applied twice, and
//! a proposal written but never sent before the stop is sent after the restart.

use std::sync::Arc;

use anyhow::Result;
use ordo_core::{KeyPair, PartyId};
use ordo_proto::admin::v1 as pb;
use ordo_protocol::TopologyChange;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_and_sends_unsent_proposals_once() -> Result<()> {
    let net = Net::start(1).await?;
    let cfg = net.topology_config();
    let init = ordo_topology::init(&cfg).await?;
    let node = start_topology(cfg.clone()).await?;
    let mut c = admin(&node).await?;
    let mediator_key = Arc::new(KeyPair::generate());
    register_participant(&mut c, "p1", &KeyPair::generate(), "shard-1").await?;
    c.register_mediator(authed(pb::RegisterMediatorRequest {
        name: "mediator".into(),
        public_key: mediator_key.public().as_bytes().to_vec(),
    }))
    .await?;
    allocate(&mut c, "alice", "").await?;
    let (before, _) = topology(&mut c).await?;
    assert_eq!(before.serial, 6);
    node.stop().await?;

    // A proposal the previous run wrote but never sent (a crash right after the insert).
    let db = net.topology_db().await?;
    let change = TopologyChange::AllocateParty {
        party: PartyId::new("bob")?,
        shard: "shard-1".into(),
    };
    sqlx::query(
        "INSERT INTO topology_transactions (serial, kind, change, message_id, proposed_at)
         VALUES (7, 'allocate_party', $1::jsonb, 'topology-7', 0)",
    )
    .bind(serde_json::to_string(&change)?)
    .execute(&db)
    .await?;

    // Restart on the same database: `init` again is a no-op.
    let again = ordo_topology::init(&cfg).await?;
    assert!(!again.created);
    assert_eq!(again.member, init.member);
    let node = start_topology(cfg.clone()).await?;
    let mut c = admin(&node).await?;
    let (after, _) = topology(&mut c).await?;
    assert_eq!(
        after.serial, 7,
        "the pending proposal is applied before SERVING"
    );
    assert_eq!(after.shard_of(&PartyId::new("bob")?), Some("shard-1"));
    let mut expected = before.clone();
    expected
        .parties
        .insert(PartyId::new("bob")?, "shard-1".into());
    expected.serial = 7;
    expected.timestamp = after.timestamp;
    assert_eq!(after, expected, "state intact across the restart");
    assert_eq!(db_counts(&db).await?, (7, 0));

    // One more change after the restart; the sequenced history has every serial once.
    let carol = allocate(&mut c, "carol", "shard-1").await?;
    assert_eq!(carol.effect.unwrap().serial, 8);
    let mut follower = Follower::connect(
        net.endpoints(),
        "mediator",
        mediator_key,
        init.member.clone(),
    )
    .await?;
    follower.follow_until(8).await?;
    let serials: Vec<u64> = follower.seen.iter().map(|s| s.0).collect();
    assert_eq!(serials, (1..=8).collect::<Vec<_>>());
    let (now, _) = topology(&mut c).await?;
    assert_eq!(follower.state, now);

    // A second restart with nothing pending applies nothing again.
    node.stop().await?;
    let node = start_topology(cfg).await?;
    let mut c = admin(&node).await?;
    let (third, _) = topology(&mut c).await?;
    assert_eq!(third, now);
    let cursor: i64 = sqlx::query_scalar("SELECT cursor FROM topology_state")
        .fetch_one(&db)
        .await?;
    assert!(cursor >= now.timestamp.micros());
    assert_eq!(db_counts(&db).await?, (8, 0));
    node.stop().await?;
    Ok(())
}

/// A proposal the fold refuses (here: written by hand, naming an unknown shard) is
/// sequenced once, skipped by every member, and its serial is proposed again with a fresh
/// message id, so the manager does not get stuck on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proposal_frees_its_serial() -> Result<()> {
    let net = Net::start(1).await?;
    let cfg = net.topology_config();
    let init = ordo_topology::init(&cfg).await?;
    let node = start_topology(cfg.clone()).await?;
    let mut c = admin(&node).await?;
    let observer = Arc::new(KeyPair::generate());
    register_participant(&mut c, "observer", &observer, "shard-1").await?;
    node.stop().await?;

    let db = net.topology_db().await?;
    let bad = TopologyChange::AllocateParty {
        party: PartyId::new("bob")?,
        shard: "shard-9".into(),
    };
    sqlx::query(
        "INSERT INTO topology_transactions (serial, kind, change, message_id, proposed_at)
         VALUES (5, 'allocate_party', $1::jsonb, 'topology-5', 0)",
    )
    .bind(serde_json::to_string(&bad)?)
    .execute(&db)
    .await?;

    let node = start_topology(cfg).await?;
    let mut c = admin(&node).await?;
    let (state, _) = topology(&mut c).await?;
    assert_eq!(state.serial, 4);
    assert!(state.parties.is_empty());
    let refused: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT serial, message_id, reason FROM topology_refused")
            .fetch_all(&db)
            .await?;
    assert_eq!(refused.len(), 1);
    assert_eq!((refused[0].0, refused[0].1.as_str()), (5, "topology-5"));
    assert!(
        refused[0].2.contains("unknown shard shard-9"),
        "{}",
        refused[0].2
    );

    let bob = allocate(&mut c, "bob", "").await?;
    assert_eq!(bob.effect.unwrap().serial, 5);
    let id: String =
        sqlx::query_scalar("SELECT message_id FROM topology_transactions WHERE serial = 5")
            .fetch_one(&db)
            .await?;
    assert_eq!(id, "topology-5-2");

    let mut follower =
        Follower::connect(net.endpoints(), "observer", observer, init.member.clone()).await?;
    follower.follow_until(5).await?;
    assert_eq!(follower.refused.len(), 1);
    assert_eq!(follower.refused[0].0, 5);
    let (now, _) = topology(&mut c).await?;
    assert_eq!(follower.state, now);
    node.stop().await?;
    Ok(())
}
