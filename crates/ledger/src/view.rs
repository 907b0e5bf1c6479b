//! Conformance: a confirming participant re-interprets the view it received and demands the
//! identical subtrees.

use std::collections::{BTreeMap, BTreeSet};

use ordo_core::PartyId;
use rhai::Engine;

use crate::LedgerError;
use crate::interpret::{Arg, Key, Limits, Machine};
use crate::package::PackageStore;
use crate::transaction::{Node, NodeId, View};

/// Re-interprets every root of `view` against `packages`, under one step budget
/// (`limits.max_operations`) for the whole view, however many roots and inputs it has;
/// returns the operations it took. Call [`crate::check_view`] first: this walks the view's
/// subtrees and trusts them to be well formed.
///
/// - each input contract's signatories, observers and key must follow from its payload;
/// - a root of the transaction must be authorized by the submitters, and every root's action
///   by its carried authorizers (for a root inside a choice body these are the parent's
///   contract signatories and controllers, which this participant cannot see and so takes
///   as carried; the parent's own confirmers vouch for them);
/// - re-running a create (typing, ensure, parties, id), an exercise (the choice with the
///   carried input and argument) or a fetch must reproduce the view's subtree exactly.
pub fn reinterpret_view(
    packages: &PackageStore,
    view: &View,
    limits: &Limits,
) -> Result<u64, LedgerError> {
    let machine = Machine::new(packages, limits, view.seed);
    machine.with_engine(|engine| reinterpret(packages, view, &machine, engine))
}

fn reinterpret(
    packages: &PackageStore,
    view: &View,
    machine: &Machine,
    engine: &Engine,
) -> Result<u64, LedgerError> {
    for (cid, input) in &view.inputs {
        machine.reset(BTreeMap::new(), 0, BTreeSet::new());
        let (_, t) = packages.template(&input.template)?;
        let payload = input
            .payload
            .conform(&t.payload_type, &format!("input contract {cid} payload"))?;
        let recomputed = machine.instantiate(engine, &input.template, payload)?;
        if recomputed != *input {
            return Err(LedgerError::Conformance(format!(
                "input contract {cid}: its package, signatories, observers or key do not follow \
                 from its payload"
            )));
        }
    }
    // The contracts a root may use: the view's inputs, and what earlier roots created and
    // did not consume (a create-and-exercise is two roots: the create, then the exercise
    // of the contract it created).
    let mut known = view.inputs.clone();
    for root in &view.roots {
        if root.parent.is_none() && root.authorizers != view.submitters {
            return Err(LedgerError::Conformance(format!(
                "node {} is a root of the transaction but claims authorizers {} instead of \
                 the submitters {}",
                root.node,
                names(&root.authorizers),
                names(&view.submitters)
            )));
        }
        let node = view.nodes.get(&root.node).ok_or_else(|| {
            LedgerError::Conformance(format!("root node {} is not in the view", root.node))
        })?;
        machine.reset(known.clone(), root.node, root.authorizers.clone());
        let auth = &root.authorizers;
        let outcome = match node {
            Node::Create { contract, .. } => {
                let (_, t) = packages.template(&contract.template)?;
                let payload = contract.payload.conform(&t.payload_type, "payload")?;
                machine
                    .create(engine, &contract.template, payload, auth)
                    .map(drop)
            }
            Node::Exercise {
                contract_id,
                template,
                choice,
                argument,
                ..
            } => machine
                .exercise(
                    engine,
                    contract_id,
                    Some(template),
                    choice,
                    Arg::Value(argument.clone()),
                    auth,
                )
                .map(drop),
            Node::Fetch {
                contract_id,
                template,
                ..
            } => machine.fetch(contract_id, Some(template), auth).map(drop),
            Node::LookupByKey { template, key, .. } => machine
                .lookup_by_key(engine, template, Key::Value(key.clone()), auth)
                .map(drop),
        };
        outcome.map_err(|e| match e {
            LedgerError::ContractNotFound(cid) => LedgerError::Conformance(format!(
                "node {}: uses contract {cid}, which the view does not carry",
                root.node
            )),
            other => other,
        })?;
        let produced = machine.nodes();
        compare(view, root.node, &produced)?;
        for node in &produced {
            match node {
                Node::Create {
                    contract_id,
                    contract,
                } => {
                    known.insert(*contract_id, contract.clone());
                }
                Node::Exercise {
                    contract_id,
                    consuming: true,
                    ..
                } => {
                    known.remove(contract_id);
                }
                _ => {}
            }
        }
    }
    Ok(machine.steps())
}

fn compare(view: &View, root: NodeId, produced: &[Node]) -> Result<(), LedgerError> {
    let mut subtree = Vec::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        let node = view.nodes.get(&id).ok_or_else(|| {
            LedgerError::Conformance(format!("node {id} is referenced but not in the view"))
        })?;
        subtree.push(id);
        stack.extend(node.children().iter().rev());
    }
    let expected: Vec<NodeId> = (root..root + produced.len()).collect();
    if subtree != expected {
        return Err(LedgerError::Conformance(format!(
            "the subtree of node {root} has nodes {subtree:?} but re-interpretation produced \
             nodes {expected:?}"
        )));
    }
    for (id, node) in expected.iter().zip(produced) {
        if view.nodes.get(id) != Some(node) {
            return Err(LedgerError::Conformance(format!(
                "node {id} differs from its re-interpretation"
            )));
        }
    }
    Ok(())
}

fn names(parties: &BTreeSet<PartyId>) -> String {
    let v: Vec<&str> = parties.iter().map(PartyId::as_str).collect();
    format!("{{{}}}", v.join(", "))
}
