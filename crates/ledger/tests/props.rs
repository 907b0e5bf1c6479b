//! Properties of what a participant does with input from other members (DESIGN §4,
//! *Trust*): the structure check of a received view, re-interpretation under one step
//! budget per view, and the package parser. Random well-formed views come from real
//! transactions; mutated ones from random changes to them. Case counts are fixed so that
//! the workspace tests stay bounded.

use std::collections::{BTreeMap, BTreeSet};

use ordo_ledger::{
    Command, ContractId, ContractInstance, Hash, LedgerError, Limits, Node, NodeId, Package,
    PackageStore, PartyId, TemplateId, Transaction, Value, View, check_view, interpret,
    reinterpret_view,
};
use proptest::prelude::*;
use serde_json::json;

const IOU: &[u8] = include_bytes!("../../../examples/packages/iou.toml");
const SPIN: &[u8] = include_bytes!("../../../tests/adversarial/spin.toml");

fn party(p: &str) -> PartyId {
    PartyId::new(p).unwrap()
}

fn parties(ps: &[&str]) -> BTreeSet<PartyId> {
    ps.iter().map(|p| party(p)).collect()
}

fn packages() -> PackageStore {
    let mut store = PackageStore::new();
    store.upload(IOU).unwrap();
    store.upload(SPIN).unwrap();
    store
}

fn tid(s: &str) -> TemplateId {
    s.parse().unwrap()
}

/// A small ledger to draw transactions from.
struct Ledger {
    packages: PackageStore,
    acs: BTreeMap<ContractId, ContractInstance>,
    seed: u64,
}

impl Ledger {
    fn new() -> Self {
        Self {
            packages: packages(),
            acs: BTreeMap::new(),
            seed: 0,
        }
    }

    fn run(&mut self, act_as: &[&str], command: Command) -> Transaction {
        self.seed += 1;
        let tx = interpret(
            &self.packages,
            &command,
            &parties(act_as),
            &self.acs,
            Hash::of(&self.seed.to_be_bytes()),
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        for cid in tx.consumed() {
            self.acs.remove(&cid);
        }
        self.acs.extend(tx.created());
        tx
    }

    fn create(&mut self, act_as: &str, template: &str, payload: serde_json::Value) -> Transaction {
        let template = tid(template);
        let payload = self
            .packages
            .payload_from_json(&template, &payload)
            .unwrap();
        self.run(&[act_as], Command::Create { template, payload })
    }

    fn exercise(
        &mut self,
        act_as: &str,
        template: &str,
        cid: ContractId,
        choice: &str,
        argument: serde_json::Value,
    ) -> Transaction {
        let template = tid(template);
        let argument = self
            .packages
            .argument_from_json(&template, choice, &argument)
            .unwrap();
        self.run(
            &[act_as],
            Command::Exercise {
                template,
                contract_id: cid,
                choice: choice.into(),
                argument,
            },
        )
    }
}

fn created(tx: &Transaction, template: &str) -> ContractId {
    tx.created()
        .into_iter()
        .find(|(_, c)| c.template == tid(template))
        .map(|(cid, _)| cid)
        .unwrap()
}

/// Every informee's view of a few real transactions (computed once).
fn honest_views() -> &'static [View] {
    static VIEWS: std::sync::OnceLock<Vec<View>> = std::sync::OnceLock::new();
    VIEWS.get_or_init(make_views)
}

/// Every informee's view of a few real transactions: creates, a transfer, a split, an
/// atomic swap across owners (exercises nested in a choice body), spins and stamps.
fn make_views() -> Vec<View> {
    let mut l = Ledger::new();
    let mut txs = Vec::new();
    let iou = |issuer: &str, owner: &str, currency: &str, amount: &str| json!({"issuer": issuer, "owner": owner, "currency": currency, "amount": amount});
    let a = l.create("bank", "iou:Iou", iou("bank", "alice", "USD", "100"));
    let a_cid = created(&a, "iou:Iou");
    txs.push(a);
    let t = l.exercise(
        "alice",
        "iou:Iou",
        a_cid,
        "Transfer",
        json!({"newOwner": "bob"}),
    );
    let t_cid = created(&t, "iou:Iou");
    txs.push(t);
    let s = l.exercise(
        "bob",
        "iou:Iou",
        t_cid,
        "Split",
        json!({"splitAmount": "30"}),
    );
    txs.push(s);
    let chf = l.create("ecb", "iou:Iou", iou("ecb", "alice", "CHF", "50"));
    let chf_cid = created(&chf, "iou:Iou");
    txs.push(chf);
    let usd = l.create("bank", "iou:Iou", iou("bank", "bob", "USD", "70"));
    let usd_cid = created(&usd, "iou:Iou");
    txs.push(usd);
    let proposal = l.create(
        "alice",
        "iou:SwapProposal",
        json!({"proposer": "alice", "counterparty": "bob", "offeredCid": chf_cid.to_string(),
               "wantedIssuer": "bank", "wantedCurrency": "USD", "wantedAmount": "70"}),
    );
    let p_cid = created(&proposal, "iou:SwapProposal");
    txs.push(proposal);
    txs.push(l.exercise(
        "bob",
        "iou:SwapProposal",
        p_cid,
        "Accept",
        json!({"counterCid": usd_cid.to_string()}),
    ));
    let counter = l.create(
        "bob",
        "spin:Counter",
        json!({"owner": "bob", "operator": "mallory"}),
    );
    let c_cid = created(&counter, "spin:Counter");
    txs.push(counter);
    txs.push(l.exercise("mallory", "spin:Counter", c_cid, "Spin", json!({"n": 25})));
    txs.push(l.exercise(
        "mallory",
        "spin:Counter",
        c_cid,
        "Stamp",
        json!({"note": "x"}),
    ));
    txs.iter()
        .flat_map(|tx| {
            tx.all_informees()
                .into_iter()
                .map(|p| tx.view(&BTreeSet::from([p])))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Set child `which` of exercise `node` to `to`.
    Child {
        node: usize,
        which: usize,
        to: usize,
    },
    /// Append `to` to the children of exercise `node`.
    AddChild { node: usize, to: usize },
    /// Remove node `node`.
    Remove { node: usize },
    /// Copy node `node` to id `to`.
    Copy { node: usize, to: usize },
    /// Swap the contents of two nodes.
    Swap { a: usize, b: usize },
    /// Set root `which`'s node to `to`, or its parent.
    Root {
        which: usize,
        to: usize,
        parent: Option<usize>,
    },
    /// Duplicate root `which`.
    DupRoot { which: usize },
    /// Reverse the roots.
    ReverseRoots,
    /// Replace an exercise's argument or result by an integer.
    Value { node: usize, result: bool, n: i64 },
    /// Remove input `which`.
    DropInput { which: usize },
    /// Replace the submitters.
    Submitters { who: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let id = 0usize..12;
    prop_oneof![
        (id.clone(), 0usize..4, id.clone()).prop_map(|(node, which, to)| Mutation::Child {
            node,
            which,
            to
        }),
        (id.clone(), id.clone()).prop_map(|(node, to)| Mutation::AddChild { node, to }),
        id.clone().prop_map(|node| Mutation::Remove { node }),
        (id.clone(), 0usize..2000).prop_map(|(node, to)| Mutation::Copy { node, to }),
        (id.clone(), id.clone()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        (0usize..4, id.clone(), proptest::option::of(id.clone()))
            .prop_map(|(which, to, parent)| Mutation::Root { which, to, parent }),
        (0usize..4).prop_map(|which| Mutation::DupRoot { which }),
        Just(Mutation::ReverseRoots),
        (id.clone(), any::<bool>(), -3i64..100_000).prop_map(|(node, result, n)| Mutation::Value {
            node,
            result,
            n
        }),
        (0usize..4).prop_map(|which| Mutation::DropInput { which }),
        (0usize..4).prop_map(|who| Mutation::Submitters { who }),
    ]
}

fn nth_key(view: &View, n: usize) -> Option<NodeId> {
    if view.nodes.is_empty() {
        return None;
    }
    view.nodes.keys().nth(n % view.nodes.len()).copied()
}

fn apply(view: &mut View, m: &Mutation) {
    match m {
        Mutation::Child { node, which, to } => {
            if let Some(k) = nth_key(view, *node)
                && let Some(Node::Exercise { children, .. }) = view.nodes.get_mut(&k)
                && !children.is_empty()
            {
                let i = which % children.len();
                children[i] = *to;
            }
        }
        Mutation::AddChild { node, to } => {
            if let Some(k) = nth_key(view, *node)
                && let Some(Node::Exercise { children, .. }) = view.nodes.get_mut(&k)
            {
                children.push(*to);
            }
        }
        Mutation::Remove { node } => {
            if let Some(k) = nth_key(view, *node) {
                view.nodes.remove(&k);
            }
        }
        Mutation::Copy { node, to } => {
            if let Some(k) = nth_key(view, *node) {
                let n = view.nodes[&k].clone();
                view.nodes.insert(*to, n);
            }
        }
        Mutation::Swap { a, b } => {
            if let (Some(a), Some(b)) = (nth_key(view, *a), nth_key(view, *b)) {
                let na = view.nodes[&a].clone();
                let nb = view.nodes[&b].clone();
                view.nodes.insert(a, nb);
                view.nodes.insert(b, na);
            }
        }
        Mutation::Root { which, to, parent } => {
            if !view.roots.is_empty() {
                let i = which % view.roots.len();
                view.roots[i].node = *to;
                view.roots[i].parent = *parent;
            }
        }
        Mutation::DupRoot { which } => {
            if !view.roots.is_empty() {
                let r = view.roots[which % view.roots.len()].clone();
                view.roots.push(r);
            }
        }
        Mutation::ReverseRoots => view.roots.reverse(),
        Mutation::Value { node, result, n } => {
            if let Some(k) = nth_key(view, *node)
                && let Some(Node::Exercise {
                    argument,
                    result: r,
                    ..
                }) = view.nodes.get_mut(&k)
            {
                let target = if *result { r } else { argument };
                *target = Value::Int(*n);
            }
        }
        Mutation::DropInput { which } => {
            if let Some(k) = (!view.inputs.is_empty())
                .then(|| *view.inputs.keys().nth(which % view.inputs.len()).unwrap())
            {
                view.inputs.remove(&k);
            }
        }
        Mutation::Submitters { who } => {
            view.submitters = parties(&[["alice", "bob", "bank", "mallory"][who % 4]]);
        }
    }
}

/// An independent walk over a view that passed the check: every root's subtree, with a
/// visited set, must meet each node exactly once.
fn walk_visits_each_node_once(view: &View) -> Result<(), TestCaseError> {
    let mut seen = BTreeSet::new();
    for root in &view.roots {
        let mut stack = vec![root.node];
        while let Some(id) = stack.pop() {
            prop_assert!(seen.insert(id), "node {id} reached twice");
            prop_assert!(seen.len() <= view.nodes.len());
            let node = view.nodes.get(&id);
            prop_assert!(node.is_some(), "node {id} missing");
            stack.extend(node.unwrap().children().iter().rev());
        }
    }
    prop_assert_eq!(seen.len(), view.nodes.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    /// Honest views pass the check and conform; mutated views never panic the check or
    /// re-interpretation, a view that passes the check is walkable, and re-interpretation
    /// that succeeds stayed within its budget.
    #[test]
    fn views_are_checked_before_work_and_never_panic(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..5),
        budget in 50u64..5_000,
    ) {
        let packages = packages();
        let views = honest_views();
        let mut view = pick.get(views).clone();
        if mutations.is_empty() {
            let limits = Limits::default();
            prop_assert!(check_view(&view, &limits).is_ok(), "an honest view fails the check");
            prop_assert!(reinterpret_view(&packages, &view, &limits).is_ok());
        }
        for m in &mutations {
            apply(&mut view, m);
        }
        let limits = Limits { max_operations: budget, ..Limits::default() };
        if check_view(&view, &limits).is_ok() {
            walk_visits_each_node_once(&view)?;
            if let Ok(steps) = reinterpret_view(&packages, &view, &limits) {
                prop_assert!(steps <= budget, "{steps} steps, budget {budget}");
            }
        }
    }

    /// One budget per view: a view of `roots` Spin roots of `n` iterations each either
    /// conforms within the budget or fails on the step limit, whatever the split.
    #[test]
    fn one_step_budget_per_view(n in 0i64..3_000, roots in 1usize..40, budget in 1_000u64..60_000) {
        let mut l = Ledger::new();
        let counter = l.create("bob", "spin:Counter", json!({"owner": "bob", "operator": "mallory"}));
        let cid = created(&counter, "spin:Counter");
        let one = l.exercise("mallory", "spin:Counter", cid, "Spin", json!({"n": n}));
        let view_of = |roots: usize| {
            Transaction {
                seed: one.seed,
                submitters: one.submitters.clone(),
                roots: (0..roots).collect(),
                nodes: vec![one.nodes[0].clone(); roots],
                input_contracts: one.input_contracts.clone(),
            }
            .view(&parties(&["bob"]))
        };
        let view = view_of(roots);
        let limits = Limits { max_operations: budget, ..Limits::default() };
        prop_assert!(check_view(&view, &limits).is_ok());
        // One root with its input costs `single` (its input is a few operations); the whole
        // view then costs about `roots` times that, and must fail well above the budget
        // and pass well below it, however little each root costs alone.
        let unbounded = Limits { max_operations: u64::MAX / 2, ..Limits::default() };
        let single = reinterpret_view(&l.packages, &view_of(1), &unbounded).unwrap();
        let total = roots as u64 * single;
        match reinterpret_view(&l.packages, &view, &limits) {
            Ok(steps) => {
                prop_assert!(steps <= budget, "{steps} steps, budget {budget}");
                prop_assert!(
                    total <= 2 * budget,
                    "{roots} roots of {single} steps passed a budget of {budget}"
                );
            }
            Err(LedgerError::StepLimit { .. }) => prop_assert!(
                total > budget / 2,
                "{roots} roots of {single} steps failed a budget of {budget}"
            ),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// The package parser never panics on mutated package files.
    #[test]
    fn the_package_parser_never_panics(
        which in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>(), 0usize..12), 1..8),
    ) {
        const TOKENS: [&str; 12] = [
            "[templates.X]", "fields = {", "}", "'''", "\"", "body = '''", "while true {}",
            "contract_id<", "list<list<list<", "= \"party\"", "\n", "[templates.Iou.choices.Y]",
        ];
        let mut text = if which { IOU.to_vec() } else { SPIN.to_vec() };
        for (at, op, byte, token) in edits {
            if text.is_empty() { break; }
            let i = at.index(text.len());
            match op {
                0 => text[i] = byte,
                1 => { text.remove(i); }
                2 => { text.splice(i..i, TOKENS[token].bytes()); }
                _ => text.truncate(i),
            }
        }
        if let Ok(p) = Package::parse(&text) {
            let mut store = PackageStore::new();
            let _ = store.add(p);
        }
    }
}
