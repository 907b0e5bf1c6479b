//! Users and their rights (`UserManagementService`), domain-wide: a user created through
//! any shard exists on every shard. Changes need an admin token; a user token may read its
//! own user and rights (`None` as the user id).

use ordo_proto::ledger::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::client::LedgerClient;
use crate::error::LedgerError;

/// A user (JSON: `{"userId", "primaryParty"?}`, as Daml's JSON API writes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_party: Option<String>,
}

/// A user right (JSON: `{"type": "CanActAs", "party": "alice"}`, `{"type":
/// "ParticipantAdmin"}`, as Daml's JSON API writes them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum UserRight {
    CanActAs { party: String },
    CanReadAs { party: String },
    CanReadAsAnyParty,
    ParticipantAdmin,
}

impl UserRight {
    fn to_pb(&self) -> pb::Right {
        use pb::right::Kind;
        pb::Right {
            kind: Some(match self {
                Self::CanActAs { party } => Kind::CanActAs(party.clone()),
                Self::CanReadAs { party } => Kind::CanReadAs(party.clone()),
                Self::CanReadAsAnyParty => Kind::CanReadAsAnyParty(true),
                Self::ParticipantAdmin => Kind::ParticipantAdmin(true),
            }),
        }
    }

    fn from_pb(r: pb::Right) -> Result<Self, LedgerError> {
        use pb::right::Kind;
        match r.kind {
            Some(Kind::CanActAs(party)) => Ok(Self::CanActAs { party }),
            Some(Kind::CanReadAs(party)) => Ok(Self::CanReadAs { party }),
            Some(Kind::CanReadAsAnyParty(true)) => Ok(Self::CanReadAsAnyParty),
            Some(Kind::ParticipantAdmin(true)) => Ok(Self::ParticipantAdmin),
            other => Err(LedgerError::Protocol(format!(
                "a user right of no kind: {other:?}"
            ))),
        }
    }
}

fn rights_of(rights: Vec<pb::Right>) -> Result<Vec<UserRight>, LedgerError> {
    rights.into_iter().map(UserRight::from_pb).collect()
}

fn user_of(u: Option<pb::User>) -> Result<UserInfo, LedgerError> {
    let u = u.ok_or_else(|| LedgerError::Protocol("an answer without its user".into()))?;
    Ok(UserInfo {
        user_id: u.id,
        primary_party: Some(u.primary_party).filter(|p| !p.is_empty()),
    })
}

impl LedgerClient {
    fn users(
        &self,
    ) -> pb::user_management_service_client::UserManagementServiceClient<crate::client::Authed>
    {
        pb::user_management_service_client::UserManagementServiceClient::new(self.authed())
    }

    /// Creates a user with `rights` (admin token).
    pub async fn create_user(
        &self,
        user: &UserInfo,
        rights: &[UserRight],
    ) -> Result<UserInfo, LedgerError> {
        let r = self
            .users()
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User {
                    id: user.user_id.clone(),
                    primary_party: user.primary_party.clone().unwrap_or_default(),
                }),
                rights: rights.iter().map(UserRight::to_pb).collect(),
            })
            .await?
            .into_inner();
        user_of(r.user)
    }

    /// A user; `None`: the token's own user.
    pub async fn get_user(&self, user_id: Option<&str>) -> Result<UserInfo, LedgerError> {
        let r = self
            .users()
            .get_user(pb::GetUserRequest {
                user_id: user_id.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner();
        user_of(r.user)
    }

    pub async fn delete_user(&self, user_id: &str) -> Result<(), LedgerError> {
        self.users()
            .delete_user(pb::DeleteUserRequest {
                user_id: user_id.to_owned(),
            })
            .await?;
        Ok(())
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>, LedgerError> {
        let r = self
            .users()
            .list_users(pb::ListUsersRequest {})
            .await?
            .into_inner();
        r.users.into_iter().map(|u| user_of(Some(u))).collect()
    }

    /// Grants `rights`; answers those the user did not have.
    pub async fn grant_user_rights(
        &self,
        user_id: &str,
        rights: &[UserRight],
    ) -> Result<Vec<UserRight>, LedgerError> {
        let r = self
            .users()
            .grant_user_rights(pb::GrantUserRightsRequest {
                user_id: user_id.to_owned(),
                rights: rights.iter().map(UserRight::to_pb).collect(),
            })
            .await?
            .into_inner();
        rights_of(r.newly_granted_rights)
    }

    /// Revokes `rights`; answers those the user had.
    pub async fn revoke_user_rights(
        &self,
        user_id: &str,
        rights: &[UserRight],
    ) -> Result<Vec<UserRight>, LedgerError> {
        let r = self
            .users()
            .revoke_user_rights(pb::RevokeUserRightsRequest {
                user_id: user_id.to_owned(),
                rights: rights.iter().map(UserRight::to_pb).collect(),
            })
            .await?
            .into_inner();
        rights_of(r.newly_revoked_rights)
    }

    /// A user's rights; `None`: the token's own user's.
    pub async fn list_user_rights(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<UserRight>, LedgerError> {
        let r = self
            .users()
            .list_user_rights(pb::ListUserRightsRequest {
                user_id: user_id.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner();
        rights_of(r.rights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_read_and_write_as_the_json_api_does() {
        let rights: Vec<UserRight> = serde_json::from_str(
            r#"[{"type": "CanActAs", "party": "alice"}, {"type": "CanReadAs", "party": "bob"},
                {"type": "CanReadAsAnyParty"}, {"type": "ParticipantAdmin"}]"#,
        )
        .unwrap();
        assert_eq!(
            rights,
            vec![
                UserRight::CanActAs {
                    party: "alice".into()
                },
                UserRight::CanReadAs {
                    party: "bob".into()
                },
                UserRight::CanReadAsAnyParty,
                UserRight::ParticipantAdmin,
            ]
        );
        for r in &rights {
            assert_eq!(&UserRight::from_pb(r.to_pb()).unwrap(), r);
        }
        assert!(serde_json::from_str::<UserRight>(r#"{"type": "CanActAs"}"#).is_err());
        assert!(serde_json::from_str::<UserRight>(r#"{"type": "Owner", "party": "a"}"#).is_err());
    }
}
