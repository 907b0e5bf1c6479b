//! Every bad request gets its precise status and changes nothing: not the topology, not
//! the manager's database, not the sequencer's member registry.

use anyhow::Result;
use ordo_core::KeyPair;
use ordo_proto::admin::v1 as pb;
use tonic::Code;

use crate::harness::*;

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// The sequencer's member registry, without the acknowledgements (the manager's moves as
/// it processes the one accepted change).
async fn registered(
    admin: &ordo_sequencer_client::admin::AdminClient,
) -> Result<Vec<(String, bool, i64)>> {
    Ok(admin
        .list_members()
        .await?
        .into_iter()
        .map(|m| (m.member.to_string(), m.enabled, m.registered_at.micros()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_statuses_and_change_nothing() -> Result<()> {
    let net = Net::start(1).await?;
    let node = start_topology(net.topology_config()).await?;
    let mut c = admin(&node).await?;
    let k1 = KeyPair::generate();
    register_participant(&mut c, "p1", &k1, "shard-1").await?;
    allocate(&mut c, "alice", "shard-1").await?;
    let mediator = KeyPair::generate();
    c.register_mediator(authed(pb::RegisterMediatorRequest {
        name: "mediator".into(),
        public_key: mediator.public().as_bytes().to_vec(),
    }))
    .await?;

    let db = net.topology_db().await?;
    let seq_admin = net.sequencer_admin().await?;
    let (before, _) = topology(&mut c).await?;
    let rows_before = db_counts(&db).await?;
    let members_before = registered(&seq_admin).await?;
    assert_eq!(before.serial, 6);

    // Missing and wrong tokens, on a change and on a read.
    let no_token = tonic::Request::new(pb::AllocatePartyRequest {
        party: "bob".into(),
        shard: "shard-1".into(),
    });
    assert_eq!(
        code(c.allocate_party(no_token).await).0,
        Code::Unauthenticated
    );
    let wrong = with_token(
        pb::AllocatePartyRequest {
            party: "bob".into(),
            shard: "shard-1".into(),
        },
        "not-the-token",
    );
    let (status, message) = code(c.allocate_party(wrong).await);
    assert_eq!(status, Code::Unauthenticated);
    assert!(message.contains("wrong"), "{message}");
    assert_eq!(
        code(
            c.get_topology(with_token(pb::GetTopologyRequest {}, "x"))
                .await
        )
        .0,
        Code::Unauthenticated
    );

    // Unknown shard (explicit, and as a list filter).
    let (status, message) = code(allocate(&mut c, "bob", "shard-9").await);
    assert_eq!(status, Code::NotFound);
    assert!(
        message.contains("shard-9") && message.contains("shard-1"),
        "{message}"
    );
    assert_eq!(
        code(
            c.list_parties(authed(pb::ListPartiesRequest {
                shard: "shard-9".into()
            }))
            .await
        )
        .0,
        Code::NotFound
    );

    // Duplicate party, bad party names, malformed shard names.
    let (status, message) = code(allocate(&mut c, "alice", "").await);
    assert_eq!(status, Code::AlreadyExists);
    assert!(message.contains("alice"), "{message}");
    for bad in ["", "no spaces", "a::b", &"x".repeat(65)] {
        assert_eq!(
            code(allocate(&mut c, bad, "shard-1").await).0,
            Code::InvalidArgument,
            "{bad:?}"
        );
    }
    assert_eq!(
        code(allocate(&mut c, "bob", "Shard_1").await).0,
        Code::InvalidArgument
    );

    // A shard already served by another participant; a participant for a second shard.
    let (status, message) =
        code(register_participant(&mut c, "p2", &KeyPair::generate(), "shard-1").await);
    assert_eq!(status, Code::AlreadyExists);
    assert!(message.contains("shard-1 is already served"), "{message}");
    assert_eq!(
        code(register_participant(&mut c, "p1", &k1, "shard-2").await).0,
        Code::AlreadyExists
    );

    // Malformed public keys (too short; a weak key) and a malformed member name.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    for key in [vec![7u8; 31], weak.to_vec()] {
        let (status, message) = code(
            c.register_participant(authed(pb::RegisterParticipantRequest {
                name: "p2".into(),
                public_key: key,
                shard: "shard-2".into(),
            }))
            .await,
        );
        assert_eq!(status, Code::InvalidArgument);
        assert!(message.contains("public_key"), "{message}");
    }
    let (status, _) =
        code(register_participant(&mut c, "P 2", &KeyPair::generate(), "shard-2").await);
    assert_eq!(status, Code::InvalidArgument);

    // A second mediator.
    let (status, message) = code(
        c.register_mediator(authed(pb::RegisterMediatorRequest {
            name: "mediator-2".into(),
            public_key: KeyPair::generate().public().as_bytes().to_vec(),
        }))
        .await,
    );
    assert_eq!(status, Code::AlreadyExists);
    assert!(message.contains("already has mediator"), "{message}");

    // Packages and parameters.
    let (status, _) = code(
        c.vet_package(authed(pb::VetPackageRequest {
            package_id: "pkg".into(),
            source: String::new(),
        }))
        .await,
    );
    assert_eq!(status, Code::InvalidArgument);
    c.vet_package(authed(pb::VetPackageRequest {
        package_id: "pkg".into(),
        source: "v1".into(),
    }))
    .await?;
    let (status, _) = code(
        c.vet_package(authed(pb::VetPackageRequest {
            package_id: "pkg".into(),
            source: "v2".into(),
        }))
        .await,
    );
    assert_eq!(status, Code::AlreadyExists);
    assert_eq!(
        code(
            c.set_parameters(authed(pb::SetParametersRequest { parameters: None }))
                .await
        )
        .0,
        Code::InvalidArgument
    );
    let zero_timeout = pb::DomainParameters {
        participant_response_timeout_us: 0,
        deduplication_period_us: 1,
        max_command_bytes: 1,
        max_request_bytes: 1,
        ..Default::default()
    };
    let (status, message) = code(
        c.set_parameters(authed(pb::SetParametersRequest {
            parameters: Some(zero_timeout),
        }))
        .await,
    );
    assert_eq!(status, Code::InvalidArgument);
    assert!(
        message.contains("participant_response_timeout_us"),
        "{message}"
    );

    // Nothing changed but the one package.
    let (after, _) = topology(&mut c).await?;
    let mut expected = before.clone();
    expected.packages.insert("pkg".into(), "v1".into());
    expected.serial += 1;
    expected.timestamp = after.timestamp;
    assert_eq!(after, expected);
    assert_eq!(db_counts(&db).await?, (rows_before.0 + 1, 0));
    assert_eq!(registered(&seq_admin).await?, members_before);

    node.stop().await?;
    Ok(())
}
