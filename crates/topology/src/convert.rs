//! The protobuf ⇄ domain conversions of users and rights (the admin API's `User` and
//! `UserRight`). Malformed input is INVALID_ARGUMENT naming the field and the value;
//! whether the parties exist is the plan's concern.

use ordo_core::PartyId;
use ordo_proto::admin::v1 as pb;
use ordo_proto::admin::v1::user_right::Kind;
use ordo_protocol::topology::validate_user_id;
use ordo_protocol::{User, UserRight};

use crate::error::TopologyError;

fn invalid(field: &str, why: impl std::fmt::Display) -> TopologyError {
    TopologyError::InvalidArgument(format!("invalid {field}: {why}"))
}

fn party(field: &str, name: &str) -> Result<PartyId, TopologyError> {
    PartyId::new(name).map_err(|e| invalid(field, e))
}

/// One right; `field` names it in errors (`rights[2]`).
pub fn right_from_pb(field: &str, r: &pb::UserRight) -> Result<UserRight, TopologyError> {
    match &r.kind {
        Some(Kind::CanActAs(p)) => Ok(UserRight::CanActAs(party(
            &format!("{field}.can_act_as"),
            p,
        )?)),
        Some(Kind::CanReadAs(p)) => Ok(UserRight::CanReadAs(party(
            &format!("{field}.can_read_as"),
            p,
        )?)),
        Some(Kind::CanReadAsAnyParty(true)) => Ok(UserRight::CanReadAsAnyParty),
        Some(Kind::ParticipantAdmin(true)) => Ok(UserRight::ParticipantAdmin),
        // `false` is set but says nothing: refuse it rather than guess.
        Some(Kind::CanReadAsAnyParty(false)) => Err(invalid(
            &format!("{field}.can_read_as_any_party"),
            "false: set it to true, or name another right",
        )),
        Some(Kind::ParticipantAdmin(false)) => Err(invalid(
            &format!("{field}.participant_admin"),
            "false: set it to true, or name another right",
        )),
        None => Err(invalid(
            field,
            "no right set: set one of can_act_as, can_read_as, can_read_as_any_party, \
             participant_admin",
        )),
    }
}

/// The rights of a request, each named `field[i]` in errors.
pub fn rights_from_pb(
    field: &str,
    rights: &[pb::UserRight],
) -> Result<Vec<UserRight>, TopologyError> {
    rights
        .iter()
        .enumerate()
        .map(|(i, r)| right_from_pb(&format!("{field}[{i}]"), r))
        .collect()
}

pub fn right_to_pb(r: &UserRight) -> pb::UserRight {
    let kind = match r {
        UserRight::CanActAs(p) => Kind::CanActAs(p.to_string()),
        UserRight::CanReadAs(p) => Kind::CanReadAs(p.to_string()),
        UserRight::CanReadAsAnyParty => Kind::CanReadAsAnyParty(true),
        UserRight::ParticipantAdmin => Kind::ParticipantAdmin(true),
    };
    pb::UserRight { kind: Some(kind) }
}

pub fn rights_to_pb<'a>(rights: impl IntoIterator<Item = &'a UserRight>) -> Vec<pb::UserRight> {
    rights.into_iter().map(right_to_pb).collect()
}

/// A user of CreateUser: an empty primary party means none.
pub fn user_from_pb(u: Option<pb::User>) -> Result<User, TopologyError> {
    let u = u.ok_or_else(|| invalid("user", "missing"))?;
    validate_user_id(&u.id).map_err(|e| invalid("user.id", e))?;
    let primary_party = match u.primary_party.as_str() {
        "" => None,
        p => Some(party("user.primary_party", p)?),
    };
    Ok(User {
        id: u.id,
        primary_party,
        rights: rights_from_pb("user.rights", &u.rights)?
            .into_iter()
            .collect(),
    })
}

pub fn user_to_pb(u: &User) -> pb::User {
    pb::User {
        id: u.id.clone(),
        primary_party: u
            .primary_party
            .as_ref()
            .map(PartyId::to_string)
            .unwrap_or_default(),
        rights: rights_to_pb(&u.rights),
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn right(kind: Option<Kind>) -> pb::UserRight {
        pb::UserRight { kind }
    }

    #[test]
    fn rights_round_trip() {
        let rights = vec![
            UserRight::CanActAs(PartyId::new("alice").unwrap()),
            UserRight::CanReadAs(PartyId::new("bob").unwrap()),
            UserRight::CanReadAsAnyParty,
            UserRight::ParticipantAdmin,
        ];
        let back = rights_from_pb("rights", &rights_to_pb(&rights)).unwrap();
        assert_eq!(back, rights);

        let user = User {
            id: "app-1".into(),
            primary_party: Some(PartyId::new("alice").unwrap()),
            rights: rights.into_iter().collect(),
        };
        assert_eq!(user_from_pb(Some(user_to_pb(&user))).unwrap(), user);
        let no_primary = pb::User {
            id: "app-2".into(),
            ..Default::default()
        };
        assert_eq!(user_from_pb(Some(no_primary)).unwrap().primary_party, None);
    }

    #[test]
    fn malformed_rights_and_users_name_the_field() {
        let cases = [
            (
                vec![right(Some(Kind::ParticipantAdmin(true))), right(None)],
                "invalid rights[1]: no right set",
            ),
            (
                vec![right(Some(Kind::CanActAs("no spaces".into())))],
                "invalid rights[0].can_act_as",
            ),
            (
                vec![right(Some(Kind::CanReadAs(String::new())))],
                "invalid rights[0].can_read_as",
            ),
            (
                vec![right(Some(Kind::CanReadAsAnyParty(false)))],
                "invalid rights[0].can_read_as_any_party: false",
            ),
        ];
        for (rights, why) in cases {
            let e = rights_from_pb("rights", &rights).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.to_string().starts_with(why), "{e}");
        }

        let e = user_from_pb(None).unwrap_err();
        assert_eq!(e.to_string(), "invalid user: missing");
        let e = user_from_pb(Some(pb::User {
            id: "App".into(),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.to_string().starts_with("invalid user.id"), "{e}");
        let e = user_from_pb(Some(pb::User {
            id: "app".into(),
            primary_party: "a b".into(),
            rights: vec![],
        }))
        .unwrap_err();
        assert!(
            e.to_string().starts_with("invalid user.primary_party"),
            "{e}"
        );
    }
}
