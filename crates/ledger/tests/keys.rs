//! Contract keys (examples/packages/registry.toml) against an in-memory active contract
//! set: uniqueness within what the submitter sees, exercise and fetch by key, key lookups
//! recorded for the maintainers, and views that conform.

use std::collections::{BTreeMap, BTreeSet};

use ordo_ledger::{
    Command, ContractId, ContractInstance, ContractLookup, ErrorKind, Hash, LedgerError, Limits,
    Node, PackageStore, PartyId, TemplateId, Transaction, Value, interpret, interpret_all,
    reinterpret_view,
};

const REGISTRY: &[u8] = include_bytes!("../../../examples/packages/registry.toml");

fn p(name: &str) -> PartyId {
    PartyId::new(name).unwrap()
}

fn parties(names: &[&str]) -> BTreeSet<PartyId> {
    names.iter().map(|n| p(n)).collect()
}

fn tid(s: &str) -> TemplateId {
    s.parse().unwrap()
}

fn record(fields: &[(&str, Value)]) -> Value {
    Value::Record(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn key(authority: &str, name: &str) -> Value {
    record(&[
        ("authority", Value::Party(p(authority))),
        ("name", Value::Text(name.into())),
    ])
}

fn text_arg(name: &str) -> Value {
    record(&[("name", Value::Text(name.into()))])
}

struct Ledger {
    packages: PackageStore,
    acs: BTreeMap<ContractId, ContractInstance>,
    submissions: u64,
}

impl Ledger {
    fn new() -> Self {
        let mut packages = PackageStore::new();
        packages.upload(REGISTRY).unwrap();
        Ledger {
            packages,
            acs: BTreeMap::new(),
            submissions: 0,
        }
    }

    /// Interprets against the whole ACS (a submitter that sees everything) and applies.
    fn submit(&mut self, act_as: &[&str], cmd: Command) -> Result<Transaction, LedgerError> {
        let seed = Hash::of(&self.submissions.to_be_bytes());
        let tx = interpret(
            &self.packages,
            &cmd,
            &parties(act_as),
            &self.acs,
            seed,
            &Limits::default(),
        )?;
        self.submissions += 1;
        for cid in tx.inputs().keys().filter(|c| tx.consumed().contains(c)) {
            assert!(self.acs.remove(cid).is_some());
        }
        self.acs.extend(tx.created());
        for party in tx.all_informees() {
            let view = tx.view(&BTreeSet::from([party.clone()]));
            reinterpret_view(&self.packages, &view, &Limits::default())
                .unwrap_or_else(|e| panic!("view of {party} does not conform: {e}"));
        }
        Ok(tx)
    }

    fn registrar(&mut self, authority: &str, user: &str) -> ContractId {
        let tx = self
            .submit(
                &[authority],
                Command::Create {
                    template: tid("registry:Registrar"),
                    payload: record(&[
                        ("authority", Value::Party(p(authority))),
                        ("user", Value::Party(p(user))),
                    ]),
                },
            )
            .unwrap();
        *tx.created().keys().next().unwrap()
    }

    fn exercise(
        &mut self,
        act_as: &str,
        template: &str,
        cid: ContractId,
        choice: &str,
        argument: Value,
    ) -> Result<(Transaction, Value), LedgerError> {
        let tx = self.submit(
            &[act_as],
            Command::Exercise {
                template: tid(template),
                contract_id: cid,
                choice: choice.into(),
                argument,
            },
        )?;
        let result = match &tx.nodes[tx.roots[0]] {
            Node::Exercise { result, .. } => result.clone(),
            other => panic!("root is not an exercise: {other:?}"),
        };
        Ok((tx, result))
    }

    fn register(
        &mut self,
        registrar: ContractId,
        user: &str,
        name: &str,
    ) -> Result<ContractId, LedgerError> {
        let (_, result) = self.exercise(
            user,
            "registry:Registrar",
            registrar,
            "Register",
            text_arg(name),
        )?;
        match result {
            Value::ContractId(c) => Ok(c),
            other => panic!("not a contract id: {other:?}"),
        }
    }

    fn holder(&self, authority: &str, name: &str) -> Option<ContractId> {
        self.acs
            .lookup_key(&tid("registry:Name"), &key(authority, name))
            .map(|(cid, _)| cid)
    }
}

#[test]
fn a_key_is_computed_with_its_maintainers_and_held_once() {
    let mut l = Ledger::new();
    let reg = l.registrar("reg", "alice");
    let name = l.register(reg, "alice", "ann").unwrap();
    let contract = &l.acs[&name];
    assert_eq!(contract.key, Some(key("reg", "ann")));
    assert_eq!(contract.maintainers, parties(&["reg"]));
    assert_eq!(l.holder("reg", "ann"), Some(name));

    // A second Name with the same key fails in interpretation when the submitter sees the
    // holder (the maintainers' shards catch the rest, in the confirmation).
    let bob_reg = l.registrar("reg", "bob");
    let err = l.register(bob_reg, "bob", "ann").unwrap_err();
    assert!(
        matches!(err, LedgerError::DuplicateContractKey { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    // Another name, or the same name of another authority, is another key.
    l.register(bob_reg, "bob", "bo").unwrap();
    let other_reg = l.registrar("other", "bob");
    l.register(other_reg, "bob", "ann").unwrap();
}

#[test]
fn exercise_by_key_and_archiving_frees_the_key() {
    let mut l = Ledger::new();
    let reg = l.registrar("reg", "alice");
    let name = l.register(reg, "alice", "ann").unwrap();
    let tx = l
        .submit(
            &["alice"],
            Command::ExerciseByKey {
                template: tid("registry:Name"),
                key: key("reg", "ann"),
                choice: "Release".into(),
                argument: record(&[]),
            },
        )
        .unwrap();
    assert_eq!(tx.consumed(), BTreeSet::from([name]));
    assert_eq!(l.holder("reg", "ann"), None);
    // Freed: the key can be registered again, by someone else.
    let bob_reg = l.registrar("reg", "bob");
    let again = l.register(bob_reg, "bob", "ann").unwrap();
    assert_eq!(l.holder("reg", "ann"), Some(again));

    // Releasing and registering again in one transaction: the key is free after the
    // release, within the transaction.
    let tx = interpret_all(
        &l.packages,
        &[
            Command::ExerciseByKey {
                template: tid("registry:Name"),
                key: key("reg", "ann"),
                choice: "Release".into(),
                argument: record(&[]),
            },
            Command::Exercise {
                template: tid("registry:Registrar"),
                contract_id: bob_reg,
                choice: "Register".into(),
                argument: text_arg("ann"),
            },
        ],
        &parties(&["bob"]),
        &l.acs,
        Hash::of(b"release and register"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(tx.consumed(), BTreeSet::from([again]));
    assert_eq!(tx.created().len(), 1);
    // ... but registering first is a duplicate.
    let err = interpret_all(
        &l.packages,
        &[
            Command::Exercise {
                template: tid("registry:Registrar"),
                contract_id: bob_reg,
                choice: "Register".into(),
                argument: text_arg("ann"),
            },
            Command::ExerciseByKey {
                template: tid("registry:Name"),
                key: key("reg", "ann"),
                choice: "Release".into(),
                argument: record(&[]),
            },
        ],
        &parties(&["bob"]),
        &l.acs,
        Hash::of(b"register and release"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, LedgerError::DuplicateContractKey { .. }),
        "{err}"
    );

    // No contract with the key: CONTRACT_KEY_NOT_FOUND's error, nothing committed.
    let before = l.acs.clone();
    let err = l
        .submit(
            &["alice"],
            Command::ExerciseByKey {
                template: tid("registry:Name"),
                key: key("reg", "nobody"),
                choice: "Release".into(),
                argument: record(&[]),
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::ContractKeyNotFound { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(l.acs, before);
    // A key of the wrong type is a type error naming the key.
    let err = l
        .submit(
            &["alice"],
            Command::ExerciseByKey {
                template: tid("registry:Name"),
                key: Value::Text("ann".into()),
                choice: "Release".into(),
                argument: record(&[]),
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("key of registry:Name"), "{err}");
}

#[test]
fn fetch_by_key_in_a_body_is_a_fetch_of_the_holder() {
    let mut l = Ledger::new();
    let alice_reg = l.registrar("reg", "alice");
    let bob_reg = l.registrar("reg", "bob");
    let ann = l.register(alice_reg, "alice", "ann").unwrap();
    let bo = l.register(bob_reg, "bob", "bo").unwrap();
    // Alice describes "bo" through her own Name: inside it the authority (a signatory)
    // authorizes, a stakeholder of bob's Name, so the fetch is authorized.
    let (tx, result) = l
        .exercise("alice", "registry:Name", ann, "Describe", text_arg("bo"))
        .unwrap();
    assert_eq!(result, Value::Party(p("bob")));
    assert!(tx.nodes.iter().any(
        |n| matches!(n, Node::Fetch { contract_id, actors, .. } if *contract_id == bo && *actors == parties(&["reg"]))
    ));
    assert!(tx.inputs().contains_key(&bo));
    // A name nobody holds: CONTRACT_KEY_NOT_FOUND's error.
    let err = l
        .exercise(
            "alice",
            "registry:Name",
            ann,
            "Describe",
            text_arg("nobody"),
        )
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::ContractKeyNotFound { .. }),
        "{err}"
    );
}

#[test]
fn lookups_by_key_are_nodes_the_maintainers_confirm() {
    let mut l = Ledger::new();
    let reg = l.registrar("reg", "alice");
    let (tx, result) = l
        .exercise(
            "alice",
            "registry:Registrar",
            reg,
            "Lookup",
            text_arg("ann"),
        )
        .unwrap();
    assert_eq!(result, Value::Optional(None));
    let lookup = tx
        .nodes
        .iter()
        .find(|n| matches!(n, Node::LookupByKey { .. }))
        .expect("a lookup node");
    assert!(matches!(lookup, Node::LookupByKey { result: None, .. }));
    assert_eq!(lookup.informees(), parties(&["reg"]));
    assert_eq!(lookup.confirming_parties(), parties(&["reg"]));

    let ann = l.register(reg, "alice", "ann").unwrap();
    let (tx, result) = l
        .exercise(
            "alice",
            "registry:Registrar",
            reg,
            "Lookup",
            text_arg("ann"),
        )
        .unwrap();
    assert_eq!(
        result,
        Value::Optional(Some(Box::new(Value::ContractId(ann))))
    );
    // The contract found is an input of the transaction (its stakeholders check it is
    // active), carried in the maintainers' view.
    assert!(tx.inputs().contains_key(&ann));
    let view = tx.view(&parties(&["reg"]));
    assert!(view.inputs.contains_key(&ann));

    // A view claiming the lookup found nothing while it carries the holder does not
    // conform.
    let mut forged = view.clone();
    for node in forged.nodes.values_mut() {
        if let Node::LookupByKey { result, .. } = node {
            *result = None;
        }
    }
    assert!(reinterpret_view(&l.packages, &forged, &Limits::default()).is_err());
}

#[test]
fn a_key_without_maintainers_or_with_non_signatory_maintainers_is_refused() {
    let no_maintainers = br#"
name = "k"
version = "1.0.0"
[templates.T]
fields = { owner = "party" }
signatories = "this.owner"
key = "this.owner"
key_type = "party"
"#;
    let err = PackageStore::new().upload(no_maintainers).unwrap_err();
    assert!(err.to_string().contains("go together"), "{err}");

    let outsider = br#"
name = "k"
version = "1.0.0"
[templates.T]
fields = { owner = "party", other = "party" }
signatories = "this.owner"
key = "this.other"
key_type = "party"
maintainers = "key"
"#;
    let mut packages = PackageStore::new();
    packages.upload(outsider).unwrap();
    let err = interpret(
        &packages,
        &Command::Create {
            template: tid("k:T"),
            payload: record(&[
                ("owner", Value::Party(p("alice"))),
                ("other", Value::Party(p("bob"))),
            ]),
        },
        &parties(&["alice"]),
        &BTreeMap::<ContractId, ContractInstance>::new(),
        Hash::of(b"seed"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("maintainers must be signatories"),
        "{err}"
    );
}
