//! Transactions (trees of create, exercise and fetch nodes), their informees and confirming
//! parties, and projections/views per the Daml ledger model.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::{Hash, PartyId};
use serde::{Deserialize, Serialize};

use crate::types::{ContractId, PackageId, TemplateId};
use crate::value::Value;

/// Index of a node in `Transaction::nodes`. Nodes are numbered in pre-order (a node before
/// its children), so a subtree occupies a contiguous range starting at its root; contract ids
/// hash the node index, which is what lets a view's subtree be re-interpreted on its own.
pub type NodeId = usize;

/// An active (or to-be-created) contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractInstance {
    pub template: TemplateId,
    pub package_id: PackageId,
    pub payload: Value,
    pub signatories: BTreeSet<PartyId>,
    pub observers: BTreeSet<PartyId>,
    pub key: Option<Value>,
    /// The key's maintainers (empty without a key).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub maintainers: BTreeSet<PartyId>,
}

/// The identity of a contract key: its template and value, hashed (the key of the key
/// indexes and locks on the maintainers' shards).
pub fn key_hash(template: &TemplateId, key: &Value) -> Hash {
    // Cannot fail: every map key is a string and no value holds a float.
    let value = serde_json::to_vec(key).expect("a Value serializes to JSON");
    Hash::of_parts([
        b"ordo-contract-key".as_slice(),
        template.to_string().as_bytes(),
        &[0],
        value.as_slice(),
    ])
}

impl ContractInstance {
    /// Signatories and observers.
    pub fn stakeholders(&self) -> BTreeSet<PartyId> {
        self.signatories.union(&self.observers).cloned().collect()
    }

    /// The canonical bytes hashed into a contract id.
    /// The hash of the contract's key, if it has one (see [`key_hash`]).
    pub fn key_hash(&self) -> Option<Hash> {
        self.key.as_ref().map(|k| key_hash(&self.template, k))
    }

    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Cannot fail: every map key is a string and no value holds a float.
        serde_json::to_vec(self).expect("ContractInstance serializes to JSON")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Node {
    Create {
        contract_id: ContractId,
        contract: ContractInstance,
    },
    Exercise {
        contract_id: ContractId,
        template: TemplateId,
        choice: String,
        consuming: bool,
        /// The choice's controllers.
        actors: BTreeSet<PartyId>,
        argument: Value,
        children: Vec<NodeId>,
        result: Value,
        /// Of the exercised contract.
        signatories: BTreeSet<PartyId>,
        /// Of the exercised contract.
        stakeholders: BTreeSet<PartyId>,
        /// The choice's observers (informees, not confirmers).
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        choice_observers: BTreeSet<PartyId>,
    },
    Fetch {
        contract_id: ContractId,
        template: TemplateId,
        /// The authorizers at the fetch that are stakeholders of the contract.
        actors: BTreeSet<PartyId>,
        signatories: BTreeSet<PartyId>,
        stakeholders: BTreeSet<PartyId>,
    },
    /// A key lookup (`lookup_by_key`) and what it found: the active contract with that
    /// key, or none. Its maintainers confirm it (a negative result says the key is free).
    LookupByKey {
        template: TemplateId,
        key: Value,
        maintainers: BTreeSet<PartyId>,
        result: Option<ContractId>,
    },
}

impl Node {
    /// The contract the node creates or uses (none for a lookup that found no contract).
    pub fn contract_id(&self) -> Option<&ContractId> {
        match self {
            Node::Create { contract_id, .. }
            | Node::Exercise { contract_id, .. }
            | Node::Fetch { contract_id, .. } => Some(contract_id),
            Node::LookupByKey { result, .. } => result.as_ref(),
        }
    }

    pub fn children(&self) -> &[NodeId] {
        match self {
            Node::Exercise { children, .. } => children,
            _ => &[],
        }
    }

    /// Daml ledger model: a create informs the stakeholders; a consuming exercise the
    /// stakeholders, actors and choice observers; a non-consuming exercise the signatories,
    /// actors and choice observers; a fetch the signatories and actors; a key lookup the
    /// key's maintainers.
    pub fn informees(&self) -> BTreeSet<PartyId> {
        match self {
            Node::Create { contract, .. } => contract.stakeholders(),
            Node::Exercise {
                consuming,
                signatories,
                stakeholders,
                actors,
                choice_observers,
                ..
            } => {
                let base = if *consuming {
                    stakeholders
                } else {
                    signatories
                };
                base.iter()
                    .chain(actors)
                    .chain(choice_observers)
                    .cloned()
                    .collect()
            }
            Node::Fetch {
                signatories,
                actors,
                ..
            } => signatories.union(actors).cloned().collect(),
            Node::LookupByKey { maintainers, .. } => maintainers.clone(),
        }
    }

    /// The parties whose participants must approve the node: a create's signatories (their
    /// obligation is being created); for exercises and fetches, the contract's signatories
    /// (they vouch that the contract is active and the action conforms) and the actors (they
    /// authorized it); for a key lookup, the key's maintainers (they vouch for its result).
    pub fn confirming_parties(&self) -> BTreeSet<PartyId> {
        match self {
            Node::Create { contract, .. } => contract.signatories.clone(),
            Node::Exercise {
                signatories,
                actors,
                ..
            }
            | Node::Fetch {
                signatories,
                actors,
                ..
            } => signatories.union(actors).cloned().collect(),
            Node::LookupByKey { maintainers, .. } => maintainers.clone(),
        }
    }
}

/// A contract the transaction uses but does not create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInput {
    pub contract: ContractInstance,
    pub consumed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    #[serde(with = "hash_hex")]
    pub seed: Hash,
    /// The submitting parties (`act_as`): the authorizers of the root actions.
    pub submitters: BTreeSet<PartyId>,
    pub roots: Vec<NodeId>,
    /// In pre-order.
    pub nodes: Vec<Node>,
    /// The instances of every contract the transaction used but did not create, as looked
    /// up during interpretation; views carry the ones their subtrees need.
    pub input_contracts: BTreeMap<ContractId, ContractInstance>,
}

impl Transaction {
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// See [`Node::informees`]; empty for an unknown node.
    pub fn informees(&self, node: NodeId) -> BTreeSet<PartyId> {
        self.node(node).map(Node::informees).unwrap_or_default()
    }

    /// See [`Node::confirming_parties`]; empty for an unknown node.
    pub fn confirming_parties(&self, node: NodeId) -> BTreeSet<PartyId> {
        self.node(node)
            .map(Node::confirming_parties)
            .unwrap_or_default()
    }

    pub fn all_informees(&self) -> BTreeSet<PartyId> {
        self.nodes.iter().flat_map(Node::informees).collect()
    }

    pub fn all_confirming_parties(&self) -> BTreeSet<PartyId> {
        self.nodes
            .iter()
            .flat_map(Node::confirming_parties)
            .collect()
    }

    fn created_ids(&self) -> BTreeSet<ContractId> {
        self.nodes
            .iter()
            .filter_map(|n| match n {
                Node::Create { contract_id, .. } => Some(*contract_id),
                _ => None,
            })
            .collect()
    }

    /// Every contract a consuming exercise of this transaction archives.
    pub fn consumed(&self) -> BTreeSet<ContractId> {
        self.nodes
            .iter()
            .filter_map(|n| match n {
                Node::Exercise {
                    contract_id,
                    consuming: true,
                    ..
                } => Some(*contract_id),
                _ => None,
            })
            .collect()
    }

    /// Contracts used (exercised or fetched) but not created by the transaction, with
    /// whether the transaction consumes them: what the activeness check must lock.
    pub fn inputs(&self) -> BTreeMap<ContractId, TxInput> {
        let created = self.created_ids();
        let consumed = self.consumed();
        let mut out = BTreeMap::new();
        for node in &self.nodes {
            let Some(cid) = node.contract_id() else {
                continue;
            };
            if matches!(node, Node::Create { .. }) || created.contains(cid) {
                continue;
            }
            if let Some(contract) = self.input_contracts.get(cid) {
                out.insert(
                    *cid,
                    TxInput {
                        contract: contract.clone(),
                        consumed: consumed.contains(cid),
                    },
                );
            }
        }
        out
    }

    /// The transaction's outputs: contracts created and not archived by it.
    pub fn created(&self) -> BTreeMap<ContractId, ContractInstance> {
        let consumed = self.consumed();
        self.nodes
            .iter()
            .filter_map(|n| match n {
                Node::Create {
                    contract_id,
                    contract,
                } if !consumed.contains(contract_id) => Some((*contract_id, contract.clone())),
                _ => None,
            })
            .collect()
    }

    /// Contracts both created and archived by this transaction (transient contracts).
    pub fn archived_in_tx(&self) -> BTreeSet<ContractId> {
        self.created_ids()
            .intersection(&self.consumed())
            .copied()
            .collect()
    }

    /// The node ids of the subtree rooted at `root`, in pre-order.
    pub fn subtree(&self, root: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if let Some(node) = self.node(id) {
                out.push(id);
                stack.extend(node.children().iter().rev());
            }
        }
        out
    }

    /// The parent of every non-root node.
    fn parents(&self) -> BTreeMap<NodeId, NodeId> {
        let mut parents = BTreeMap::new();
        for (id, node) in self.nodes.iter().enumerate() {
            for child in node.children() {
                parents.insert(*child, id);
            }
        }
        parents
    }

    /// The parties whose authority a node's action carries: the submitters at the root,
    /// inside a choice body the exercised contract's signatories and the choice's
    /// controllers.
    pub fn authorizers(&self, node: NodeId) -> BTreeSet<PartyId> {
        match self.parents().get(&node).and_then(|p| self.node(*p)) {
            Some(Node::Exercise {
                signatories,
                actors,
                ..
            }) => signatories.union(actors).cloned().collect(),
            _ => self.submitters.clone(),
        }
    }

    /// The projection for `parties`: every top-most node of which one of them is an
    /// informee, each standing for its whole subtree.
    pub fn project(&self, parties: &BTreeSet<PartyId>) -> Projection {
        let mut roots = Vec::new();
        let mut stack: Vec<NodeId> = self.roots.iter().rev().copied().collect();
        while let Some(id) = stack.pop() {
            let Some(node) = self.node(id) else { continue };
            if !node.informees().is_disjoint(parties) {
                roots.push(id);
            } else {
                stack.extend(node.children().iter().rev());
            }
        }
        Projection { roots }
    }

    /// What a participant hosting `parties` receives: the projection's subtrees with the
    /// instances of their input contracts and the authorizers of each root, enough to
    /// re-interpret them without the rest of the transaction.
    pub fn view(&self, parties: &BTreeSet<PartyId>) -> View {
        let projection = self.project(parties);
        let parents = self.parents();
        let mut nodes = BTreeMap::new();
        let mut inputs = BTreeMap::new();
        let mut roots = Vec::new();
        let subtrees: Vec<Vec<NodeId>> =
            projection.roots.iter().map(|r| self.subtree(*r)).collect();
        // Contracts the view itself creates, in any of its subtrees (a create-and-exercise
        // has the create and the exercise as two roots): never inputs.
        let created_here: BTreeSet<ContractId> = subtrees
            .iter()
            .flatten()
            .filter_map(|id| match &self.nodes[*id] {
                Node::Create { contract_id, .. } => Some(*contract_id),
                _ => None,
            })
            .collect();
        for (root, subtree) in projection.roots.iter().zip(&subtrees) {
            for id in subtree {
                let node = &self.nodes[*id];
                if let Some(cid) = node.contract_id()
                    && !matches!(node, Node::Create { .. })
                    && !created_here.contains(cid)
                    && let Some(instance) = self.instance(cid)
                {
                    inputs.insert(*cid, instance);
                }
                nodes.insert(*id, node.clone());
            }
            roots.push(ViewRoot {
                node: *root,
                parent: parents.get(root).copied(),
                authorizers: self.authorizers(*root),
            });
        }
        View {
            seed: self.seed,
            submitters: self.submitters.clone(),
            roots,
            nodes,
            inputs,
        }
    }

    /// The instance of a contract the transaction creates or uses.
    fn instance(&self, cid: &ContractId) -> Option<ContractInstance> {
        self.input_contracts.get(cid).cloned().or_else(|| {
            self.nodes.iter().find_map(|n| match n {
                Node::Create {
                    contract_id,
                    contract,
                } if contract_id == cid => Some(contract.clone()),
                _ => None,
            })
        })
    }
}

/// The top-most nodes a set of parties is an informee of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    pub roots: Vec<NodeId>,
}

/// A projection made self-contained for re-interpretation by a confirming participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    #[serde(with = "hash_hex")]
    pub seed: Hash,
    pub submitters: BTreeSet<PartyId>,
    pub roots: Vec<ViewRoot>,
    /// Every node of the roots' subtrees, under their transaction node ids.
    pub nodes: BTreeMap<NodeId, Node>,
    /// Contracts the subtrees use but do not create.
    pub inputs: BTreeMap<ContractId, ContractInstance>,
}

impl View {
    /// The informees of the view's actions.
    pub fn informees(&self) -> BTreeSet<PartyId> {
        self.nodes.values().flat_map(Node::informees).collect()
    }

    /// The confirming parties of the view's actions.
    pub fn confirming_parties(&self) -> BTreeSet<PartyId> {
        self.nodes
            .values()
            .flat_map(Node::confirming_parties)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRoot {
    pub node: NodeId,
    /// `None` for a root of the transaction.
    pub parent: Option<NodeId>,
    /// The submitters for a transaction root; otherwise the parent exercise's contract
    /// signatories and choice controllers.
    pub authorizers: BTreeSet<PartyId>,
}

pub(crate) mod hash_hex {
    use ordo_core::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
