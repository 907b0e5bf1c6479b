//! Users and rights (Daml's UserManagementService), domain-wide: a user created through
//! shard-1 with CanActAs(alice) and granted CanReadAs(bob) through shard-2 submits as alice
//! on shard-1 and reads bob on shard-2 with one user token (`sub` + `scope`); a revoked
//! right, or a deleted user, refuses the next request; bad requests get their codes.

use anyhow::{Context, Result, anyhow};
use ordo_proto::errors;
use ordo_proto::ledger::v1 as pb;
use pb::user_management_service_client::UserManagementServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::common::*;

/// A Daml user token for `user`, signed like the network's other tokens.
fn user_token(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or_default();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user, "scope": "daml_ledger_api", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("a token")
}

fn users(net: &LedgerNet, shard: usize) -> UserManagementServiceClient<Channel> {
    UserManagementServiceClient::new(net.channel(shard))
}

fn act_as(party: &str) -> pb::Right {
    pb::Right {
        kind: Some(pb::right::Kind::CanActAs(party.into())),
    }
}

fn read_as(party: &str) -> pb::Right {
    pb::Right {
        kind: Some(pb::right::Kind::CanReadAs(party.into())),
    }
}

fn code(status: &tonic::Status) -> Option<&'static str> {
    let code = errors::code_of(status).and_then(|id| errors::by_id(&id))?;
    (code.grpc == status.code()).then_some(code.id)
}

/// `party`'s active contracts on `shard`, read with `token`.
async fn acs_with(
    net: &LedgerNet,
    shard: usize,
    party: &str,
    token: &str,
) -> Result<usize, tonic::Status> {
    let mut stream = net
        .state(shard)
        .get_active_contracts(with_token(
            pb::GetActiveContractsRequest {
                filter: Some(pb::TransactionFilter {
                    parties: vec![party.into()],
                    template_ids: vec![],
                }),
            },
            token,
        ))
        .await?
        .into_inner();
    let mut n = 0;
    while let Some(page) = stream.message().await? {
        n += page.active_contracts.len();
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_token_acts_on_one_shard_and_reads_on_another_until_revoked() -> Result<()> {
    let net = LedgerNet::with_parties("t16", &[("alice", 0), ("bank", 1), ("bob", 1)]).await?;
    net.upload_iou().await?;
    net.issue("bank", "bob", "EUR", "10.00").await?;
    let admin = admin_token();

    // Created through shard-1 with CanActAs(alice); CanReadAs(bob) granted through shard-2.
    let created = users(&net, 0)
        .create_user(with_token(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    id: "app-1".into(),
                    primary_party: "alice".into(),
                }),
                rights: vec![act_as("alice")],
            },
            &admin,
        ))
        .await
        .map_err(|s| anyhow!("create: {s:?}"))?
        .into_inner();
    assert_eq!(created.user.map(|u| u.id), Some("app-1".to_owned()));
    let granted = users(&net, 1)
        .grant_user_rights(with_token(
            pb::GrantUserRightsRequest {
                user_id: "app-1".into(),
                rights: vec![read_as("bob"), act_as("alice")],
            },
            &admin,
        ))
        .await
        .map_err(|s| anyhow!("grant: {s:?}"))?
        .into_inner();
    // alice's right it had already: only bob's is new.
    assert_eq!(granted.newly_granted_rights, vec![read_as("bob")]);

    let user = user_token("app-1");
    // The user reads its own user and rights, on either shard.
    let own = users(&net, 1)
        .list_user_rights(with_token(pb::ListUserRightsRequest::default(), &user))
        .await
        .map_err(|s| anyhow!("own rights: {s:?}"))?
        .into_inner();
    assert_eq!(own.rights.len(), 2, "{own:?}");
    // ... but no other user's, nor may it create users.
    let other = users(&net, 0)
        .get_user(with_token(
            pb::GetUserRequest {
                user_id: "someone".into(),
            },
            &user,
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");

    // Submits as alice on shard-1 and reads bob on shard-2 with the one token.
    let commands = net.commands_for("alice", create_iou("alice", "alice", "USD", "5.00"));
    net.submit_raw(0, &user, commands)
        .await
        .map_err(|s| anyhow!("submit as alice with the user token: {s:?}"))?;
    assert_eq!(
        acs_with(&net, 1, "bob", &user)
            .await
            .map_err(|s| anyhow!("read bob: {s:?}"))?,
        1
    );
    // Acting as bob (read only) is refused.
    let as_bob = net
        .submit_raw(
            1,
            &user,
            net.commands_for("bob", create_iou("bob", "bob", "USD", "1.00")),
        )
        .await
        .unwrap_err();
    assert_eq!(as_bob.code(), tonic::Code::PermissionDenied, "{as_bob:?}");

    // Revoked through shard-2: the next read of bob there is refused.
    let revoked = users(&net, 1)
        .revoke_user_rights(with_token(
            pb::RevokeUserRightsRequest {
                user_id: "app-1".into(),
                rights: vec![read_as("bob")],
            },
            &admin,
        ))
        .await
        .map_err(|s| anyhow!("revoke: {s:?}"))?
        .into_inner();
    assert_eq!(revoked.newly_revoked_rights, vec![read_as("bob")]);
    let refused = acs_with(&net, 1, "bob", &user).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // Shard-1 applies the same topology transaction: the user's rights there follow.
    ordo_testkit::wait_for("the revocation on shard-1", PATIENCE, || async {
        let rights = users(&net, 0)
            .list_user_rights(with_token(pb::ListUserRightsRequest::default(), &user))
            .await
            .ok()?
            .into_inner();
        (rights.rights == vec![act_as("alice")]).then_some(())
    })
    .await?;

    // Bad requests: their codes, nothing changed.
    let dup = users(&net, 1)
        .create_user(with_token(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    id: "app-1".into(),
                    primary_party: String::new(),
                }),
                rights: vec![],
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&dup), Some("USER_ALREADY_EXISTS"), "{dup:?}");
    let unknown_party = users(&net, 0)
        .create_user(with_token(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    id: "app-2".into(),
                    primary_party: String::new(),
                }),
                rights: vec![act_as("nobody")],
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        code(&unknown_party),
        Some("PARTY_NOT_KNOWN_ON_LEDGER"),
        "{unknown_party:?}"
    );
    let bad_id = users(&net, 0)
        .create_user(with_token(
            pb::CreateUserRequest {
                user: Some(pb::User {
                    id: "App 2".into(),
                    primary_party: String::new(),
                }),
                rights: vec![],
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), tonic::Code::InvalidArgument, "{bad_id:?}");
    let empty_right = users(&net, 0)
        .grant_user_rights(with_token(
            pb::GrantUserRightsRequest {
                user_id: "app-1".into(),
                rights: vec![pb::Right { kind: None }],
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        empty_right.code(),
        tonic::Code::InvalidArgument,
        "{empty_right:?}"
    );
    let by_party_token = users(&net, 0)
        .list_users(with_token(pb::ListUsersRequest {}, &token(&["alice"])))
        .await
        .unwrap_err();
    assert_eq!(by_party_token.code(), tonic::Code::PermissionDenied);
    let missing = users(&net, 0)
        .get_user(with_token(
            pb::GetUserRequest {
                user_id: "app-9".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&missing), Some("USER_NOT_FOUND"), "{missing:?}");
    let listed = users(&net, 1)
        .list_users(with_token(pb::ListUsersRequest {}, &admin))
        .await?
        .into_inner();
    assert_eq!(
        listed
            .users
            .iter()
            .map(|u| u.id.as_str())
            .collect::<Vec<_>>(),
        vec!["app-1"]
    );

    // Deleted through shard-1: the token is refused there at once.
    users(&net, 0)
        .delete_user(with_token(
            pb::DeleteUserRequest {
                user_id: "app-1".into(),
            },
            &admin,
        ))
        .await
        .map_err(|s| anyhow!("delete: {s:?}"))?;
    let gone = net
        .submit_raw(
            0,
            &user,
            net.commands_for("alice", create_iou("alice", "alice", "USD", "6.00")),
        )
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::PermissionDenied, "{gone:?}");
    assert!(gone.message().contains("app-1"), "{gone:?}");
    let alice = net.ious("alice").await.context("alice's Ious")?;
    assert_eq!(
        alice.len(),
        1,
        "only the first submission committed: {alice:?}"
    );
    Ok(())
}
