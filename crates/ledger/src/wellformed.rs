//! Structure before work (DESIGN §4, *Trust*): a received view is checked to be a
//! well-formed part of a transaction before anything walks or interprets it.
//!
//! A view is a set of subtrees of one transaction, under the transaction's node ids, which
//! are numbered in pre-order. So each root's subtree must occupy the contiguous id range
//! that starts at the root: its first child is the root's id + 1, each next child starts
//! right after its elder sibling's subtree, and so on down. A view that passes
//! [`check_view`] therefore has no cycle, no node shared by two parents, no child out of
//! its parent's range, no stray node outside every root's subtree and no overlapping roots;
//! every walk over it visits each node once. The check itself visits each node at most
//! once and never recurses, whatever the input, and it bounds the node count, the roots,
//! the inputs (each must be used by a node), the node ids and the nesting depth by the
//! domain's [`Limits`].

use std::collections::BTreeSet;

use crate::LedgerError;
use crate::interpret::Limits;
use crate::transaction::{Node, NodeId, View};

fn malformed(message: impl Into<String>) -> LedgerError {
    LedgerError::MalformedView(message.into())
}

/// Checks that `view` is well formed and within `limits` (see the module doc). Cheap:
/// linear in the view's size.
pub fn check_view(view: &View, limits: &Limits) -> Result<(), LedgerError> {
    let max = limits.max_nodes;
    if view.submitters.is_empty() {
        return Err(malformed("the view names no submitting party"));
    }
    if view.nodes.is_empty() || view.roots.is_empty() {
        return Err(malformed("the view has no actions"));
    }
    if view.nodes.len() > max {
        return Err(malformed(format!(
            "the view has {} nodes, more than the domain's max_transaction_nodes {max}",
            view.nodes.len()
        )));
    }
    if view.roots.len() > max {
        return Err(malformed(format!(
            "the view has {} roots, more than the domain's max_transaction_nodes {max}",
            view.roots.len()
        )));
    }
    if view.inputs.len() > max {
        return Err(malformed(format!(
            "the view has {} input contracts, more than the domain's max_transaction_nodes {max}",
            view.inputs.len()
        )));
    }
    // Transaction node ids are below the transaction's node count.
    if let Some((&last, _)) = view.nodes.last_key_value()
        && last >= max
    {
        return Err(malformed(format!(
            "node id {last} is beyond the domain's max_transaction_nodes {max}"
        )));
    }

    let mut visited = 0usize;
    // The first id the next root may have: roots are in order and do not overlap.
    let mut free_from: NodeId = 0;
    for root in &view.roots {
        if root.node < free_from {
            return Err(malformed(format!(
                "root {} is out of order or inside an earlier root's subtree",
                root.node
            )));
        }
        if let Some(parent) = root.parent {
            if parent >= root.node {
                return Err(malformed(format!(
                    "root {} names parent {parent}, which does not precede it",
                    root.node
                )));
            }
            if view.nodes.contains_key(&parent) {
                return Err(malformed(format!(
                    "root {} names parent {parent}, which is in the view: it is no root then",
                    root.node
                )));
            }
        }
        let end = check_subtree(view, root.node, limits)?;
        visited += end - root.node;
        free_from = end;
    }
    if visited != view.nodes.len() {
        return Err(malformed(format!(
            "{} of the view's {} nodes belong to no root's subtree",
            view.nodes.len() - visited,
            view.nodes.len()
        )));
    }

    let used: BTreeSet<_> = view
        .nodes
        .values()
        .filter(|n| !matches!(n, Node::Create { .. }))
        .filter_map(Node::contract_id)
        .collect();
    if let Some(unused) = view.inputs.keys().find(|cid| !used.contains(cid)) {
        return Err(malformed(format!(
            "input contract {unused} is used by no action of the view"
        )));
    }
    Ok(())
}

/// Walks the subtree at `root` in pre-order without recursion, demanding that it occupies
/// `root, root + 1, …`; returns the id right after it.
fn check_subtree(view: &View, root: NodeId, limits: &Limits) -> Result<NodeId, LedgerError> {
    let node = |id: NodeId| {
        view.nodes
            .get(&id)
            .ok_or_else(|| malformed(format!("node {id} is referenced but not in the view")))
    };
    node(root)?;
    let mut next = root + 1;
    // (node, index of its next child to visit)
    let mut stack: Vec<(NodeId, usize)> = vec![(root, 0)];
    while let Some((id, child)) = stack.last_mut() {
        let children = node(*id)?.children();
        let Some(&c) = children.get(*child) else {
            stack.pop();
            continue;
        };
        *child += 1;
        if c != next {
            return Err(malformed(format!(
                "child {c} of node {id} is not node {next}: nodes must be numbered in pre-order \
                 without gaps, each once"
            )));
        }
        node(c)?;
        if stack.len() > limits.max_exercise_depth {
            return Err(malformed(format!(
                "node {c} is nested deeper than the domain's max_exercise_depth {}",
                limits.max_exercise_depth
            )));
        }
        next += 1;
        stack.push((c, 0));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ordo_core::{Hash, PartyId};

    use super::*;
    use crate::transaction::ViewRoot;
    use crate::types::ContractId;
    use crate::value::Value;

    fn party(p: &str) -> PartyId {
        PartyId::new(p).unwrap()
    }

    fn cid(n: u8) -> ContractId {
        ContractId(Hash::of(&[n]))
    }

    fn fetch(n: u8) -> Node {
        Node::Fetch {
            contract_id: cid(n),
            template: "iou:Iou".parse().unwrap(),
            actors: [party("alice")].into_iter().collect(),
            signatories: [party("bank")].into_iter().collect(),
            stakeholders: [party("bank"), party("alice")].into_iter().collect(),
        }
    }

    fn exercise(n: u8, children: Vec<NodeId>) -> Node {
        Node::Exercise {
            contract_id: cid(n),
            template: "iou:Iou".parse().unwrap(),
            choice: "Transfer".into(),
            consuming: true,
            actors: [party("alice")].into_iter().collect(),
            argument: Value::Unit,
            children,
            result: Value::Unit,
            signatories: [party("bank")].into_iter().collect(),
            stakeholders: [party("bank"), party("alice")].into_iter().collect(),
            choice_observers: BTreeSet::new(),
        }
    }

    fn root(node: NodeId) -> ViewRoot {
        ViewRoot {
            node,
            parent: None,
            authorizers: [party("alice")].into_iter().collect(),
        }
    }

    /// A view of `nodes` under `roots`, each node's contract one of its inputs.
    fn view(nodes: Vec<(NodeId, Node)>, roots: Vec<ViewRoot>) -> View {
        let nodes: BTreeMap<NodeId, Node> = nodes.into_iter().collect();
        let inputs = nodes
            .values()
            .filter_map(Node::contract_id)
            .map(|cid| {
                (
                    *cid,
                    crate::transaction::ContractInstance {
                        template: "iou:Iou".parse().unwrap(),
                        package_id: crate::types::PackageId(Hash::of(b"p")),
                        payload: Value::Unit,
                        signatories: BTreeSet::new(),
                        observers: BTreeSet::new(),
                        key: None,
                        maintainers: Default::default(),
                    },
                )
            })
            .collect();
        View {
            seed: Hash::of(b"seed"),
            submitters: [party("alice")].into_iter().collect(),
            roots,
            nodes,
            inputs,
        }
    }

    /// Root 0, an exercise with children 1 and 2, and root 3.
    fn good() -> View {
        view(
            vec![
                (0, exercise(0, vec![1, 2])),
                (1, exercise(1, vec![])),
                (2, fetch(2)),
                (3, fetch(3)),
            ],
            vec![root(0), root(3)],
        )
    }

    fn error(v: &View) -> String {
        check_view(v, &Limits::default()).unwrap_err().to_string()
    }

    #[test]
    fn a_well_formed_view_passes() {
        check_view(&good(), &Limits::default()).unwrap();
        // Roots inside a choice body: a parent outside the view, ids not from 0.
        let mut inner = view(
            vec![(5, exercise(5, vec![6])), (6, fetch(6))],
            vec![ViewRoot {
                parent: Some(2),
                ..root(5)
            }],
        );
        check_view(&inner, &Limits::default()).unwrap();
        inner.roots[0].parent = Some(5);
        assert!(
            error(&inner).contains("does not precede"),
            "{}",
            error(&inner)
        );
    }

    #[test]
    fn cycles_shared_children_and_gaps_are_refused() {
        let cycle = view(
            vec![(0, exercise(0, vec![1])), (1, exercise(1, vec![0]))],
            vec![root(0)],
        );
        assert!(error(&cycle).contains("pre-order"), "{}", error(&cycle));
        let self_loop = view(vec![(0, exercise(0, vec![0]))], vec![root(0)]);
        assert!(error(&self_loop).contains("pre-order"));
        let shared = view(
            vec![(0, exercise(0, vec![1, 1])), (1, fetch(1))],
            vec![root(0)],
        );
        assert!(error(&shared).contains("pre-order"));
        let gap = view(
            vec![(0, exercise(0, vec![2])), (2, fetch(2))],
            vec![root(0)],
        );
        assert!(error(&gap).contains("pre-order"));
        let missing = view(vec![(0, exercise(0, vec![1]))], vec![root(0)]);
        assert!(error(&missing).contains("not in the view"));
    }

    #[test]
    fn roots_must_be_ordered_disjoint_and_cover_every_node() {
        let mut v = good();
        v.roots.reverse();
        assert!(error(&v).contains("out of order"));
        let mut v = good();
        v.roots.push(root(1));
        assert!(error(&v).contains("out of order"));
        let mut v = good();
        v.roots.pop();
        assert!(error(&v).contains("belong to no root"));
        let mut v = good();
        v.roots.clear();
        assert!(error(&v).contains("no actions"));
    }

    #[test]
    fn sizes_ids_depth_and_inputs_are_bounded() {
        let limits = Limits {
            max_nodes: 3,
            ..Limits::default()
        };
        assert!(
            check_view(&good(), &limits)
                .unwrap_err()
                .to_string()
                .contains("4 nodes")
        );
        let far = view(vec![(5000, fetch(1))], vec![root(5000)]);
        assert!(error(&far).contains("beyond"));
        // A chain nested deeper than allowed.
        let depth = Limits::default().max_exercise_depth;
        let chain: Vec<(NodeId, Node)> = (0..depth + 2)
            .map(|i| {
                let children = if i + 1 < depth + 2 {
                    vec![i + 1]
                } else {
                    vec![]
                };
                (i, exercise(i as u8, children))
            })
            .collect();
        let deep = view(chain, vec![root(0)]);
        assert!(
            error(&deep).contains("max_exercise_depth"),
            "{}",
            error(&deep)
        );
        let mut unused = good();
        let extra = unused.inputs.values().next().unwrap().clone();
        unused.inputs.insert(cid(99), extra);
        assert!(error(&unused).contains("used by no action"));
        let mut anonymous = good();
        anonymous.submitters.clear();
        assert!(error(&anonymous).contains("no submitting party"));
    }
}
