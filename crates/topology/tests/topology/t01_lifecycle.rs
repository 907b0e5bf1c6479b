//! Bootstrap, members, parties and packages; a member folding the broadcasts ends with the
//! manager's state; the sequencer's registry follows topology.

use std::sync::Arc;

use anyhow::Result;
use ordo_core::{KeyPair, MemberId, PartyId};
use ordo_node::http_client;
use ordo_proto::admin::v1 as pb;
use ordo_protocol::{MemberRole, TopologyChange};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_members_parties_and_a_follower_agrees() -> Result<()> {
    let net = Net::start(2).await?;
    let cfg = net.topology_config();
    let init = ordo_topology::init(&cfg).await?;
    let node = start_topology(cfg.clone()).await?;
    let mut c = admin(&node).await?;

    // Bootstrap: the manager itself, the parameters, the sequencers.
    let (state, _) = topology(&mut c).await?;
    assert_eq!(state.serial, 3);
    assert_eq!(state.topology_manager(), Some(&init.member));
    assert_eq!(state.parameters, cfg.parameters.domain_parameters());
    assert_eq!(state.sequencers, net.endpoints());

    // Two participants and the mediator.
    let (k1, k2) = (KeyPair::generate(), KeyPair::generate());
    let r1 = register_participant(&mut c, "p1", &k1, "shard-1").await?;
    let p1 = MemberId::new("p1", &k1.public())?;
    assert_eq!(r1.member, p1.to_string());
    let e1 = r1.effect.unwrap();
    assert_eq!((e1.serial, e1.created), (4, true));
    let r2 = register_participant(&mut c, "p2", &k2, "shard-2").await?;
    assert_eq!(r2.effect.unwrap().serial, 5);
    // Registering the same participant again changes nothing and says when it took effect.
    let again = register_participant(&mut c, "p1", &k1, "shard-1").await?;
    assert_eq!(again.member, r1.member);
    assert_eq!(
        again.effect,
        Some(pb::ChangeEffect {
            created: false,
            ..e1
        })
    );

    let mediator_key = Arc::new(KeyPair::generate());
    let m = c
        .register_mediator(authed(pb::RegisterMediatorRequest {
            name: "mediator".into(),
            public_key: mediator_key.public().as_bytes().to_vec(),
        }))
        .await?
        .into_inner();
    let mediator = MemberId::new("mediator", &mediator_key.public())?;
    assert_eq!(m.member, mediator.to_string());

    // The mediator, registered through the manager, can use the sequencer right away: it
    // follows topology from the start.
    let mut follower = Follower::connect(
        net.endpoints(),
        "mediator",
        mediator_key.clone(),
        init.member.clone(),
    )
    .await?;

    // Parties: explicit, then least-loaded (ties go to the first shard by name).
    let a = allocate(&mut c, "alice", "shard-2").await?;
    assert_eq!(
        (a.shard.as_str(), a.participant.as_str()),
        ("shard-2", r2.member.as_str())
    );
    let alice_at = a.effect.unwrap().timestamp;
    let b = allocate(&mut c, "bob", "").await?;
    assert_eq!(b.shard, "shard-1");
    let carol = allocate(&mut c, "carol", "").await?;
    assert_eq!(carol.shard, "shard-1");
    let dave = allocate(&mut c, "dave", "").await?;
    assert_eq!(dave.shard, "shard-2");
    assert!(
        b.effect.unwrap().timestamp > alice_at,
        "timestamps follow the order"
    );

    let parties = c
        .list_parties(authed(pb::ListPartiesRequest::default()))
        .await?
        .into_inner();
    let listed: Vec<(String, String)> = parties
        .parties
        .iter()
        .map(|p| (p.party.clone(), p.shard.clone()))
        .collect();
    let expect = |p: &str, s: &str| (p.to_string(), s.to_string());
    assert_eq!(
        listed,
        vec![
            expect("alice", "shard-2"),
            expect("bob", "shard-1"),
            expect("carol", "shard-1"),
            expect("dave", "shard-2")
        ]
    );
    let on_1 = c
        .list_parties(authed(pb::ListPartiesRequest {
            shard: "shard-1".into(),
        }))
        .await?
        .into_inner();
    assert_eq!(on_1.parties.len(), 2);
    let shards = c
        .list_shards(authed(pb::ListShardsRequest {}))
        .await?
        .into_inner();
    assert_eq!(
        shards.shards,
        vec![
            pb::ShardInfo {
                shard: "shard-1".into(),
                participant: r1.member.clone(),
                parties: 2
            },
            pb::ShardInfo {
                shard: "shard-2".into(),
                participant: r2.member.clone(),
                parties: 2
            },
        ]
    );

    // Packages: vetted once, idempotent, listed.
    let v = c
        .vet_package(authed(pb::VetPackageRequest {
            package_id: "iou-1.0".into(),
            source: "template Iou".into(),
        }))
        .await?
        .into_inner();
    let ve = v.effect.unwrap();
    assert!(ve.created);
    let v2 = c
        .vet_package(authed(pb::VetPackageRequest {
            package_id: "iou-1.0".into(),
            source: "template Iou".into(),
        }))
        .await?
        .into_inner();
    assert_eq!(
        v2.effect.unwrap(),
        pb::ChangeEffect {
            created: false,
            ..ve
        }
    );
    let pkgs = c
        .list_packages(authed(pb::ListPackagesRequest {
            include_source: true,
        }))
        .await?
        .into_inner();
    assert_eq!(pkgs.packages.len(), 1);
    assert_eq!(pkgs.packages[0].source, "template Iou");
    assert_eq!(pkgs.packages[0].source_bytes, 12);

    // Parameters.
    let mut params = cfg.parameters.domain_parameters();
    params.participant_response_timeout_us = 3_000_000;
    let set = c
        .set_parameters(authed(pb::SetParametersRequest {
            parameters: Some(pb::DomainParameters {
                participant_response_timeout_us: params.participant_response_timeout_us,
                deduplication_period_us: params.deduplication_period_us,
                max_command_bytes: params.max_command_bytes as u64,
                max_request_bytes: params.max_request_bytes as u64,
                // Unset: the defaults.
                ..Default::default()
            }),
        }))
        .await?
        .into_inner();
    assert!(set.effect.unwrap().created);

    // The follower folds every broadcast, verifying signatures, into the same state.
    let (state, raw) = topology(&mut c).await?;
    assert_eq!(state.serial, 12);
    assert_eq!(state.parameters, params);
    assert_eq!(
        state.host_of(&PartyId::new("alice")?),
        Some(&MemberId::new("p2", &k2.public())?)
    );
    assert_eq!(state.mediator(), Some(&mediator));
    follower.follow_until(raw.serial).await?;
    assert_eq!(follower.state, state);
    let serials: Vec<u64> = follower.seen.iter().map(|s| s.0).collect();
    assert_eq!(serials, (1..=12).collect::<Vec<_>>());
    assert!(follower.seen.windows(2).all(|w| w[0].1 < w[1].1));
    assert!(matches!(
        state.members.get(&p1).map(|m| &m.role),
        Some(MemberRole::Participant { shard }) if shard == "shard-1"
    ));

    // The DB holds every transaction, each with its sequencing timestamp.
    let db = net.topology_db().await?;
    assert_eq!(db_counts(&db).await?, (12, 0));
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT serial, change::text, sequenced_at FROM topology_transactions ORDER BY serial",
    )
    .fetch_all(&db)
    .await?;
    for ((serial, change, at), (s, t)) in rows.iter().zip(&follower.seen) {
        assert_eq!((*serial as u64, *at), (*s, t.micros()));
        let change: TopologyChange = serde_json::from_str(change)?;
        if *serial == 4 {
            assert!(matches!(change, TopologyChange::AddMember { member, .. } if member == p1));
        }
    }

    // The sequencer's member registry follows topology.
    let registered: Vec<MemberId> = net
        .sequencer_admin()
        .await?
        .list_members()
        .await?
        .into_iter()
        .map(|m| m.member)
        .collect();
    for member in [
        &init.member,
        &p1,
        &MemberId::new("p2", &k2.public())?,
        &mediator,
    ] {
        assert!(
            registered.contains(member),
            "{member} not in {registered:?}"
        );
    }
    assert_eq!(registered.len(), 4);

    // Metrics.
    let metrics = http_client::get_ok(&format!("http://{}/metrics", node.http)).await?;
    assert!(metrics.contains("ordo_topology_serial"), "{metrics}");
    assert!(
        metrics.contains("ordo_topology_changes_total{kind=\"allocate_party\"}"),
        "{metrics}"
    );

    node.stop().await?;
    // Its open subscription would hold up the sequencers' drain.
    drop(follower);
    for s in net.sequencers {
        s.stop().await?;
    }
    Ok(())
}
