//! The update log's stored form and how each reader's projection is cut from it.
//!
//! A committed transaction is stored once per shard, as the part of it that the shard's
//! hosted parties see; every node records which hosted parties witness it, so that a
//! reader (a set of parties) gets exactly its own projection (DESIGN §5): in tree form
//! the actions it is an informee of with their subtrees, in flat form the creates and
//! archives of contracts it is a stakeholder of.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A contract as this shard stores it (in the ACS and in create events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredContract {
    pub contract_id: String,
    pub template_id: String,
    pub package_id: String,
    pub payload: serde_json::Value,
    pub key: Option<serde_json::Value>,
    /// The key's hash (hex), by which the maintainers' shards index and lock it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    pub signatories: Vec<String>,
    pub observers: Vec<String>,
    pub created_offset: i64,
    pub created_at: i64,
    /// The ledger core's contract instance, for interpretation.
    pub instance: serde_json::Value,
}

impl StoredContract {
    /// The ledger core's instance of a stored contract (its JSON), parsed straight into
    /// its type rather than through a `serde_json::Value`; `None` if it does not parse.
    pub fn instance_of(bytes: &[u8]) -> Option<ordo_ledger::ContractInstance> {
        #[derive(Deserialize)]
        struct Only {
            instance: ordo_ledger::ContractInstance,
        }
        serde_json::from_slice::<Only>(bytes)
            .ok()
            .map(|o| o.instance)
    }

    pub fn stakeholders(&self) -> BTreeSet<String> {
        self.signatories
            .iter()
            .chain(&self.observers)
            .cloned()
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeKind {
    Created {
        contract: StoredContract,
    },
    Exercised {
        contract_id: String,
        template_id: String,
        choice: String,
        argument: serde_json::Value,
        acting_parties: Vec<String>,
        consuming: bool,
        /// Child nodes (creates and exercises; fetches are not shown).
        children: Vec<u32>,
        result: serde_json::Value,
        /// The exercised contract's stakeholders (witnesses of its archival).
        stakeholders: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredNode {
    /// Hosted parties that see this node in tree form: its informees and those of its
    /// ancestors.
    pub tree_witnesses: BTreeSet<String>,
    #[serde(flatten)]
    pub kind: NodeKind,
}

/// A committed transaction as this shard's parties see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTx {
    pub update_id: String,
    pub offset: i64,
    pub effective_at: i64,
    pub workflow_id: String,
    pub command_id: String,
    /// The submitting parties (the command id is shown only to them).
    pub act_as: Vec<String>,
    pub roots: Vec<u32>,
    pub nodes: BTreeMap<u32, StoredNode>,
}

/// A reader: the parties whose projection it reads, and optionally only some templates.
#[derive(Clone, Debug, Default)]
pub struct Reader {
    pub parties: Parties,
    /// Empty: every template.
    pub templates: BTreeSet<String>,
}

/// Whose projection a reader reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parties {
    /// These parties'.
    Only(BTreeSet<String>),
    /// Every party's (a token with `readAsAnyParty` and a filter naming no party): every
    /// recorded witness and stakeholder is seen, on this shard or not.
    Any,
}

impl Default for Parties {
    fn default() -> Self {
        Parties::Only(BTreeSet::new())
    }
}

impl Parties {
    pub fn contains(&self, party: &str) -> bool {
        match self {
            Parties::Only(parties) => parties.contains(party),
            Parties::Any => true,
        }
    }
}

impl Reader {
    fn sees(&self, witnesses: impl IntoIterator<Item = String>) -> Vec<String> {
        witnesses
            .into_iter()
            .filter(|w| self.parties.contains(w))
            .collect()
    }

    fn wants(&self, template: &str) -> bool {
        self.templates.is_empty() || self.templates.contains(template)
    }
}

/// A flat event for a reader.
#[derive(Clone, Debug, PartialEq)]
pub enum FlatEvent<'a> {
    Created {
        node: u32,
        contract: &'a StoredContract,
        witnesses: Vec<String>,
    },
    Archived {
        node: u32,
        contract_id: &'a str,
        template_id: &'a str,
        witnesses: Vec<String>,
    },
}

impl StoredTx {
    /// The command id as `reader` may see it.
    pub fn command_id_for(&self, reader: &Reader) -> &str {
        if self.act_as.iter().any(|p| reader.parties.contains(p)) {
            &self.command_id
        } else {
            ""
        }
    }

    /// The creates and archives the reader sees, in node order. Contracts created and
    /// archived in this transaction (transient) are left out.
    pub fn flat_events(&self, reader: &Reader) -> Vec<FlatEvent<'_>> {
        let archived: BTreeSet<&str> = self
            .nodes
            .values()
            .filter_map(|n| match &n.kind {
                NodeKind::Exercised {
                    contract_id,
                    consuming: true,
                    ..
                } => Some(contract_id.as_str()),
                _ => None,
            })
            .collect();
        let created: BTreeSet<&str> = self
            .nodes
            .values()
            .filter_map(|n| match &n.kind {
                NodeKind::Created { contract } => Some(contract.contract_id.as_str()),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for (id, node) in &self.nodes {
            match &node.kind {
                NodeKind::Created { contract } => {
                    if archived.contains(contract.contract_id.as_str())
                        || !reader.wants(&contract.template_id)
                    {
                        continue;
                    }
                    let witnesses = reader.sees(contract.stakeholders());
                    if !witnesses.is_empty() {
                        out.push(FlatEvent::Created {
                            node: *id,
                            contract,
                            witnesses,
                        });
                    }
                }
                NodeKind::Exercised {
                    contract_id,
                    template_id,
                    consuming: true,
                    stakeholders,
                    ..
                } => {
                    if created.contains(contract_id.as_str()) || !reader.wants(template_id) {
                        continue;
                    }
                    let witnesses = reader.sees(stakeholders.iter().cloned());
                    if !witnesses.is_empty() {
                        out.push(FlatEvent::Archived {
                            node: *id,
                            contract_id,
                            template_id,
                            witnesses,
                        });
                    }
                }
                NodeKind::Exercised { .. } => {}
            }
        }
        out
    }

    /// The tree the reader sees: the visible nodes (with the reader's witnesses) and the
    /// top-most ones as roots. Template filters do not apply to trees.
    pub fn tree(&self, reader: &Reader) -> (BTreeMap<u32, Vec<String>>, Vec<u32>) {
        let visible: BTreeMap<u32, Vec<String>> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| {
                let w = reader.sees(n.tree_witnesses.iter().cloned());
                (!w.is_empty()).then_some((*id, w))
            })
            .collect();
        let mut roots = Vec::new();
        self.collect_roots(&self.roots, &visible, &mut roots);
        (visible, roots)
    }

    fn collect_roots(
        &self,
        level: &[u32],
        visible: &BTreeMap<u32, Vec<String>>,
        out: &mut Vec<u32>,
    ) {
        for id in level {
            if visible.contains_key(id) {
                out.push(*id);
            } else if let Some(StoredNode {
                kind: NodeKind::Exercised { children, .. },
                ..
            }) = self.nodes.get(id)
            {
                self.collect_roots(children, visible, out);
            }
        }
    }

    /// Whether the reader sees anything of this transaction.
    pub fn visible_to(&self, reader: &Reader) -> bool {
        !self.tree(reader).0.is_empty() || !self.flat_events(reader).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    fn contract(id: &str, sigs: &[&str], obs: &[&str]) -> StoredContract {
        StoredContract {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            package_id: "p".into(),
            payload: serde_json::json!({}),
            key: None,
            key_hash: None,
            signatories: sigs.iter().map(|s| (*s).to_owned()).collect(),
            observers: obs.iter().map(|s| (*s).to_owned()).collect(),
            created_offset: 1,
            created_at: 1,
            instance: serde_json::Value::Null,
        }
    }

    /// alice transfers an Iou (issued by bank, observed by nobody else) to bob:
    /// exercise(consuming, on c1) → create(c2: bank, bob).
    fn transfer() -> StoredTx {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            0,
            StoredNode {
                tree_witnesses: set(&["alice", "bank", "bob"]),
                kind: NodeKind::Exercised {
                    contract_id: "c1".into(),
                    template_id: "iou:Iou".into(),
                    choice: "Transfer".into(),
                    argument: serde_json::json!({"newOwner": "bob"}),
                    acting_parties: vec!["alice".into()],
                    consuming: true,
                    children: vec![1],
                    result: serde_json::json!("c2"),
                    stakeholders: vec!["alice".into(), "bank".into()],
                },
            },
        );
        nodes.insert(
            1,
            StoredNode {
                tree_witnesses: set(&["alice", "bank", "bob"]),
                kind: NodeKind::Created {
                    contract: contract("c2", &["bank"], &["bob"]),
                },
            },
        );
        StoredTx {
            update_id: "u".into(),
            offset: 2,
            effective_at: 5,
            workflow_id: String::new(),
            command_id: "cmd".into(),
            act_as: vec!["alice".into()],
            roots: vec![0],
            nodes,
        }
    }

    fn reader(parties: &[&str]) -> Reader {
        Reader {
            parties: Parties::Only(set(parties)),
            templates: BTreeSet::new(),
        }
    }

    fn any_party() -> Reader {
        Reader {
            parties: Parties::Any,
            templates: BTreeSet::new(),
        }
    }

    #[test]
    fn flat_events_follow_stakeholders() {
        let tx = transfer();
        let alice = tx.flat_events(&reader(&["alice"]));
        assert_eq!(alice.len(), 1);
        assert!(
            matches!(&alice[0], FlatEvent::Archived { contract_id, .. } if *contract_id == "c1")
        );
        let bob = tx.flat_events(&reader(&["bob"]));
        assert!(
            matches!(&bob[..], [FlatEvent::Created { contract, .. }] if contract.contract_id == "c2")
        );
        assert!(tx.flat_events(&reader(&["carol"])).is_empty());
        assert_eq!(tx.command_id_for(&reader(&["bob"])), "");
        assert_eq!(tx.command_id_for(&reader(&["alice"])), "cmd");
        let filtered = Reader {
            parties: Parties::Only(set(&["bank"])),
            templates: set(&["other:T"]),
        };
        assert!(tx.flat_events(&filtered).is_empty());
    }

    #[test]
    fn trees_start_at_the_top_most_visible_nodes() {
        let mut tx = transfer();
        // Suppose bob witnessed only the create (e.g. not an informee of the exercise).
        if let Some(n) = tx.nodes.get_mut(&0) {
            n.tree_witnesses = set(&["alice", "bank"]);
        }
        let (nodes, roots) = tx.tree(&reader(&["bob"]));
        assert_eq!(roots, vec![1]);
        assert_eq!(nodes.len(), 1);
        let (nodes, roots) = tx.tree(&reader(&["alice"]));
        assert_eq!(roots, vec![0]);
        assert_eq!(nodes.len(), 2);
        assert!(!tx.visible_to(&reader(&["carol"])));
    }

    #[test]
    fn an_any_party_reader_sees_every_witness_and_stakeholder() {
        let tx = transfer();
        let flat = tx.flat_events(&any_party());
        assert!(
            matches!(
                &flat[..],
                [
                    FlatEvent::Archived { contract_id, witnesses: archived, .. },
                    FlatEvent::Created { contract, witnesses: created, .. },
                ] if *contract_id == "c1" && contract.contract_id == "c2"
                    && archived == &["alice", "bank"] && created == &["bank", "bob"]
            ),
            "{flat:?}"
        );
        let (nodes, roots) = tx.tree(&any_party());
        assert_eq!(roots, vec![0]);
        assert_eq!(nodes[&0], ["alice", "bank", "bob"]);
        assert!(tx.visible_to(&any_party()));
        assert_eq!(tx.command_id_for(&any_party()), "cmd");
        // Template filters still apply.
        let other = Reader {
            parties: Parties::Any,
            templates: set(&["other:T"]),
        };
        assert!(tx.flat_events(&other).is_empty());
        // Nobody named is not everybody.
        assert!(!tx.visible_to(&reader(&[])));
    }
}
