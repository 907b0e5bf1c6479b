//! Active-passive replicas on one database: exactly one serves and bootstraps; a passive
//! one answers every admin call UNAVAILABLE naming the active one; a crashed active is
//! replaced by a replica that resumes from the database (no second bootstrap); a step-down
//! and a graceful stop hand the lease over at once. A member folding the broadcasts sees
//! every serial once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ordo_core::{KeyPair, MemberId};
use ordo_lease::holder_name;
use ordo_proto::admin::v1 as pb;
use ordo_testkit::wait_for;
use tonic::Code;

use crate::harness::*;

const STEP_DOWN_TOKEN: &str = "topology-step-down";

/// Every admin call, read or change, on `node`: each must answer UNAVAILABLE naming
/// `active`.
async fn assert_all_unavailable(node: &ReplicaNode, active: &str) -> Result<()> {
    let mut c = node.admin().await?;
    let key = KeyPair::generate();
    let answers = [
        c.get_topology(authed(pb::GetTopologyRequest {}))
            .await
            .map(|_| ()),
        c.list_parties(authed(pb::ListPartiesRequest::default()))
            .await
            .map(|_| ()),
        c.list_shards(authed(pb::ListShardsRequest {}))
            .await
            .map(|_| ()),
        register_participant(&mut c, "p9", &key, "shard-9")
            .await
            .map(|_| ()),
        allocate(&mut c, "zoe", "").await.map(|_| ()),
    ];
    for answer in answers {
        let status = answer.expect_err("a passive replica must not serve");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            ordo_proto::errors::is(&status, ordo_proto::errors::PASSIVE_REPLICA),
            "{status:?}"
        );
        assert!(
            status.message().contains("passive") && status.message().contains(active),
            "{}",
            status.message()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_fail_over_and_hand_over_without_a_second_bootstrap() -> Result<()> {
    let net = Net::start(1).await?;
    let cfg = net.topology_config();
    let init = ordo_topology::init(&cfg).await?;
    let token_file = net.dir.path().join("step-down.token");
    ordo_testkit::write_secret(&token_file, STEP_DOWN_TOKEN)?;
    let a = ReplicaNode::start(&cfg, "topology-a", Some(token_file.clone())).await?;
    let b = ReplicaNode::start(&cfg, "topology-b", Some(token_file.clone())).await?;
    let (active, passive) = match one_serving(&[&a, &b]).await? {
        0 => (a, b),
        _ => (b, a),
    };
    assert!(!passive.serving().await, "only the lease holder serves");
    assert_eq!(passive.status().await?.role, "passive");
    assert_all_unavailable(&passive, &active.name).await?;
    // Unauthenticated calls are refused as such, passive or not.
    let mut cp = passive.admin().await?;
    let status = cp
        .get_topology(with_token(pb::GetTopologyRequest {}, "wrong"))
        .await
        .expect_err("wrong token");
    assert_eq!(status.code(), Code::Unauthenticated);

    // The active one bootstrapped and serves.
    let mut c = active.admin().await?;
    let (state, _) = topology(&mut c).await?;
    assert_eq!(state.serial, 3);
    let k1 = Arc::new(KeyPair::generate());
    let r1 = register_participant(&mut c, "p1", &k1, "shard-1").await?;
    assert_eq!(r1.effect.unwrap().serial, 4);
    let first_token = active.status().await?.token;
    active.crash();

    // The passive replica takes over from the database: p1 is there, nothing is
    // bootstrapped again, and changes go on with the next serial.
    wait_for(
        "the passive replica serving",
        Duration::from_secs(20),
        || async { passive.serving().await.then_some(()) },
    )
    .await?;
    let status = passive.status().await?;
    assert_eq!(status.role, "active");
    assert!(status.token > first_token, "{status:?}");
    let mut c = passive.admin().await?;
    let (state, _) = topology(&mut c).await?;
    assert_eq!(state.serial, 4);
    assert!(
        state
            .members
            .contains_key(&MemberId::new("p1", &k1.public())?)
    );
    let k2 = KeyPair::generate();
    let r2 = register_participant(&mut c, "p2", &k2, "shard-2").await?;
    assert_eq!(r2.effect.unwrap().serial, 5);
    let alice = allocate(&mut c, "alice", "").await?;
    assert_eq!(
        (alice.shard.as_str(), alice.effect.unwrap().serial),
        ("shard-1", 6)
    );
    let db = net.topology_db().await?;
    assert_eq!(
        db_counts(&db).await?,
        (6, 0),
        "one bootstrap, nothing pending"
    );

    // A step-down hands over to a third replica; the old active stays up, passive, and
    // names the new one.
    let c3 = ReplicaNode::start(&cfg, "topology-c", Some(token_file)).await?;
    let (status, message) = passive.step_down(STEP_DOWN_TOKEN).await?;
    assert_eq!(status, 200, "{message}");
    assert_eq!(one_serving(&[&passive, &c3]).await?, 1);
    let status = passive.status().await?;
    assert_eq!(status.role, "passive");
    assert_eq!(
        status.lease_holder.as_deref().map(holder_name),
        Some("topology-c")
    );
    assert_all_unavailable(&passive, "topology-c").await?;
    let mut c = c3.admin().await?;
    let bob = allocate(&mut c, "bob", "").await?;
    assert_eq!(bob.effect.unwrap().serial, 7);

    // A graceful stop releases the lease: the remaining replica takes over and serves.
    c3.stop().await?;
    wait_for(
        "the remaining replica serving",
        Duration::from_secs(20),
        || async { passive.serving().await.then_some(()) },
    )
    .await?;
    let mut c = passive.admin().await?;
    let carol = allocate(&mut c, "carol", "shard-2").await?;
    assert_eq!(carol.effect.unwrap().serial, 8);

    // Every member sees each serial once, signed by the one manager, in order.
    let mut follower =
        Follower::connect(net.endpoints(), "p1", k1.clone(), init.member.clone()).await?;
    follower.follow_until(8).await?;
    let serials: Vec<u64> = follower.seen.iter().map(|s| s.0).collect();
    assert_eq!(serials, (1..=8).collect::<Vec<_>>());
    assert!(follower.refused.is_empty(), "{:?}", follower.refused);
    let (now, _) = topology(&mut c).await?;
    assert_eq!(follower.state, now);
    assert_eq!(db_counts(&db).await?, (8, 0));
    drop(follower);
    passive.stop().await?;
    Ok(())
}
