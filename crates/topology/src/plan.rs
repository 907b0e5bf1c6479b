//! Deciding what an admin request means for the topology: pure functions over the current
//! [`TopologyState`], no I/O. Each either refuses the request with a precise error, finds
//! it already in effect (idempotent repeat), or proposes one [`TopologyChange`].

use ordo_core::{MemberId, PartyId, PublicKey, Timestamp};
use ordo_protocol::topology::{encode_key, validate_shard_name};
use ordo_protocol::{
    DomainParameters, MemberRole, TopologyChange, TopologyState, TopologyTransaction,
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
}
