//! `ordo user create|grant|revoke|delete|list`: users and their rights, domain-wide,
//! through the topology manager's admin API (the admin token from network.json). A right
//! is written `act-as:PARTY`, `read-as:PARTY`, `read-as-any-party` or `participant-admin`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Subcommand};
use ordo_core::PartyId;
use ordo_ledger_client::Network;
use ordo_ledger_client::network::DEFAULT_PATH;
use ordo_proto::admin::v1 as pb;
use ordo_proto::admin::v1::user_right::Kind;
use serde::Serialize;

use crate::Failure;
use crate::up::register::{Registrar, authorized};

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    /// The network file written by `ordo up`.
    #[arg(long, value_name = "FILE", env = "ORDO_NETWORK", default_value = DEFAULT_PATH, global = true)]
    pub network: PathBuf,
    /// Print the outcome as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with its rights (an existing user is refused).
    Create {
        /// The user id tokens name in `sub`: 1 to 128 of [a-z0-9] and @^$.!`-#+'~_|:.
        user: String,
        /// The party the user's applications act as by default.
        #[arg(long, value_name = "PARTY", value_parser = parse_party)]
        primary_party: Option<PartyId>,
        /// A right: act-as:PARTY, read-as:PARTY, read-as-any-party, participant-admin.
        /// Repeatable.
        #[arg(long = "right", value_name = "RIGHT")]
        rights: Vec<Right>,
    },
    /// Grant rights to a user; prints those it did not hold yet.
    Grant {
        user: String,
        /// act-as:PARTY, read-as:PARTY, read-as-any-party, participant-admin.
        #[arg(required = true, value_name = "RIGHT")]
        rights: Vec<Right>,
    },
    /// Revoke rights from a user; prints those it held.
    Revoke {
        user: String,
        /// act-as:PARTY, read-as:PARTY, read-as-any-party, participant-admin.
        #[arg(required = true, value_name = "RIGHT")]
        rights: Vec<Right>,
    },
    /// Delete a user and its rights.
    Delete { user: String },
    /// Every user with its primary party and rights.
    List,
}

/// A user right as the command line writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Right {
    ActAs(PartyId),
    ReadAs(PartyId),
    ReadAsAnyParty,
    ParticipantAdmin,
}

const RIGHTS: &str = "act-as:PARTY, read-as:PARTY, read-as-any-party or participant-admin";

fn parse_party(text: &str) -> Result<PartyId, String> {
    PartyId::new(text).map_err(|e| e.to_string())
}

impl FromStr for Right {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let party = |p: &str| parse_party(p).map_err(|e| format!("{text:?}: {e}"));
        match text.split_once(':') {
            Some(("act-as", p)) => Ok(Self::ActAs(party(p)?)),
            Some(("read-as", p)) => Ok(Self::ReadAs(party(p)?)),
            None if text == "read-as-any-party" => Ok(Self::ReadAsAnyParty),
            None if text == "participant-admin" => Ok(Self::ParticipantAdmin),
            _ => Err(format!("{text:?} is not a right: write {RIGHTS}")),
        }
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ActAs(p) => write!(f, "act-as:{p}"),
            Self::ReadAs(p) => write!(f, "read-as:{p}"),
            Self::ReadAsAnyParty => f.write_str("read-as-any-party"),
            Self::ParticipantAdmin => f.write_str("participant-admin"),
        }
    }
}

impl Right {
    fn to_pb(&self) -> pb::UserRight {
        let kind = match self {
            Self::ActAs(p) => Kind::CanActAs(p.to_string()),
            Self::ReadAs(p) => Kind::CanReadAs(p.to_string()),
            Self::ReadAsAnyParty => Kind::CanReadAsAnyParty(true),
            Self::ParticipantAdmin => Kind::ParticipantAdmin(true),
        };
        pb::UserRight { kind: Some(kind) }
    }

    /// A right as the topology manager answered it, written for the operator (a kind this
    /// tool does not know is shown as such rather than dropped).
    fn describe(r: &pb::UserRight) -> String {
        match &r.kind {
            Some(Kind::CanActAs(p)) => format!("act-as:{p}"),
            Some(Kind::CanReadAs(p)) => format!("read-as:{p}"),
            Some(Kind::CanReadAsAnyParty(_)) => "read-as-any-party".into(),
            Some(Kind::ParticipantAdmin(_)) => "participant-admin".into(),
            None => "unknown".into(),
        }
    }
}

fn to_pb(rights: &[Right]) -> Vec<pb::UserRight> {
    rights.iter().map(Right::to_pb).collect()
}

fn describe_all(rights: &[pb::UserRight]) -> Vec<String> {
    rights.iter().map(Right::describe).collect()
}

/// What a command did, printed as text or as one JSON object.
#[derive(Debug, Serialize)]
struct Outcome {
    user: String,
    /// `created`, `deleted`, `granted` or `revoked`.
    action: &'static str,
    /// The rights the change concerned: a created user's, or those newly granted or
    /// revoked (empty: nothing changed).
    rights: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_party: Option<String>,
    /// The topology serial of the change; `changed` false when it was already in effect.
    serial: u64,
    changed: bool,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rights = if self.rights.is_empty() {
            "no rights".to_string()
        } else {
            self.rights.join(" ")
        };
        match self.action {
            "granted" | "revoked" if !self.changed => write!(
                f,
                "user {}: nothing {} (it {} already); topology unchanged at serial {}",
                self.user,
                self.action,
                if self.action == "granted" {
                    "held every right named"
                } else {
                    "held none of them"
                },
                self.serial
            ),
            "granted" => write!(
                f,
                "user {}: granted {rights} (serial {})",
                self.user, self.serial
            ),
            "revoked" => write!(
                f,
                "user {}: revoked {rights} (serial {})",
                self.user, self.serial
            ),
            "created" => write!(
                f,
                "created user {}{} with {rights} (serial {})",
                self.user,
                self.primary_party
                    .as_ref()
                    .map(|p| format!(" (primary party {p})"))
                    .unwrap_or_default(),
                self.serial
            ),
            _ => write!(f, "deleted user {} (serial {})", self.user, self.serial),
        }
    }
}

#[derive(Debug, Serialize)]
struct Listed {
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_party: Option<String>,
    rights: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Listing {
    users: Vec<Listed>,
    /// The topology serial the list is consistent with.
    serial: u64,
}

fn table(l: &Listing) -> String {
    let mut out = format!("{:<24} {:<16} RIGHTS\n", "USER", "PRIMARY PARTY");
    for u in &l.users {
        out.push_str(&format!(
            "{:<24} {:<16} {}\n",
            u.user,
            u.primary_party.as_deref().unwrap_or("-"),
            u.rights.join(" ")
        ));
    }
    let n = l.users.len();
    let s = if n == 1 { "" } else { "s" };
    out.push_str(&format!("({n} user{s}, topology serial {})\n", l.serial));
    out
}

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn serial(effect: Option<pb::ChangeEffect>) -> (u64, bool) {
    effect.map(|e| (e.serial, e.created)).unwrap_or_default()
}

pub fn main(args: UserArgs) -> Result<(), Failure> {
    let network = Network::load(&args.network).map_err(|e| Failure::Usage(e.into()))?;
    let endpoints: Vec<String> = network
        .topology_replicas()
        .iter()
        .map(|n| n.grpc.clone())
        .collect();
    let token = &network.auth.topology_admin_token;
    if endpoints.is_empty() || token.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{} names no topology manager or no topology admin token: users are managed \
             through the topology manager",
            args.network.display()
        )));
    }
    let rt = crate::runtime()?;
    // The channels are lazy, but tonic spawns their workers at once: inside the runtime.
    let mut registrar = {
        let _inside = rt.enter();
        Registrar::connect(&endpoints, token).map_err(Failure::Usage)?
    };
    let text = rt
        .block_on(run(&mut registrar, args.command, args.json))
        .map_err(Failure::Runtime)?;
    println!("{text}");
    Ok(())
}

async fn run(r: &mut Registrar, command: UserCommand, json: bool) -> anyhow::Result<String> {
    let bearer = r.bearer();
    let outcome = match command {
        UserCommand::List => {
            let answer = r
                .call("listing the users", |mut c| {
                    let req = authorized(pb::ListUsersRequest {}, &bearer);
                    async move { Ok(c.list_users(req).await?.into_inner()) }
                })
                .await?;
            let listing = Listing {
                users: answer
                    .users
                    .into_iter()
                    .map(|u| Listed {
                        rights: describe_all(&u.rights),
                        user: u.id,
                        primary_party: optional(u.primary_party),
                    })
                    .collect(),
                serial: answer.serial,
            };
            return Ok(if json {
                serde_json::to_string(&listing)?
            } else {
                table(&listing).trim_end().to_string()
            });
        }
        UserCommand::Create {
            user,
            primary_party,
            rights,
        } => {
            let req = pb::CreateUserRequest {
                user: Some(pb::User {
                    id: user.clone(),
                    primary_party: primary_party.map(|p| p.to_string()).unwrap_or_default(),
                    rights: to_pb(&rights),
                }),
            };
            let answer = r
                .call(&format!("creating user {user}"), |mut c| {
                    let req = authorized(req.clone(), &bearer);
                    async move { Ok(c.create_user(req).await?.into_inner()) }
                })
                .await?;
            let created = answer.user.unwrap_or_default();
            let (serial, changed) = serial(answer.effect);
            Outcome {
                user,
                action: "created",
                rights: describe_all(&created.rights),
                primary_party: optional(created.primary_party),
                serial,
                changed,
            }
        }
        UserCommand::Grant { user, rights } => {
            let req = pb::GrantUserRightsRequest {
                user_id: user.clone(),
                rights: to_pb(&rights),
            };
            let answer = r
                .call(&format!("granting rights to user {user}"), |mut c| {
                    let req = authorized(req.clone(), &bearer);
                    async move { Ok(c.grant_user_rights(req).await?.into_inner()) }
                })
                .await?;
            let (serial, changed) = serial(answer.effect);
            Outcome {
                user,
                action: "granted",
                rights: describe_all(&answer.newly_granted_rights),
                primary_party: None,
                serial,
                changed,
            }
        }
        UserCommand::Revoke { user, rights } => {
            let req = pb::RevokeUserRightsRequest {
                user_id: user.clone(),
                rights: to_pb(&rights),
            };
            let answer = r
                .call(&format!("revoking rights of user {user}"), |mut c| {
                    let req = authorized(req.clone(), &bearer);
                    async move { Ok(c.revoke_user_rights(req).await?.into_inner()) }
                })
                .await?;
            let (serial, changed) = serial(answer.effect);
            Outcome {
                user,
                action: "revoked",
                rights: describe_all(&answer.newly_revoked_rights),
                primary_party: None,
                serial,
                changed,
            }
        }
        UserCommand::Delete { user } => {
            let req = pb::DeleteUserRequest {
                user_id: user.clone(),
            };
            let answer = r
                .call(&format!("deleting user {user}"), |mut c| {
                    let req = authorized(req.clone(), &bearer);
                    async move { Ok(c.delete_user(req).await?.into_inner()) }
                })
                .await?;
            let (serial, changed) = serial(answer.effect);
            Outcome {
                user,
                action: "deleted",
                rights: Vec::new(),
                primary_party: None,
                serial,
                changed,
            }
        }
    };
    Ok(if json {
        serde_json::to_string(&outcome)?
    } else {
        outcome.to_string()
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn party(p: &str) -> PartyId {
        PartyId::new(p).unwrap()
    }

    fn parse(args: &[&str]) -> Result<UserArgs, clap::Error> {
        let mut all = vec!["ordo", "user"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.command {
            Command::User(u) => Ok(u),
            other => panic!("expected user, got {other:?}"),
        }
    }

    #[test]
    fn rights_are_written_as_on_the_command_line() {
        for (text, right) in [
            ("act-as:alice", Right::ActAs(party("alice"))),
            ("read-as:bank-1", Right::ReadAs(party("bank-1"))),
            ("read-as-any-party", Right::ReadAsAnyParty),
            ("participant-admin", Right::ParticipantAdmin),
        ] {
            assert_eq!(text.parse::<Right>().unwrap(), right);
            assert_eq!(right.to_string(), text);
            assert_eq!(Right::describe(&right.to_pb()), text);
        }
        for bad in [
            "act-as",
            "act-as:",
            "act-as:no spaces",
            "admin",
            "read-as-any-party:x",
        ] {
            let e = bad.parse::<Right>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn user_commands_parse() {
        let a = parse(&[
            "create",
            "app-1",
            "--primary-party",
            "alice",
            "--right",
            "act-as:alice",
            "--right",
            "read-as:bob",
            "--json",
        ])
        .unwrap();
        assert!(a.json);
        assert_eq!(a.network, PathBuf::from(DEFAULT_PATH));
        let UserCommand::Create {
            user,
            primary_party,
            rights,
        } = a.command
        else {
            panic!("expected create");
        };
        assert_eq!(user, "app-1");
        assert_eq!(primary_party, Some(party("alice")));
        assert_eq!(
            rights,
            [Right::ActAs(party("alice")), Right::ReadAs(party("bob"))]
        );

        let a = parse(&["grant", "app-1", "read-as-any-party", "participant-admin"]).unwrap();
        let UserCommand::Grant { user, rights } = a.command else {
            panic!("expected grant");
        };
        assert_eq!(user, "app-1");
        assert_eq!(rights, [Right::ReadAsAnyParty, Right::ParticipantAdmin]);

        let a = parse(&["--network", "n.json", "revoke", "app-1", "act-as:alice"]).unwrap();
        assert_eq!(a.network, PathBuf::from("n.json"));
        assert!(matches!(a.command, UserCommand::Revoke { .. }));
        assert!(matches!(
            parse(&["delete", "app-1"]).unwrap().command,
            UserCommand::Delete { user } if user == "app-1"
        ));
        assert!(matches!(
            parse(&["list"]).unwrap().command,
            UserCommand::List
        ));

        // A grant without rights, a malformed right or party: usage errors.
        let e = parse(&["grant", "app-1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["grant", "app-1", "act-as:no spaces"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let e = parse(&["create", "app-1", "--primary-party", "a b"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn outcomes_say_what_changed() {
        let granted = Outcome {
            user: "app-1".into(),
            action: "granted",
            rights: vec!["read-as:bob".into()],
            primary_party: None,
            serial: 12,
            changed: true,
        };
        assert_eq!(
            granted.to_string(),
            "user app-1: granted read-as:bob (serial 12)"
        );
        assert_eq!(
            serde_json::to_value(&granted).unwrap(),
            serde_json::json!({"user": "app-1", "action": "granted", "rights": ["read-as:bob"],
                               "serial": 12, "changed": true})
        );
        let repeat = Outcome {
            rights: vec![],
            changed: false,
            ..granted
        };
        assert_eq!(
            repeat.to_string(),
            "user app-1: nothing granted (it held every right named already); topology \
             unchanged at serial 12"
        );
        let listing = Listing {
            users: vec![Listed {
                user: "app-1".into(),
                primary_party: Some("alice".into()),
                rights: vec!["act-as:alice".into(), "read-as:bob".into()],
            }],
            serial: 9,
        };
        let t = table(&listing);
        assert!(t.contains("app-1"), "{t}");
        assert!(t.contains("act-as:alice read-as:bob"), "{t}");
        assert!(t.ends_with("(1 user, topology serial 9)\n"), "{t}");
    }
}
