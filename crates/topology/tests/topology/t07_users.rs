//! Users and rights over the admin API: created, granted, revoked and deleted through the
//! change pipeline, listed from the applied topology, with idempotent repeats that broadcast
//! nothing and refusals that change nothing.

use anyhow::Result;
use ordo_core::{KeyPair, PartyId};
use ordo_proto::admin::v1 as pb;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_proto::admin::v1::user_right::Kind;
use ordo_protocol::UserRight;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

fn act_as(p: &str) -> pb::UserRight {
    pb::UserRight {
        kind: Some(Kind::CanActAs(p.into())),
    }
}

fn read_as(p: &str) -> pb::UserRight {
    pb::UserRight {
        kind: Some(Kind::CanReadAs(p.into())),
    }
}

async fn users(c: &mut TopologyAdminServiceClient<Channel>) -> Result<Vec<pb::User>> {
    Ok(c.list_users(authed(pb::ListUsersRequest {}))
        .await?
        .into_inner()
        .users)
}

fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_granted_revoked_listed_and_deleted() -> Result<()> {
    let net = Net::start(1).await?;
    let node = start_topology(net.topology_config()).await?;
    let mut c = admin(&node).await?;
    register_participant(&mut c, "p1", &KeyPair::generate(), "shard-1").await?;
    register_participant(&mut c, "p2", &KeyPair::generate(), "shard-2").await?;
    allocate(&mut c, "alice", "shard-1").await?;
    allocate(&mut c, "bob", "shard-2").await?;
    assert!(users(&mut c).await?.is_empty());

    let app = pb::User {
        id: "app-1".into(),
        primary_party: "alice".into(),
        rights: vec![act_as("alice")],
    };
    let created = c
        .create_user(authed(pb::CreateUserRequest {
            user: Some(app.clone()),
        }))
        .await?
        .into_inner();
    assert_eq!(created.user.as_ref(), Some(&app));
    let ce = created.effect.expect("an effect");
    assert!(ce.created);
    assert_eq!(users(&mut c).await?, vec![app.clone()]);

    // Grant: only the right not held yet is new; a repeat broadcasts nothing.
    let g = c
        .grant_user_rights(authed(pb::GrantUserRightsRequest {
            user_id: "app-1".into(),
            rights: vec![act_as("alice"), read_as("bob")],
        }))
        .await?
        .into_inner();
    assert_eq!(g.newly_granted_rights, vec![read_as("bob")]);
    let ge = g.effect.expect("an effect");
    assert_eq!((ge.serial, ge.created), (ce.serial + 1, true));
    assert!(ge.timestamp > ce.timestamp);
    let again = c
        .grant_user_rights(authed(pb::GrantUserRightsRequest {
            user_id: "app-1".into(),
            rights: vec![read_as("bob")],
        }))
        .await?
        .into_inner();
    assert!(again.newly_granted_rights.is_empty());
    assert!(!again.effect.expect("an effect").created);
    let listed = users(&mut c).await?;
    assert_eq!(listed[0].rights, vec![act_as("alice"), read_as("bob")]);

    // The manager's applied topology (what every member folds) holds the same rights.
    let (state, _) = topology(&mut c).await?;
    assert_eq!(state.serial, ge.serial);
    let alice = PartyId::new("alice")?;
    let bob = PartyId::new("bob")?;
    assert_eq!(
        state.users["app-1"].rights,
        [UserRight::CanActAs(alice), UserRight::CanReadAs(bob)].into()
    );

    // Revoke: the held right goes, the unheld one is not reported.
    let r = c
        .revoke_user_rights(authed(pb::RevokeUserRightsRequest {
            user_id: "app-1".into(),
            rights: vec![
                read_as("bob"),
                pb::UserRight {
                    kind: Some(Kind::ParticipantAdmin(true)),
                },
            ],
        }))
        .await?
        .into_inner();
    assert_eq!(r.newly_revoked_rights, vec![read_as("bob")]);
    assert!(r.effect.expect("an effect").created);
    assert_eq!(users(&mut c).await?, vec![app.clone()]);

    // Refusals, each changing nothing.
    let (before, _) = topology(&mut c).await?;
    let cases = [
        (
            refused(
                c.create_user(authed(pb::CreateUserRequest {
                    user: Some(app.clone()),
                }))
                .await,
            ),
            Code::AlreadyExists,
            "user app-1 already exists",
        ),
        (
            refused(
                c.grant_user_rights(authed(pb::GrantUserRightsRequest {
                    user_id: "app-1".into(),
                    rights: vec![read_as("carol")],
                }))
                .await,
            ),
            Code::NotFound,
            "unknown party carol",
        ),
        (
            refused(
                c.grant_user_rights(authed(pb::GrantUserRightsRequest {
                    user_id: "app-1".into(),
                    rights: vec![pb::UserRight { kind: None }],
                }))
                .await,
            ),
            Code::InvalidArgument,
            "invalid rights[0]: no right set",
        ),
        (
            refused(
                c.revoke_user_rights(authed(pb::RevokeUserRightsRequest {
                    user_id: "nobody".into(),
                    rights: vec![act_as("alice")],
                }))
                .await,
            ),
            Code::NotFound,
            "unknown user nobody",
        ),
        (
            refused(
                c.list_users(tonic::Request::new(pb::ListUsersRequest {}))
                    .await,
            ),
            Code::Unauthenticated,
            "authorization",
        ),
    ];
    for ((code, message), want_code, want) in cases {
        assert_eq!(code, want_code, "{message}");
        assert!(message.contains(want), "{message}");
    }
    assert_eq!(topology(&mut c).await?.0, before);

    // Delete, once.
    c.delete_user(authed(pb::DeleteUserRequest {
        user_id: "app-1".into(),
    }))
    .await?;
    assert!(users(&mut c).await?.is_empty());
    let (code, message) = refused(
        c.delete_user(authed(pb::DeleteUserRequest {
            user_id: "app-1".into(),
        }))
        .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");

    node.stop().await
}
