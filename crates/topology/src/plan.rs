//! Deciding what an admin request means for the topology: pure functions over the current
//! [`TopologyState`], no I/O. Each either refuses the request with a precise error, finds
//! it already in effect (idempotent repeat), or proposes one [`TopologyChange`].

use ordo_core::{MemberId, PartyId, PublicKey, Timestamp};
use std::collections::BTreeSet;

use ordo_protocol::topology::{encode_key, validate_shard_name, validate_user_id};
use ordo_protocol::{
    DomainParameters, MemberRole, TopologyChange, TopologyState, TopologyTransaction, User,
    UserRight,
};

use crate::config::validate_parameters;
use crate::error::TopologyError;

/// What to do about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request is already in effect: this change (as it was once applied) needs no new
    /// transaction.
    Unchanged(TopologyChange),
    /// Broadcast this change.
    Propose(TopologyChange),
}

impl Decision {
    pub fn change(&self) -> &TopologyChange {
        match self {
            Self::Unchanged(c) | Self::Propose(c) => c,
        }
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> TopologyError {
    TopologyError::InvalidArgument(format!("invalid {what}: {e}"))
}

fn member_of(name: &str, public_key: &[u8]) -> Result<(MemberId, PublicKey), TopologyError> {
    ordo_core::ids::validate_name(name).map_err(|e| invalid("name", e))?;
    let key = PublicKey::from_bytes(public_key).map_err(|e| invalid("public_key", e))?;
    let member = MemberId::new(name, &key).map_err(|e| invalid("name", e))?;
    Ok((member, key))
}

fn describe(role: &MemberRole) -> String {
    match role {
        MemberRole::TopologyManager => "the topology manager".into(),
        MemberRole::Mediator => "the mediator".into(),
        MemberRole::Participant { shard } => format!("the participant of shard {shard}"),
    }
}

/// Adds (or finds) the member `name` with `public_key` in `role`.
fn add_member(
    state: &TopologyState,
    member: &MemberId,
    key: &PublicKey,
    role: MemberRole,
) -> Result<Decision, TopologyError> {
    let change = TopologyChange::AddMember {
        member: member.clone(),
        public_key: encode_key(key),
        role: role.clone(),
    };
    match state.members.get(member) {
        Some(existing) if existing.role == role => Ok(Decision::Unchanged(change)),
        Some(existing) => Err(TopologyError::AlreadyExists(format!(
            "member {member} is already registered as {}",
            describe(&existing.role)
        ))),
        None => Ok(Decision::Propose(change)),
    }
}

/// RegisterParticipant: the participant service of `shard`.
pub fn register_participant(
    state: &TopologyState,
    name: &str,
    public_key: &[u8],
    shard: &str,
) -> Result<(MemberId, Decision), TopologyError> {
    let (member, key) = member_of(name, public_key)?;
    validate_shard_name(shard).map_err(TopologyError::InvalidArgument)?;
    let role = MemberRole::Participant {
        shard: shard.to_owned(),
    };
    if state.members.get(&member).is_none_or(|m| m.role != role)
        && let Some(s) = state.shards.get(shard)
        && s.participant != member
    {
        return Err(TopologyError::AlreadyExists(format!(
            "shard {shard} is already served by participant {}",
            s.participant
        )));
    }
    let decision = add_member(state, &member, &key, role)?;
    Ok((member, decision))
}

/// RegisterMediator: the domain's one mediator.
pub fn register_mediator(
    state: &TopologyState,
    name: &str,
    public_key: &[u8],
) -> Result<(MemberId, Decision), TopologyError> {
    let (member, key) = member_of(name, public_key)?;
    if let Some(existing) = state.mediator()
        && *existing != member
    {
        return Err(TopologyError::AlreadyExists(format!(
            "the domain already has mediator {existing} (one mediator per domain)"
        )));
    }
    let decision = add_member(state, &member, &key, MemberRole::Mediator)?;
    Ok((member, decision))
}

/// AllocateParty on `shard`, or on the least-loaded shard when `shard` is empty.
pub fn allocate_party(
    state: &TopologyState,
    party: &str,
    shard: &str,
) -> Result<Decision, TopologyError> {
    let party = PartyId::new(party).map_err(|e| TopologyError::InvalidArgument(e.to_string()))?;
    if let Some(existing) = state.shard_of(&party) {
        return Err(TopologyError::AlreadyExists(format!(
            "party {party} already exists (on shard {existing})"
        )));
    }
    let shard = if shard.is_empty() {
        state.least_loaded_shard().ok_or_else(|| {
            TopologyError::FailedPrecondition(
                "no participant shard is registered yet: register a participant first".into(),
            )
        })?
    } else {
        validate_shard_name(shard).map_err(TopologyError::InvalidArgument)?;
        if !state.shards.contains_key(shard) {
            return Err(unknown_shard(state, shard));
        }
        shard
    };
    Ok(Decision::Propose(TopologyChange::AllocateParty {
        party,
        shard: shard.to_owned(),
    }))
}

/// NOT_FOUND for `shard`, listing the known ones.
pub fn unknown_shard(state: &TopologyState, shard: &str) -> TopologyError {
    let known: Vec<&str> = state.shards.keys().map(String::as_str).collect();
    TopologyError::NotFound(format!(
        "unknown shard {shard:?}; registered shards: [{}]",
        known.join(", ")
    ))
}

/// VetPackage. A package id is 1 to 256 printable ASCII characters without whitespace.
pub fn vet_package(
    state: &TopologyState,
    package_id: &str,
    source: &str,
    max_bytes: usize,
) -> Result<Decision, TopologyError> {
    let id_ok = !package_id.is_empty()
        && package_id.len() <= 256
        && package_id.bytes().all(|b| b.is_ascii_graphic());
    if !id_ok {
        return Err(invalid(
            "package_id",
            format!("{package_id:?}: use 1 to 256 printable ASCII characters, no whitespace"),
        ));
    }
    if source.is_empty() {
        return Err(invalid(
            "source",
            format!("package {package_id} has an empty source"),
        ));
    }
    if source.len() > max_bytes {
        return Err(invalid(
            "source",
            format!(
                "package {package_id} is {} bytes, more than the {max_bytes} allowed (max_package_bytes)",
                source.len()
            ),
        ));
    }
    let change = TopologyChange::VetPackage {
        package_id: package_id.to_owned(),
        source: source.to_owned(),
    };
    match state.packages.get(package_id) {
        Some(existing) if existing == source => Ok(Decision::Unchanged(change)),
        Some(_) => Err(TopologyError::AlreadyExists(format!(
            "package {package_id} is already vetted with a different source: give the new version a new id"
        ))),
        None => Ok(Decision::Propose(change)),
    }
}

/// SetParameters.
pub fn set_parameters(
    state: &TopologyState,
    parameters: DomainParameters,
) -> Result<Decision, TopologyError> {
    validate_parameters(&parameters).map_err(|e| invalid("parameters", e))?;
    let unchanged = state.parameters == parameters && state.serial > 0;
    let change = TopologyChange::SetParameters { parameters };
    Ok(if unchanged {
        Decision::Unchanged(change)
    } else {
        Decision::Propose(change)
    })
}

fn user_id(id: &str) -> Result<(), TopologyError> {
    validate_user_id(id).map_err(|e| invalid("user_id", e))
}

fn unknown_user(id: &str) -> TopologyError {
    TopologyError::NotFound(format!("unknown user {id}: create it first (CreateUser)"))
}

/// NOT_FOUND for the first party (the primary one, then those the rights name) that is not
/// allocated.
fn check_parties<'a>(
    state: &TopologyState,
    user_id: &str,
    primary: Option<&PartyId>,
    rights: impl IntoIterator<Item = &'a UserRight>,
) -> Result<(), TopologyError> {
    if let Some(p) = primary
        && !state.parties.contains_key(p)
    {
        return Err(TopologyError::NotFound(format!(
            "unknown party {p} (primary party of user {user_id}): allocate it first"
        )));
    }
    for right in rights {
        if let Some(p) = right.party()
            && !state.parties.contains_key(p)
        {
            return Err(TopologyError::NotFound(format!(
                "unknown party {p} (in right {right} of user {user_id}): allocate it first"
            )));
        }
    }
    Ok(())
}

/// The rights of a grant or revoke: at least one, duplicates merged.
fn requested(rights: &[UserRight]) -> Result<BTreeSet<UserRight>, TopologyError> {
    if rights.is_empty() {
        return Err(invalid("rights", "empty: name at least one right"));
    }
    Ok(rights.iter().cloned().collect())
}

/// CreateUser. An existing id is refused (ALREADY_EXISTS), as in Daml: a user is created
/// once, and changed by granting and revoking rights.
pub fn create_user(state: &TopologyState, user: User) -> Result<Decision, TopologyError> {
    validate_user_id(&user.id).map_err(|e| invalid("user.id", e))?;
    if state.users.contains_key(&user.id) {
        return Err(TopologyError::AlreadyExists(format!(
            "user {} already exists: grant or revoke its rights, or delete it first",
            user.id
        )));
    }
    check_parties(state, &user.id, user.primary_party.as_ref(), &user.rights)?;
    Ok(Decision::Propose(TopologyChange::CreateUser { user }))
}

/// DeleteUser. An unknown user is NOT_FOUND (as in Daml), so a repeat tells the caller the
/// user is already gone.
pub fn delete_user(state: &TopologyState, id: &str) -> Result<Decision, TopologyError> {
    user_id(id)?;
    if !state.users.contains_key(id) {
        return Err(unknown_user(id));
    }
    Ok(Decision::Propose(TopologyChange::DeleteUser {
        user_id: id.to_owned(),
    }))
}

/// GrantUserRights: proposes only the rights the user does not hold yet, and returns them;
/// when it holds them all, nothing is broadcast.
pub fn grant_user_rights(
    state: &TopologyState,
    id: &str,
    rights: &[UserRight],
) -> Result<(Vec<UserRight>, Decision), TopologyError> {
    user_id(id)?;
    let rights = requested(rights)?;
    let user = state.users.get(id).ok_or_else(|| unknown_user(id))?;
    check_parties(state, id, None, &rights)?;
    let new: Vec<UserRight> = rights.difference(&user.rights).cloned().collect();
    Ok(if new.is_empty() {
        let change = TopologyChange::GrantUserRights {
            user_id: id.to_owned(),
            rights: rights.into_iter().collect(),
        };
        (new, Decision::Unchanged(change))
    } else {
        let change = TopologyChange::GrantUserRights {
            user_id: id.to_owned(),
            rights: new.clone(),
        };
        (new, Decision::Propose(change))
    })
}

/// RevokeUserRights: proposes only the rights the user holds, and returns them; when it
/// holds none of them, nothing is broadcast. A right naming an unknown party is simply not
/// held.
pub fn revoke_user_rights(
    state: &TopologyState,
    id: &str,
    rights: &[UserRight],
) -> Result<(Vec<UserRight>, Decision), TopologyError> {
    user_id(id)?;
    let rights = requested(rights)?;
    let user = state.users.get(id).ok_or_else(|| unknown_user(id))?;
    let held: Vec<UserRight> = rights.intersection(&user.rights).cloned().collect();
    Ok(if held.is_empty() {
        let change = TopologyChange::RevokeUserRights {
            user_id: id.to_owned(),
            rights: rights.into_iter().collect(),
        };
        (held, Decision::Unchanged(change))
    } else {
        let change = TopologyChange::RevokeUserRights {
            user_id: id.to_owned(),
            rights: held.clone(),
        };
        (held, Decision::Propose(change))
    })
}

/// The self-service rule for users: the participant serving `shard` may, without the admin
/// token, create users and grant or revoke rights only when every party the request names
/// (`primary` and the rights) is hosted on its own shard, and no right reaches beyond it
/// (`CanReadAsAnyParty`, `ParticipantAdmin`). A user's rights hold on every shard, so
/// anything wider would let one participant speak for another's parties.
pub fn participant_may_name<'a>(
    state: &TopologyState,
    shard: &str,
    what: &str,
    primary: Option<&PartyId>,
    rights: impl IntoIterator<Item = &'a UserRight>,
) -> Result<(), TopologyError> {
    let denied = |why: String| {
        TopologyError::PermissionDenied(format!(
            "the participant of shard {shard} may not {what}: {why}; that needs the topology \
             admin token"
        ))
    };
    let foreign = |p: &PartyId| match state.shard_of(p) {
        Some(s) if s == shard => None,
        Some(s) => Some(format!("party {p} is hosted on shard {s}")),
        None => Some(format!("party {p} is not hosted on shard {shard}")),
    };
    if let Some(why) = primary.and_then(foreign) {
        return Err(denied(why));
    }
    for right in rights {
        let why = match right.party() {
            Some(p) => foreign(p).map(|why| format!("{why} (right {right})")),
            None => Some(format!("right {right} reaches beyond shard {shard}")),
        };
        if let Some(why) = why {
            return Err(denied(why));
        }
    }
    Ok(())
}

/// The self-service rule for DeleteUser: the participant serving `shard` may delete a user
/// only when everything the user holds names its own shard's parties.
pub fn participant_may_delete(
    state: &TopologyState,
    shard: &str,
    id: &str,
) -> Result<(), TopologyError> {
    let user = state.users.get(id).ok_or_else(|| unknown_user(id))?;
    participant_may_name(
        state,
        shard,
        &format!("delete user {id}"),
        user.primary_party.as_ref(),
        &user.rights,
    )
}

/// The transaction that would carry `change` next, if the current state accepts it (the
/// same fold every member runs, on a copy).
pub fn next_transaction(
    state: &TopologyState,
    change: TopologyChange,
) -> Result<TopologyTransaction, TopologyError> {
    let tx = TopologyTransaction {
        serial: state.serial + 1,
        change,
    };
    let mut probe = state.clone();
    probe
        .apply(&tx, Timestamp(state.timestamp.0 + 1))
        .map_err(|e| TopologyError::FailedPrecondition(e.to_string()))?;
    Ok(tx)
}

/// The metrics label of a change.
pub fn kind(change: &TopologyChange) -> &'static str {
    match change {
        TopologyChange::AddMember { .. } => "add_member",
        TopologyChange::AllocateParty { .. } => "allocate_party",
        TopologyChange::VetPackage { .. } => "vet_package",
        TopologyChange::SetSequencers { .. } => "set_sequencers",
        TopologyChange::SetParameters { .. } => "set_parameters",
        TopologyChange::CreateUser { .. } => "create_user",
        TopologyChange::DeleteUser { .. } => "delete_user",
        TopologyChange::GrantUserRights { .. } => "grant_user_rights",
        TopologyChange::RevokeUserRights { .. } => "revoke_user_rights",
    }
}

#[cfg(test)]
mod tests {
    use ordo_core::KeyPair;
    use tonic::Code;

    use super::*;

    fn apply(state: &mut TopologyState, d: Decision) {
        let Decision::Propose(change) = d else {
            panic!("expected a proposal, got {d:?}")
        };
        let tx = next_transaction(state, change).unwrap();
        let at = Timestamp(state.timestamp.0 + 10);
        state.apply(&tx, at).unwrap();
    }

    fn key() -> Vec<u8> {
        KeyPair::generate().public().as_bytes().to_vec()
    }

    fn with_shards() -> TopologyState {
        let mut s = TopologyState::default();
        let (_, d) = register_participant(&s, "p1", &key(), "shard-1").unwrap();
        apply(&mut s, d);
        let (_, d) = register_participant(&s, "p2", &key(), "shard-2").unwrap();
        apply(&mut s, d);
        s
    }

    #[test]
    fn participants_are_idempotent_and_shards_exclusive() {
        let mut s = TopologyState::default();
        let k = key();
        let (id, d) = register_participant(&s, "p1", &k, "shard-1").unwrap();
        apply(&mut s, d);
        let (again, d) = register_participant(&s, "p1", &k, "shard-1").unwrap();
        assert_eq!(again, id);
        assert!(matches!(d, Decision::Unchanged(_)));
        // Another member for the same shard.
        let e = register_participant(&s, "p2", &key(), "shard-1").unwrap_err();
        assert_eq!(Status::from(e).code(), Code::AlreadyExists);
        // The same member for another shard.
        let e = register_participant(&s, "p1", &k, "shard-2").unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        // Malformed input.
        for (name, key, shard) in [
            ("P1", k.clone(), "shard-x"),
            ("p1", vec![1, 2, 3], "shard-x"),
            ("p1", k.clone(), "Shard_X"),
        ] {
            let e = register_participant(&s, name, &key, shard).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        }
    }

    use tonic::Status;

    #[test]
    fn one_mediator_per_domain() {
        let mut s = TopologyState::default();
        let k = key();
        let (_, d) = register_mediator(&s, "mediator", &k).unwrap();
        apply(&mut s, d);
        assert!(matches!(
            register_mediator(&s, "mediator", &k).unwrap().1,
            Decision::Unchanged(_)
        ));
        let e = register_mediator(&s, "mediator-2", &key()).unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        assert!(e.to_string().contains("already has mediator"), "{e}");
    }

    #[test]
    fn parties_are_placed_explicitly_or_least_loaded() {
        let e = allocate_party(&TopologyState::default(), "alice", "").unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);

        let mut s = with_shards();
        let d = allocate_party(&s, "alice", "shard-1").unwrap();
        apply(&mut s, d);
        let d = allocate_party(&s, "bob", "").unwrap();
        assert!(
            matches!(d.change(), TopologyChange::AllocateParty { shard, .. } if shard == "shard-2")
        );
        apply(&mut s, d);

        let e = allocate_party(&s, "alice", "shard-2").unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        assert!(e.to_string().contains("shard-1"), "{e}");
        let e = allocate_party(&s, "carol", "shard-9").unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.to_string().contains("shard-1, shard-2"), "{e}");
        let e = allocate_party(&s, "no spaces", "shard-1").unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[test]
    fn packages_and_parameters() {
        let mut s = with_shards();
        let d = vet_package(&s, "pkg-1", "template A", 100).unwrap();
        apply(&mut s, d);
        assert!(matches!(
            vet_package(&s, "pkg-1", "template A", 100).unwrap(),
            Decision::Unchanged(_)
        ));
        assert_eq!(
            vet_package(&s, "pkg-1", "template B", 100)
                .unwrap_err()
                .code(),
            Code::AlreadyExists
        );
        assert_eq!(
            vet_package(&s, "pkg 2", "x", 100).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            vet_package(&s, "pkg-2", &"x".repeat(101), 100)
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );

        let mut p = s.parameters.clone();
        assert!(matches!(
            set_parameters(&s, p.clone()).unwrap(),
            Decision::Unchanged(_)
        ));
        p.deduplication_period_us = 5;
        let d = set_parameters(&s, p.clone()).unwrap();
        apply(&mut s, d);
        assert_eq!(s.parameters, p);
        p.max_command_bytes = 0;
        assert_eq!(
            set_parameters(&s, p).unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn next_transaction_refuses_what_the_fold_refuses() {
        let s = with_shards();
        let change = TopologyChange::AllocateParty {
            party: PartyId::new("x").unwrap(),
            shard: "nowhere".into(),
        };
        let e = next_transaction(&s, change).unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.to_string().contains("unknown shard nowhere"), "{e}");
    }

    fn party(name: &str) -> PartyId {
        PartyId::new(name).unwrap()
    }

    /// shard-1 hosts alice and bob, shard-2 hosts carol.
    fn with_parties() -> TopologyState {
        let mut s = with_shards();
        for (p, shard) in [
            ("alice", "shard-1"),
            ("bob", "shard-1"),
            ("carol", "shard-2"),
        ] {
            let d = allocate_party(&s, p, shard).unwrap();
            apply(&mut s, d);
        }
        s
    }

    fn user(id: &str, primary: Option<&str>, rights: &[UserRight]) -> User {
        User {
            id: id.into(),
            primary_party: primary.map(party),
            rights: rights.iter().cloned().collect(),
        }
    }

    #[test]
    fn users_are_created_once_and_name_known_parties() {
        let mut s = with_parties();
        let app = user(
            "app-1",
            Some("alice"),
            &[UserRight::CanActAs(party("alice"))],
        );
        let d = create_user(&s, app.clone()).unwrap();
        assert_eq!(
            d,
            Decision::Propose(TopologyChange::CreateUser { user: app.clone() })
        );
        apply(&mut s, d);
        assert_eq!(s.users.get("app-1"), Some(&app));

        let e = create_user(&s, app).unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        assert!(e.to_string().contains("user app-1 already exists"), "{e}");

        let e = create_user(&s, user("app-2", Some("dave"), &[])).unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(
            e.to_string().contains("unknown party dave (primary party"),
            "{e}"
        );
        let e = create_user(
            &s,
            user("app-2", None, &[UserRight::CanReadAs(party("dave"))]),
        )
        .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(
            e.to_string()
                .contains("unknown party dave (in right CanReadAs(dave)"),
            "{e}"
        );
        let e = create_user(&s, user("App 2", None, &[])).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.to_string().starts_with("invalid user.id"), "{e}");
    }

    #[test]
    fn grants_and_revokes_propose_only_what_changes() {
        let mut s = with_parties();
        let act_alice = UserRight::CanActAs(party("alice"));
        let read_carol = UserRight::CanReadAs(party("carol"));
        let d = create_user(&s, user("app-1", None, std::slice::from_ref(&act_alice))).unwrap();
        apply(&mut s, d);

        // Only the right not held yet is proposed and answered.
        let (new, d) = grant_user_rights(
            &s,
            "app-1",
            &[act_alice.clone(), read_carol.clone(), read_carol.clone()],
        )
        .unwrap();
        assert_eq!(new, vec![read_carol.clone()]);
        assert_eq!(
            d,
            Decision::Propose(TopologyChange::GrantUserRights {
                user_id: "app-1".into(),
                rights: vec![read_carol.clone()],
            })
        );
        apply(&mut s, d);
        // A repeat broadcasts nothing.
        let (new, d) = grant_user_rights(&s, "app-1", std::slice::from_ref(&read_carol)).unwrap();
        assert!(new.is_empty());
        assert!(matches!(d, Decision::Unchanged(_)), "{d:?}");

        // Revoke: only what is held.
        let (gone, d) = revoke_user_rights(
            &s,
            "app-1",
            &[read_carol.clone(), UserRight::ParticipantAdmin],
        )
        .unwrap();
        assert_eq!(gone, vec![read_carol.clone()]);
        apply(&mut s, d);
        assert_eq!(s.users["app-1"].rights, [act_alice.clone()].into());
        let (gone, d) = revoke_user_rights(&s, "app-1", std::slice::from_ref(&read_carol)).unwrap();
        assert!(gone.is_empty());
        assert!(matches!(d, Decision::Unchanged(_)), "{d:?}");

        // Refusals.
        let e = grant_user_rights(&s, "app-1", &[UserRight::CanActAs(party("dave"))]).unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.to_string().contains("unknown party dave"), "{e}");
        for e in [
            grant_user_rights(&s, "nobody", std::slice::from_ref(&act_alice)).unwrap_err(),
            revoke_user_rights(&s, "nobody", std::slice::from_ref(&act_alice)).unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::NotFound);
            assert!(e.to_string().contains("unknown user nobody"), "{e}");
        }
        for e in [
            grant_user_rights(&s, "app-1", &[]).unwrap_err(),
            revoke_user_rights(&s, "app-1", &[]).unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.to_string().contains("invalid rights: empty"), "{e}");
        }
        let e = grant_user_rights(&s, "", &[act_alice]).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[test]
    fn users_are_deleted_once() {
        let mut s = with_parties();
        let d = create_user(&s, user("app-1", None, &[])).unwrap();
        apply(&mut s, d);
        let d = delete_user(&s, "app-1").unwrap();
        apply(&mut s, d);
        assert!(s.users.is_empty());
        let e = delete_user(&s, "app-1").unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.to_string().contains("unknown user app-1"), "{e}");
        assert_eq!(
            delete_user(&s, "APP").unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn a_participant_manages_only_users_of_its_own_shard() {
        let mut s = with_parties();
        let (alice, bob, carol) = (party("alice"), party("bob"), party("carol"));
        let own = [
            UserRight::CanActAs(alice.clone()),
            UserRight::CanReadAs(bob.clone()),
        ];
        participant_may_name(&s, "shard-1", "create user app-1", Some(&alice), &own).unwrap();
        // No parties at all: nothing beyond the shard.
        participant_may_name(&s, "shard-2", "create user app-0", None, &[]).unwrap();

        let denied = |primary: Option<&PartyId>, rights: &[UserRight], why: &str| {
            let e =
                participant_may_name(&s, "shard-1", "grant rights to user app-1", primary, rights)
                    .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied);
            let msg = e.to_string();
            assert!(msg.contains(why), "{msg}");
            assert!(
                msg.starts_with("the participant of shard shard-1 may not grant rights"),
                "{msg}"
            );
            assert!(
                msg.ends_with("that needs the topology admin token"),
                "{msg}"
            );
        };
        denied(
            None,
            &[own[0].clone(), UserRight::CanReadAs(carol.clone())],
            "party carol is hosted on shard shard-2 (right CanReadAs(carol))",
        );
        denied(Some(&carol), &own, "party carol is hosted on shard shard-2");
        denied(
            None,
            &[UserRight::CanActAs(party("dave"))],
            "party dave is not hosted on shard shard-1",
        );
        denied(
            None,
            &[UserRight::CanReadAsAnyParty],
            "right CanReadAsAnyParty reaches beyond shard shard-1",
        );
        denied(
            None,
            &[UserRight::ParticipantAdmin],
            "right ParticipantAdmin reaches beyond shard shard-1",
        );

        // Deleting: every right the user holds must name the shard's parties.
        let d = create_user(&s, user("mine", Some("alice"), &own)).unwrap();
        apply(&mut s, d);
        let d = create_user(
            &s,
            user(
                "wide",
                None,
                &[own[0].clone(), UserRight::CanReadAsAnyParty],
            ),
        )
        .unwrap();
        apply(&mut s, d);
        participant_may_delete(&s, "shard-1", "mine").unwrap();
        let e = participant_may_delete(&s, "shard-2", "mine").unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(
            e.to_string()
                .contains("may not delete user mine: party alice is hosted on shard shard-1"),
            "{e}"
        );
        let e = participant_may_delete(&s, "shard-1", "wide").unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.to_string().contains("CanReadAsAnyParty"), "{e}");
        assert_eq!(
            participant_may_delete(&s, "shard-1", "nobody")
                .unwrap_err()
                .code(),
            Code::NotFound
        );
    }
}
