//! What binds a confirmation request together (DESIGN §4, *Trust*): its root hash is a Merkle
//! root over the request's views and its informee tree, so that no submitter can show the
//! mediator one set of confirming parties and the participants another.
//!
//! The tree has one leaf per view, i.e. per informee participant. A leaf is the hash of a
//! [`ViewCommitment`]: which participant the view is for, the hash of the view, and the
//! informees and confirming parties of the view's actions. The root hashes the submitter
//! and every leaf in order:
//!
//! ```text
//! leaf = H("ordo-leaf-v1" ‖ participant ‖ view hash ‖ informees ‖ confirming parties)
//! root = H("ordo-root-v1" ‖ submitter ‖ leaf₁ ‖ … ‖ leafₙ)          (H: SHA-256, parts length-prefixed)
//! ```
//!
//! - The mediator receives every commitment in full (the [`InformeeTree`], no payloads) and
//!   recomputes the root ([`InformeeTree::check`]).
//! - A participant receives its view, its own commitment, its leaf's position and the hashes
//!   of the other leaves (the other views stay blinded). It recomputes the view's hash and
//!   the root from them ([`ViewMessage::check_inclusion`]), and then checks that the
//!   commitment's parties are those its view's actions require.
//!
//! Both sides end up with the same root only if the mediator's commitment of that view is
//! the participant's: a confirming party left out of the mediator's tree is one the
//! participant's own check finds missing. Update ids are derived from the root and the
//! sequencing timestamp ([`update_id`]), never taken from the sender.

use std::collections::BTreeSet;

use ordo_core::{Hash, MemberId, PartyId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::message::{InformeeTree, ViewMessage};

const LEAF: &[u8] = b"ordo-leaf-v1";
const ROOT: &[u8] = b"ordo-root-v1";
const UPDATE: &[u8] = b"ordo-update-v1";

/// One view of a confirmation request as the request's Merkle tree commits to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewCommitment {
    /// The informee participant the view is for.
    pub participant: MemberId,
    /// The hash of the view (its encoding is the participants' business), 64 hex digits.
    pub view_hash: String,
    /// The informees of the view's actions.
    pub informees: BTreeSet<PartyId>,
    /// The confirming parties of the view's actions (a subset of the informees).
    pub confirming_parties: BTreeSet<PartyId>,
}

impl ViewCommitment {
    /// The commitment of a view whose hash is `view_hash`.
    pub fn new(
        participant: MemberId,
        view_hash: &Hash,
        informees: BTreeSet<PartyId>,
        confirming_parties: BTreeSet<PartyId>,
    ) -> Self {
        Self {
            participant,
            view_hash: view_hash.to_hex(),
            informees,
            confirming_parties,
        }
    }

    /// The leaf hash; `None` when `view_hash` is not a hash.
    pub fn leaf_hash(&self) -> Option<Hash> {
        let view_hash: Hash = self.view_hash.parse().ok()?;
        let parties = |set: &BTreeSet<PartyId>| -> Vec<u8> {
            // Party ids never contain a comma (`[A-Za-z0-9_-]`), so the join is unambiguous.
            let names: Vec<&str> = set.iter().map(PartyId::as_str).collect();
            names.join(",").into_bytes()
        };
        Some(Hash::of_parts([
            LEAF,
            self.participant.as_str().as_bytes(),
            view_hash.0.as_slice(),
            parties(&self.informees).as_slice(),
            parties(&self.confirming_parties).as_slice(),
        ]))
    }
}

/// The request's leaves and root over `commitments` (in order), as a submitter builds
/// them; `None` if a commitment's view hash is not a hash.
pub fn build(submitter: &MemberId, commitments: &[ViewCommitment]) -> Option<(Vec<Hash>, Hash)> {
    let leaves = commitments
        .iter()
        .map(ViewCommitment::leaf_hash)
        .collect::<Option<Vec<_>>>()?;
    let root = root_hash(submitter, &leaves);
    Some((leaves, root))
}

/// The root over the submitter and the leaves, in order.
pub fn root_hash(submitter: &MemberId, leaves: &[Hash]) -> Hash {
    Hash::of_parts(
        [ROOT, submitter.as_str().as_bytes()]
            .into_iter()
            .chain(leaves.iter().map(|l| l.0.as_slice())),
    )
}

/// The update id of the transaction a request commits: derived from what every informee
/// participant verified (the root hash) and the request's sequencing timestamp, so two
/// requests never share one, whatever their senders claim.
pub fn update_id(root_hash: &Hash, request: Timestamp) -> String {
    Hash::of_parts([
        UPDATE,
        root_hash.0.as_slice(),
        request.micros().to_be_bytes().as_slice(),
    ])
    .to_hex()
}

/// Why a request's binding does not hold. Each is a deterministic property of the message:
/// every replica of every recipient finds the same.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("the root hash {0:?} is not 64 hex digits")]
    BadRootHash(String),
    #[error("a view hash or leaf hash is not 64 hex digits")]
    BadLeafHash,
    #[error("the request has no views")]
    NoViews,
    #[error("the request has {got} views, more than the {max} participants topology knows")]
    TooManyViews { got: usize, max: usize },
    #[error("participant {0} has more than one view in the request")]
    DuplicateParticipant(MemberId),
    #[error("the view is for participant {0}, not for this one")]
    NotForMe(MemberId),
    #[error("leaf position {position} is outside the {leaves} leaves")]
    BadPosition { position: u32, leaves: usize },
    #[error("the view's leaf does not match leaf {0} of the request")]
    LeafMismatch(u32),
    #[error("the view does not hash to the commitment's view hash")]
    ViewHashMismatch,
    #[error("the request's views hash to root {computed}, not to the root hash {claimed} it names")]
    RootMismatch { claimed: String, computed: String },
    #[error(
        "the view of {participant} declares confirming parties that are not informees: {parties:?}"
    )]
    ConfirmingNotInformee {
        participant: MemberId,
        parties: Vec<String>,
    },
}

impl BindingError {
    /// A stable label for metrics and alarms.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RootMismatch { .. } | Self::LeafMismatch(_) | Self::ViewHashMismatch => {
                "root_hash_mismatch"
            }
            _ => "malformed_request",
        }
    }
}

fn parse_root(root_hash: &str) -> Result<Hash, BindingError> {
    root_hash
        .parse()
        .map_err(|_| BindingError::BadRootHash(root_hash.chars().take(80).collect()))
}

impl InformeeTree {
    /// Every confirming party of the request: the union over its views.
    pub fn confirming_parties(&self) -> BTreeSet<PartyId> {
        self.views
            .iter()
            .flat_map(|v| v.confirming_parties.iter().cloned())
            .collect()
    }

    /// Every informee of the request: the union over its views.
    pub fn informees(&self) -> BTreeSet<PartyId> {
        self.views
            .iter()
            .flat_map(|v| v.informees.iter().cloned())
            .collect()
    }

    /// Checks the tree's shape and that its commitments hash to its root: at least one and
    /// at most `max_views` views, one per participant, each view's confirming parties among
    /// its informees. Returns the verified root.
    pub fn check(&self, max_views: usize) -> Result<Hash, BindingError> {
        let claimed = parse_root(&self.root_hash)?;
        if self.views.is_empty() {
            return Err(BindingError::NoViews);
        }
        if self.views.len() > max_views {
            return Err(BindingError::TooManyViews {
                got: self.views.len(),
                max: max_views,
            });
        }
        let mut seen = BTreeSet::new();
        let mut leaves = Vec::with_capacity(self.views.len());
        for view in &self.views {
            if !seen.insert(&view.participant) {
                return Err(BindingError::DuplicateParticipant(view.participant.clone()));
            }
            let stray: Vec<String> = view
                .confirming_parties
                .difference(&view.informees)
                .map(ToString::to_string)
                .collect();
            if !stray.is_empty() {
                return Err(BindingError::ConfirmingNotInformee {
                    participant: view.participant.clone(),
                    parties: stray,
                });
            }
            leaves.push(view.leaf_hash().ok_or(BindingError::BadLeafHash)?);
        }
        let computed = root_hash(&self.submitter, &leaves);
        if computed != claimed {
            return Err(BindingError::RootMismatch {
                claimed: self.root_hash.clone(),
                computed: computed.to_hex(),
            });
        }
        Ok(computed)
    }
}

impl ViewMessage {
    /// Checks that this view message is for `me` and that its commitment, carrying
    /// `view_hash` (the hash the recipient computed of the view it decoded), is leaf
    /// `position` of a tree whose root is the message's root hash, as `submitter` sent it.
    /// Returns the verified root. The commitment's parties are checked against the view by
    /// the recipient, which alone can read the view.
    pub fn check_inclusion(
        &self,
        submitter: &MemberId,
        me: &MemberId,
        view_hash: &Hash,
    ) -> Result<Hash, BindingError> {
        let claimed = parse_root(&self.root_hash)?;
        if self.commitment.participant != *me {
            return Err(BindingError::NotForMe(self.commitment.participant.clone()));
        }
        if self.commitment.view_hash.parse::<Hash>().ok() != Some(*view_hash) {
            return Err(BindingError::ViewHashMismatch);
        }
        let leaves = self
            .leaves
            .iter()
            .map(|l| l.parse::<Hash>().map_err(|_| BindingError::BadLeafHash))
            .collect::<Result<Vec<_>, _>>()?;
        let slot = leaves
            .get(self.position as usize)
            .ok_or(BindingError::BadPosition {
                position: self.position,
                leaves: leaves.len(),
            })?;
        let own = self
            .commitment
            .leaf_hash()
            .ok_or(BindingError::BadLeafHash)?;
        if *slot != own {
            return Err(BindingError::LeafMismatch(self.position));
        }
        let computed = root_hash(submitter, &leaves);
        if computed != claimed {
            return Err(BindingError::RootMismatch {
                claimed: self.root_hash.clone(),
                computed: computed.to_hex(),
            });
        }
        Ok(computed)
    }
}

#[cfg(test)]
mod tests {
    use ordo_core::KeyPair;

    use super::*;

    fn member(name: &str) -> MemberId {
        MemberId::new(name, &KeyPair::generate().public()).unwrap()
    }

    fn parties(names: &[&str]) -> BTreeSet<PartyId> {
        names.iter().map(|n| PartyId::new(n).unwrap()).collect()
    }

    struct Request {
        submitter: MemberId,
        tree: InformeeTree,
        messages: Vec<ViewMessage>,
        view_hashes: Vec<Hash>,
    }

    /// A request with views for p1 (alice confirms) and p2 (bob confirms, carol is told).
    fn request() -> Request {
        let submitter = member("p1");
        let p2 = member("p2");
        let view_hashes = vec![Hash::of(b"view of p1"), Hash::of(b"view of p2")];
        let commitments = vec![
            ViewCommitment {
                participant: submitter.clone(),
                view_hash: view_hashes[0].to_hex(),
                informees: parties(&["alice", "bob"]),
                confirming_parties: parties(&["alice"]),
            },
            ViewCommitment {
                participant: p2,
                view_hash: view_hashes[1].to_hex(),
                informees: parties(&["bob", "carol"]),
                confirming_parties: parties(&["bob"]),
            },
        ];
        let leaves: Vec<Hash> = commitments.iter().map(|c| c.leaf_hash().unwrap()).collect();
        let root = root_hash(&submitter, &leaves).to_hex();
        let messages = commitments
            .iter()
            .enumerate()
            .map(|(i, c)| ViewMessage {
                root_hash: root.clone(),
                commitment: c.clone(),
                position: i as u32,
                leaves: leaves.iter().map(Hash::to_hex).collect(),
                view: serde_json::value::RawValue::from_string("null".into()).unwrap(),
            })
            .collect();
        Request {
            tree: InformeeTree {
                root_hash: root,
                submitter: submitter.clone(),
                views: commitments,
            },
            submitter,
            messages,
            view_hashes,
        }
    }

    #[test]
    fn an_honest_request_checks_out_everywhere_with_one_root() {
        let r = request();
        let root = r.tree.check(10).unwrap();
        for (m, h) in r.messages.iter().zip(&r.view_hashes) {
            let me = m.commitment.participant.clone();
            assert_eq!(m.check_inclusion(&r.submitter, &me, h).unwrap(), root);
        }
        assert_eq!(r.tree.confirming_parties(), parties(&["alice", "bob"]));
        assert_eq!(r.tree.informees(), parties(&["alice", "bob", "carol"]));
    }

    #[test]
    fn a_narrowed_tree_no_longer_hashes_to_the_root_the_participant_verifies() {
        let r = request();
        // The mediator's copy leaves bob out of p2's confirming parties, keeping the root.
        let mut narrowed = r.tree.clone();
        narrowed.views[1].confirming_parties.clear();
        assert!(matches!(
            narrowed.check(10),
            Err(BindingError::RootMismatch { .. })
        ));
        // Re-rooted to match the mediator's copy, p2's honest leaf no longer fits.
        let leaves: Vec<Hash> = narrowed
            .views
            .iter()
            .map(|c| c.leaf_hash().unwrap())
            .collect();
        narrowed.root_hash = root_hash(&r.submitter, &leaves).to_hex();
        narrowed.check(10).unwrap();
        let mut m = r.messages[1].clone();
        m.root_hash = narrowed.root_hash.clone();
        let me = m.commitment.participant.clone();
        assert!(matches!(
            m.check_inclusion(&r.submitter, &me, &r.view_hashes[1]),
            Err(BindingError::RootMismatch { .. })
        ));
        // And with the narrowed leaf itself, the participant holds a commitment whose parties
        // its own view contradicts (checked by the participant, outside this module).
        m.commitment.confirming_parties.clear();
        m.leaves = leaves.iter().map(Hash::to_hex).collect();
        assert!(
            m.check_inclusion(&r.submitter, &me, &r.view_hashes[1])
                .is_ok()
        );
    }

    #[test]
    fn every_part_of_a_view_message_is_bound() {
        let r = request();
        let m = &r.messages[1];
        let me = m.commitment.participant.clone();
        let h = &r.view_hashes[1];
        let check = |m: &ViewMessage| m.check_inclusion(&r.submitter, &me, h);

        let mut other_view = m.clone();
        other_view.commitment.view_hash = Hash::of(b"another view").to_hex();
        assert_eq!(check(&other_view), Err(BindingError::ViewHashMismatch));
        let mut moved = m.clone();
        moved.position = 0;
        assert_eq!(check(&moved), Err(BindingError::LeafMismatch(0)));
        let mut outside = m.clone();
        outside.position = 7;
        assert!(matches!(
            check(&outside),
            Err(BindingError::BadPosition { .. })
        ));
        let mut sibling = m.clone();
        sibling.leaves[0] = Hash::of(b"another sibling").to_hex();
        assert!(matches!(
            check(&sibling),
            Err(BindingError::RootMismatch { .. })
        ));
        let mut garbled = m.clone();
        garbled.root_hash = "not a hash\0".into();
        assert!(matches!(check(&garbled), Err(BindingError::BadRootHash(_))));
        // Another submitter means another root.
        assert!(matches!(
            m.check_inclusion(&member("p9"), &me, h),
            Err(BindingError::RootMismatch { .. })
        ));
        // A view for someone else.
        assert!(matches!(
            m.check_inclusion(&r.submitter, &r.submitter, h),
            Err(BindingError::NotForMe(_))
        ));
    }

    #[test]
    fn malformed_trees_are_refused_naming_the_fault() {
        let r = request();
        let mut dup = r.tree.clone();
        dup.views.push(dup.views[0].clone());
        assert!(matches!(
            dup.check(10),
            Err(BindingError::DuplicateParticipant(_))
        ));
        assert!(matches!(
            r.tree.check(1),
            Err(BindingError::TooManyViews { got: 2, max: 1 })
        ));
        let mut empty = r.tree.clone();
        empty.views.clear();
        assert_eq!(empty.check(10), Err(BindingError::NoViews));
        let mut stray = r.tree.clone();
        stray.views[0]
            .confirming_parties
            .insert(PartyId::new("mallory").unwrap());
        assert!(matches!(
            stray.check(10),
            Err(BindingError::ConfirmingNotInformee { .. })
        ));
    }

    #[test]
    fn update_ids_differ_per_request_timestamp() {
        let root = Hash::of(b"root");
        assert_ne!(
            update_id(&root, Timestamp(1)),
            update_id(&root, Timestamp(2))
        );
        assert_eq!(
            update_id(&root, Timestamp(1)),
            update_id(&root, Timestamp(1))
        );
    }
}
