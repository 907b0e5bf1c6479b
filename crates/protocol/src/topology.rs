//! Topology: who the members are, which shard hosts which party, which packages are vetted,
//! and the domain's parameters. The topology manager is the only author: it signs every
//! change as a [`TopologyTransaction`] and broadcasts it through the sequencer. Every member
//! folds the transactions, in sequencing order, into its [`TopologyState`], so all members
//! switch at the same point of the total order.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{MemberId, PartyId, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// What a member does in the domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum MemberRole {
    TopologyManager,
    Mediator,
    /// The participant service of one shard.
    Participant {
        shard: String,
    },
}

/// Domain-wide protocol parameters. Durations are microseconds of sequencer time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainParameters {
    /// How long after a confirmation request's sequencing time the mediator waits for
    /// responses before it decides Timeout.
    pub participant_response_timeout_us: i64,
    /// How long a command id is remembered for deduplication.
    pub deduplication_period_us: i64,
    /// The largest command (serialised) a participant accepts.
    pub max_command_bytes: usize,
    /// The largest confirmation request a participant sends, and the largest view it
    /// reads: a larger one is refused before it is decoded.
    pub max_request_bytes: usize,
    /// The most actions (create, exercise, fetch nodes) one transaction may have. A
    /// received view with more nodes, more roots or more input contracts is malformed.
    pub max_transaction_nodes: usize,
    /// The script operations one interpretation may take: a submitting participant
    /// interprets its command under it, and a confirming participant re-interprets each view
    /// it receives under one such budget, whatever the view's number of roots and inputs.
    pub max_interpretation_steps: u64,
    /// The largest contract (canonical bytes of its instance).
    pub max_contract_bytes: usize,
    /// The deepest nesting of exercises inside choice bodies.
    pub max_exercise_depth: usize,
}

impl Default for DomainParameters {
    fn default() -> Self {
        Self {
            participant_response_timeout_us: 10_000_000,
            deduplication_period_us: 24 * 3600 * 1_000_000,
            max_command_bytes: 256 * 1024,
            max_request_bytes: 4 * 1024 * 1024,
            max_transaction_nodes: 1_000,
            max_interpretation_steps: 100_000,
            max_contract_bytes: 64 * 1024,
            max_exercise_depth: 8,
        }
    }
}

/// One change to topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum TopologyChange {
    /// A member joins with its ed25519 key (hex). The id must be derived from that key.
    AddMember {
        member: MemberId,
        public_key: String,
        #[serde(flatten)]
        role: MemberRole,
    },
    /// A party is hosted by a shard from now on. Allocating an existing party is refused.
    AllocateParty {
        party: PartyId,
        shard: String,
    },
    /// A package (its file's text) is vetted: every participant validates with it.
    VetPackage {
        package_id: String,
        source: String,
    },
    /// Where members reach the sequencers.
    SetSequencers {
        endpoints: Vec<String>,
    },
    SetParameters {
        parameters: DomainParameters,
    },
    /// A user (Daml's user management), domain-wide: its rights hold on every shard.
    /// Creating an existing user is refused.
    CreateUser {
        user: User,
    },
    /// Removes a user and its rights.
    DeleteUser {
        user_id: String,
    },
    /// Adds rights to a user (those it has already stay).
    GrantUserRights {
        user_id: String,
        rights: Vec<UserRight>,
    },
    /// Removes rights from a user (those it does not have are ignored).
    RevokeUserRights {
        user_id: String,
        rights: Vec<UserRight>,
    },
}

/// A user: an id that tokens name (`sub`), an optional primary party, and rights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_party: Option<PartyId>,
    #[serde(default)]
    pub rights: BTreeSet<UserRight>,
}

/// What a user may do (Daml's user rights).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "right", content = "party")]
pub enum UserRight {
    /// Act (and read) as the party.
    CanActAs(PartyId),
    /// Read as the party.
    CanReadAs(PartyId),
    /// Read as any party.
    CanReadAsAnyParty,
    /// Administer the participants (parties, packages, users, pruning).
    ParticipantAdmin,
}

impl UserRight {
    /// The party the right names, if any.
    pub fn party(&self) -> Option<&PartyId> {
        match self {
            Self::CanActAs(p) | Self::CanReadAs(p) => Some(p),
            Self::CanReadAsAnyParty | Self::ParticipantAdmin => None,
        }
    }
}

/// Daml's spelling: `CanActAs(alice)`, `CanReadAsAnyParty`.
impl std::fmt::Display for UserRight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CanActAs(p) => write!(f, "CanActAs({p})"),
            Self::CanReadAs(p) => write!(f, "CanReadAs({p})"),
            Self::CanReadAsAnyParty => f.write_str("CanReadAsAnyParty"),
            Self::ParticipantAdmin => f.write_str("ParticipantAdmin"),
        }
    }
}

/// A user id: 1 to 128 of `[a-z0-9@^$.!`-#+'~_|:]` (Daml's user id characters, lower case
/// letters only).
pub fn validate_user_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"@^$.!`-#+'~_|:".contains(&b)
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user id {id:?}: use 1 to 128 of [a-z0-9] and @^$.!`-#+'~_|:"
        ))
    }
}

/// A change with the topology manager's serial number (1, 2, 3, …, no gaps): a member that
/// sees serial n+2 after n knows it missed one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyTransaction {
    pub serial: u64,
    pub change: TopologyChange,
}

/// A shard: one participant service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub name: String,
    pub participant: MemberId,
}

/// A member as topology knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub public_key: String,
    #[serde(flatten)]
    pub role: MemberRole,
    pub added_at: Timestamp,
    /// `public_key` decoded, once per state: every received message's signature is checked
    /// under its sender's key, and decoding one (a point decompression) costs as much as a
    /// fifth of a verification.
    #[serde(skip)]
    decoded: DecodedKey,
}

/// A member's key decoded on first use; equal to every other (it is derived from
/// `public_key`, which equality compares).
#[derive(Clone, Debug, Default)]
struct DecodedKey(std::sync::OnceLock<Option<PublicKey>>);

impl PartialEq for DecodedKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DecodedKey {}

impl MemberInfo {
    /// The member's key (`None` if `public_key` does not decode, which `apply` refuses).
    pub fn key(&self) -> Option<PublicKey> {
        *self
            .decoded
            .0
            .get_or_init(|| decode_key(&self.public_key).ok())
    }
}

/// The topology as of some sequencing timestamp: the fold of every transaction so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyState {
    /// The serial of the last transaction applied (0: none).
    pub serial: u64,
    /// The sequencing timestamp of the last transaction applied.
    pub timestamp: Timestamp,
    pub members: BTreeMap<MemberId, MemberInfo>,
    pub shards: BTreeMap<String, Shard>,
    pub parties: BTreeMap<PartyId, String>,
    /// Vetted packages: id → the package file's text.
    pub packages: BTreeMap<String, String>,
    pub sequencers: Vec<String>,
    pub parameters: DomainParameters,
    /// Users by id.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

impl TopologyState {
    /// Applies `tx`, sequenced at `at`. A transaction that does not fit (a serial out of
    /// order, a key that does not match its member id, a party on an unknown shard, …) is
    /// refused and leaves the state unchanged; members log and skip it, so every member
    /// skips the same ones.
    pub fn apply(&mut self, tx: &TopologyTransaction, at: Timestamp) -> Result<(), ProtocolError> {
        let fail = |reason: String| ProtocolError::Topology {
            serial: tx.serial,
            reason,
        };
        if tx.serial != self.serial + 1 {
            return Err(fail(format!(
                "out of order: expected serial {}",
                self.serial + 1
            )));
        }
        match &tx.change {
            TopologyChange::AddMember {
                member,
                public_key,
                role,
            } => {
                let key = decode_key(public_key).map_err(fail)?;
                if !member.is_bound_to(&key) {
                    return Err(fail(format!("member {member} is not derived from its key")));
                }
                if let Some(existing) = self.members.get(member)
                    && existing.role != *role
                {
                    return Err(fail(format!(
                        "member {member} already has role {:?}",
                        existing.role
                    )));
                }
                if let MemberRole::Participant { shard } = role {
                    validate_shard_name(shard).map_err(fail)?;
                    if let Some(s) = self.shards.get(shard)
                        && &s.participant != member
                    {
                        return Err(fail(format!(
                            "shard {shard} is already served by {}",
                            s.participant
                        )));
                    }
                }
                if *role == MemberRole::Mediator
                    && let Some(m) = self.mediator()
                    && m != member
                {
                    return Err(fail(format!("the domain already has mediator {m}")));
                }
                if let MemberRole::Participant { shard } = role {
                    self.shards.insert(
                        shard.clone(),
                        Shard {
                            name: shard.clone(),
                            participant: member.clone(),
                        },
                    );
                }
                self.members
                    .entry(member.clone())
                    .or_insert_with(|| MemberInfo {
                        public_key: public_key.clone(),
                        role: role.clone(),
                        added_at: at,
                        decoded: DecodedKey(Some(key).into()),
                    });
            }
            TopologyChange::AllocateParty { party, shard } => {
                if let Some(existing) = self.parties.get(party) {
                    return Err(fail(format!(
                        "party {party} already exists (on shard {existing})"
                    )));
                }
                if !self.shards.contains_key(shard) {
                    return Err(fail(format!("unknown shard {shard}")));
                }
                self.parties.insert(party.clone(), shard.clone());
            }
            TopologyChange::VetPackage { package_id, source } => {
                self.packages
                    .entry(package_id.clone())
                    .or_insert_with(|| source.clone());
            }
            TopologyChange::SetSequencers { endpoints } => self.sequencers = endpoints.clone(),
            TopologyChange::SetParameters { parameters } => {
                if parameters.participant_response_timeout_us <= 0 {
                    return Err(fail("participant_response_timeout_us must be > 0".into()));
                }
                self.parameters = parameters.clone();
            }
            TopologyChange::CreateUser { user } => {
                validate_user_id(&user.id).map_err(fail)?;
                if self.users.contains_key(&user.id) {
                    return Err(fail(format!("user {} already exists", user.id)));
                }
                self.check_rights(user.primary_party.iter(), &user.rights)
                    .map_err(fail)?;
                self.users.insert(user.id.clone(), user.clone());
            }
            TopologyChange::DeleteUser { user_id } => {
                if self.users.remove(user_id).is_none() {
                    return Err(fail(format!("unknown user {user_id}")));
                }
            }
            TopologyChange::GrantUserRights { user_id, rights } => {
                let rights: BTreeSet<UserRight> = rights.iter().cloned().collect();
                self.check_rights(std::iter::empty(), &rights)
                    .map_err(fail)?;
                let user = self
                    .users
                    .get_mut(user_id)
                    .ok_or_else(|| fail(format!("unknown user {user_id}")))?;
                user.rights.extend(rights);
            }
            TopologyChange::RevokeUserRights { user_id, rights } => {
                let user = self
                    .users
                    .get_mut(user_id)
                    .ok_or_else(|| fail(format!("unknown user {user_id}")))?;
                for r in rights {
                    user.rights.remove(r);
                }
            }
        }
        self.serial = tx.serial;
        self.timestamp = at;
        Ok(())
    }

    /// Every party a right (or a primary party) names must be allocated.
    fn check_rights<'a>(
        &self,
        primary: impl Iterator<Item = &'a PartyId>,
        rights: &'a BTreeSet<UserRight>,
    ) -> Result<(), String> {
        let named = rights.iter().filter_map(UserRight::party);
        match primary
            .chain(named)
            .find(|p| !self.parties.contains_key(*p))
        {
            Some(p) => Err(format!("unknown party {p}")),
            None => Ok(()),
        }
    }

    pub fn mediator(&self) -> Option<&MemberId> {
        self.members
            .iter()
            .find(|(_, m)| m.role == MemberRole::Mediator)
            .map(|(id, _)| id)
    }

    pub fn topology_manager(&self) -> Option<&MemberId> {
        self.members
            .iter()
            .find(|(_, m)| m.role == MemberRole::TopologyManager)
            .map(|(id, _)| id)
    }

    /// The member's registered key.
    pub fn key_of(&self, member: &MemberId) -> Option<PublicKey> {
        self.members.get(member).and_then(MemberInfo::key)
    }

    /// The shard hosting `party`.
    pub fn shard_of(&self, party: &PartyId) -> Option<&str> {
        self.parties.get(party).map(String::as_str)
    }

    /// The participant member hosting `party`.
    pub fn host_of(&self, party: &PartyId) -> Option<&MemberId> {
        self.shard_of(party)
            .and_then(|s| self.shards.get(s))
            .map(|s| &s.participant)
    }

    /// The parties a participant hosts.
    pub fn parties_of<'a>(
        &'a self,
        participant: &'a MemberId,
    ) -> impl Iterator<Item = &'a PartyId> {
        self.parties.iter().filter_map(move |(p, shard)| {
            (self.shards.get(shard).map(|s| &s.participant) == Some(participant)).then_some(p)
        })
    }

    /// The shard with the fewest parties (ties: the first by name), for placing a new party.
    pub fn least_loaded_shard(&self) -> Option<&str> {
        self.shards
            .keys()
            .min_by_key(|s| self.parties.values().filter(|p| p == s).count())
            .map(String::as_str)
    }
}

/// A shard name: 1 to 64 of `[a-z0-9-]` (`shard-1`).
pub fn validate_shard_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid shard name {name:?}: use 1 to 64 of [a-z0-9-]"
        ))
    }
}

fn decode_key(hex_key: &str) -> Result<PublicKey, String> {
    let mut bytes = [0u8; 32];
    if hex_key.len() != 64 {
        return Err(format!("public key {hex_key:?}: expected 64 hex digits"));
    }
    for (i, chunk) in hex_key.as_bytes().chunks(2).enumerate() {
        let s =
            std::str::from_utf8(chunk).map_err(|_| format!("public key {hex_key:?}: not hex"))?;
        bytes[i] =
            u8::from_str_radix(s, 16).map_err(|_| format!("public key {hex_key:?}: not hex"))?;
    }
    PublicKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// The hex form of a key, as topology transactions carry it.
pub fn encode_key(key: &PublicKey) -> String {
    key.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use ordo_core::KeyPair;

    use super::*;

    fn add(state: &mut TopologyState, change: TopologyChange) -> Result<(), ProtocolError> {
        let tx = TopologyTransaction {
            serial: state.serial + 1,
            change,
        };
        state.apply(&tx, Timestamp(state.serial as i64 + 100))
    }

    fn participant(name: &str, shard: &str) -> (MemberId, TopologyChange) {
        let key = KeyPair::generate();
        let id = MemberId::new(name, &key.public()).unwrap();
        let change = TopologyChange::AddMember {
            member: id.clone(),
            public_key: encode_key(&key.public()),
            role: MemberRole::Participant {
                shard: shard.into(),
            },
        };
        (id, change)
    }

    #[test]
    fn parties_are_placed_on_shards() {
        let mut s = TopologyState::default();
        let (p1, c1) = participant("p1", "shard-1");
        let (p2, c2) = participant("p2", "shard-2");
        add(&mut s, c1).unwrap();
        add(&mut s, c2).unwrap();
        let alice = PartyId::new("alice").unwrap();
        add(
            &mut s,
            TopologyChange::AllocateParty {
                party: alice.clone(),
                shard: "shard-1".into(),
            },
        )
        .unwrap();
        assert_eq!(s.host_of(&alice), Some(&p1));
        assert_eq!(s.least_loaded_shard(), Some("shard-2"));
        assert_eq!(s.parties_of(&p2).count(), 0);
        assert_eq!(
            s.key_of(&p1).map(|k| MemberId::new("p1", &k).unwrap()),
            Some(p1)
        );
    }

    #[test]
    fn refused_changes_leave_the_state_unchanged() {
        let mut s = TopologyState::default();
        let (_, c1) = participant("p1", "shard-1");
        add(&mut s, c1).unwrap();
        let before = s.clone();
        let alice = PartyId::new("alice").unwrap();
        // Unknown shard.
        assert!(
            add(
                &mut s,
                TopologyChange::AllocateParty {
                    party: alice.clone(),
                    shard: "shard-9".into()
                }
            )
            .is_err()
        );
        // A second participant for an existing shard.
        let (_, dup) = participant("p2", "shard-1");
        assert!(add(&mut s, dup).is_err());
        // A key that does not match the id.
        let key = KeyPair::generate();
        let other = KeyPair::generate();
        assert!(
            add(
                &mut s,
                TopologyChange::AddMember {
                    member: MemberId::new("m", &key.public()).unwrap(),
                    public_key: encode_key(&other.public()),
                    role: MemberRole::Mediator,
                }
            )
            .is_err()
        );
        // A serial out of order.
        let tx = TopologyTransaction {
            serial: 7,
            change: TopologyChange::SetSequencers { endpoints: vec![] },
        };
        assert!(s.apply(&tx, Timestamp(1)).is_err());
        assert_eq!(s, before);

        add(
            &mut s,
            TopologyChange::AllocateParty {
                party: alice.clone(),
                shard: "shard-1".into(),
            },
        )
        .unwrap();
        // The same party twice.
        assert!(
            add(
                &mut s,
                TopologyChange::AllocateParty {
                    party: alice,
                    shard: "shard-1".into()
                }
            )
            .is_err()
        );
    }

    fn party(name: &str) -> PartyId {
        PartyId::new(name).unwrap()
    }

    /// A state with shard-1 hosting alice and bob.
    fn with_parties() -> TopologyState {
        let mut s = TopologyState::default();
        let (_, c1) = participant("p1", "shard-1");
        add(&mut s, c1).unwrap();
        for p in ["alice", "bob"] {
            add(
                &mut s,
                TopologyChange::AllocateParty {
                    party: party(p),
                    shard: "shard-1".into(),
                },
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn users_are_created_granted_revoked_and_deleted() {
        let mut s = with_parties();
        let user = User {
            id: "app-1".into(),
            primary_party: Some(party("alice")),
            rights: [UserRight::CanActAs(party("alice"))].into(),
        };
        add(&mut s, TopologyChange::CreateUser { user: user.clone() }).unwrap();
        assert_eq!(s.users.get("app-1"), Some(&user));

        add(
            &mut s,
            TopologyChange::GrantUserRights {
                user_id: "app-1".into(),
                rights: vec![
                    UserRight::CanReadAs(party("bob")),
                    UserRight::CanActAs(party("alice")),
                    UserRight::ParticipantAdmin,
                ],
            },
        )
        .unwrap();
        let rights: Vec<UserRight> = s.users["app-1"].rights.iter().cloned().collect();
        assert_eq!(
            rights,
            vec![
                UserRight::CanActAs(party("alice")),
                UserRight::CanReadAs(party("bob")),
                UserRight::ParticipantAdmin,
            ]
        );

        // Revoking a right the user does not hold is ignored.
        add(
            &mut s,
            TopologyChange::RevokeUserRights {
                user_id: "app-1".into(),
                rights: vec![
                    UserRight::CanActAs(party("alice")),
                    UserRight::CanReadAsAnyParty,
                ],
            },
        )
        .unwrap();
        let rights: Vec<UserRight> = s.users["app-1"].rights.iter().cloned().collect();
        assert_eq!(
            rights,
            vec![
                UserRight::CanReadAs(party("bob")),
                UserRight::ParticipantAdmin
            ]
        );

        add(
            &mut s,
            TopologyChange::DeleteUser {
                user_id: "app-1".into(),
            },
        )
        .unwrap();
        assert!(s.users.is_empty());
    }

    #[test]
    fn refused_user_changes_leave_the_state_unchanged() {
        let mut s = with_parties();
        add(
            &mut s,
            TopologyChange::CreateUser {
                user: User {
                    id: "app-1".into(),
                    primary_party: None,
                    rights: BTreeSet::new(),
                },
            },
        )
        .unwrap();
        let before = s.clone();
        let user = |id: &str, primary: Option<&str>, rights: Vec<UserRight>| User {
            id: id.into(),
            primary_party: primary.map(party),
            rights: rights.into_iter().collect(),
        };
        let refused = [
            // An existing id.
            (
                TopologyChange::CreateUser {
                    user: user("app-1", None, vec![]),
                },
                "user app-1 already exists",
            ),
            // A malformed id.
            (
                TopologyChange::CreateUser {
                    user: user("App 1", None, vec![]),
                },
                "invalid user id",
            ),
            // A right naming an unallocated party.
            (
                TopologyChange::CreateUser {
                    user: user("app-2", None, vec![UserRight::CanActAs(party("carol"))]),
                },
                "unknown party carol",
            ),
            // An unallocated primary party.
            (
                TopologyChange::CreateUser {
                    user: user("app-2", Some("carol"), vec![]),
                },
                "unknown party carol",
            ),
            (
                TopologyChange::GrantUserRights {
                    user_id: "app-1".into(),
                    rights: vec![
                        UserRight::CanReadAs(party("alice")),
                        UserRight::CanReadAs(party("carol")),
                    ],
                },
                "unknown party carol",
            ),
            (
                TopologyChange::GrantUserRights {
                    user_id: "nobody".into(),
                    rights: vec![UserRight::ParticipantAdmin],
                },
                "unknown user nobody",
            ),
            (
                TopologyChange::RevokeUserRights {
                    user_id: "nobody".into(),
                    rights: vec![UserRight::ParticipantAdmin],
                },
                "unknown user nobody",
            ),
            (
                TopologyChange::DeleteUser {
                    user_id: "nobody".into(),
                },
                "unknown user nobody",
            ),
        ];
        for (change, why) in refused {
            let e = add(&mut s, change.clone()).unwrap_err();
            assert!(e.to_string().contains(why), "{change:?}: {e}");
            assert_eq!(s, before, "{change:?} changed the state");
        }
    }

    #[test]
    fn user_rights_have_a_tagged_json_form() {
        let rights = [
            (
                UserRight::CanActAs(party("alice")),
                serde_json::json!({"right": "can_act_as", "party": "alice"}),
            ),
            (
                UserRight::CanReadAs(party("bob")),
                serde_json::json!({"right": "can_read_as", "party": "bob"}),
            ),
            (
                UserRight::CanReadAsAnyParty,
                serde_json::json!({"right": "can_read_as_any_party"}),
            ),
            (
                UserRight::ParticipantAdmin,
                serde_json::json!({"right": "participant_admin"}),
            ),
        ];
        for (right, json) in rights {
            assert_eq!(serde_json::to_value(&right).unwrap(), json);
            let back: UserRight = serde_json::from_value(json).unwrap();
            assert_eq!(back, right);
        }
        // A malformed party is refused when decoding, like everywhere else.
        let bad = serde_json::json!({"right": "can_act_as", "party": "no spaces"});
        assert!(serde_json::from_value::<UserRight>(bad).is_err());
        // A whole state with users survives the round trip (members fold it from JSON).
        let mut s = with_parties();
        add(
            &mut s,
            TopologyChange::CreateUser {
                user: User {
                    id: "app-1".into(),
                    primary_party: Some(party("alice")),
                    rights: [
                        UserRight::CanActAs(party("alice")),
                        UserRight::CanReadAsAnyParty,
                    ]
                    .into(),
                },
            },
        )
        .unwrap();
        let back: TopologyState =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
