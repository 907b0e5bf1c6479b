//! The iou story end to end against an in-memory active contract set.

use std::collections::{BTreeMap, BTreeSet};

use ordo_ledger::{
    Command, ContractId, ContractInstance, ErrorKind, Hash, LedgerError, Limits, Node,
    PackageStore, PartyId, TemplateId, Transaction, Value, interpret, interpret_all,
    reinterpret_view,
};
use rust_decimal::Decimal;
use serde_json::json;

const IOU: &[u8] = include_bytes!("../../../examples/packages/iou.toml");

const TEST_PACKAGE: &str = r#"
name = "test"
version = "0.1.0"

[templates.T]
fields = { owner = "party", n = "int" }
signatories = "this.owner"

[templates.T.choices.Show]
controllers = "this.owner"
observers = "arg.to"
consuming = false
argument = { to = "list<party>" }

[templates.T.choices.Spin]
controllers = "this.owner"
consuming = false
body = "loop { }"

[templates.T.choices.BadCreate]
controllers = "this.owner"
body = 'create("T", #{ owner: this.owner, n: "seven" })'

[templates.T.choices.Recurse]
controllers = "this.owner"
consuming = false
body = 'exercise(create("T", #{ owner: this.owner, n: this.n + 1 }), "Recurse", #{})'

[templates.T.choices.ArchiveTwice]
controllers = "this.owner"
consuming = false
argument = { other = "contract_id<T>" }
body = "archive(arg.other); archive(arg.other)"

[templates.Sneaky]
fields = { owner = "party" }
signatories = 'create("T", #{ owner: this.owner, n: 0 }); this.owner'
"#;

fn p(name: &str) -> PartyId {
    PartyId::new(name).unwrap()
}

fn parties(names: &[&str]) -> BTreeSet<PartyId> {
    names.iter().map(|n| p(n)).collect()
}

fn tid(s: &str) -> TemplateId {
    s.parse().unwrap()
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.parse::<Decimal>().unwrap())
}

fn record(fields: &[(&str, Value)]) -> Value {
    Value::Record(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn iou(issuer: &str, owner: &str, currency: &str, amount: &str) -> Value {
    record(&[
        ("issuer", Value::Party(p(issuer))),
        ("owner", Value::Party(p(owner))),
        ("currency", Value::Text(currency.into())),
        ("amount", dec(amount)),
    ])
}

/// An in-memory ledger: the packages and the active contracts, updated by applying
/// transactions.
struct Ledger {
    packages: PackageStore,
    acs: BTreeMap<ContractId, ContractInstance>,
    submissions: u64,
}

impl Ledger {
    fn new() -> Self {
        let mut packages = PackageStore::new();
        packages.upload(IOU).unwrap();
        packages.upload(TEST_PACKAGE.as_bytes()).unwrap();
        Ledger {
            packages,
            acs: BTreeMap::new(),
            submissions: 0,
        }
    }

    fn interpret(&self, act_as: &[&str], cmd: &Command) -> Result<Transaction, LedgerError> {
        let seed = Hash::of(&self.submissions.to_be_bytes());
        interpret(
            &self.packages,
            cmd,
            &parties(act_as),
            &self.acs,
            seed,
            &Limits::default(),
        )
    }

    fn submit(&mut self, act_as: &[&str], cmd: Command) -> Result<Transaction, LedgerError> {
        let tx = self.interpret(act_as, &cmd)?;
        self.submissions += 1;
        for cid in tx.inputs().keys().filter(|c| tx.consumed().contains(c)) {
            assert!(self.acs.remove(cid).is_some());
        }
        self.acs.extend(tx.created());
        // Every informee's view of an honest transaction conforms.
        for party in tx.all_informees() {
            let view = tx.view(&BTreeSet::from([party.clone()]));
            reinterpret_view(&self.packages, &view, &Limits::default())
                .unwrap_or_else(|e| panic!("view of {party} does not conform: {e}"));
        }
        Ok(tx)
    }

    fn issue(&mut self, issuer: &str, owner: &str, currency: &str, amount: &str) -> ContractId {
        let tx = self
            .submit(
                &[issuer],
                Command::Create {
                    template: tid("iou:Iou"),
                    payload: iou(issuer, owner, currency, amount),
                },
            )
            .unwrap();
        *tx.created().keys().next().unwrap()
    }

    fn exercise(
        &mut self,
        act_as: &[&str],
        template: &str,
        cid: ContractId,
        choice: &str,
        argument: Value,
    ) -> Result<(Transaction, Value), LedgerError> {
        let tx = self.submit(
            act_as,
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

    /// The Ious each (owner, issuer, currency, amount) active now.
    fn ious(&self) -> BTreeSet<(String, String, String, String)> {
        self.acs
            .values()
            .filter(|c| c.template == tid("iou:Iou"))
            .map(|c| {
                let f = |n: &str| match c.payload.field(n).unwrap() {
                    Value::Party(p) => p.to_string(),
                    Value::Text(t) => t.clone(),
                    Value::Decimal(d) => d.to_string(),
                    other => panic!("{other:?}"),
                };
                (f("owner"), f("issuer"), f("currency"), f("amount"))
            })
            .collect()
    }
}

fn cid_of(v: &Value) -> ContractId {
    match v {
        Value::ContractId(c) => *c,
        other => panic!("not a contract id: {other:?}"),
    }
}

fn owned(
    owner: &str,
    issuer: &str,
    currency: &str,
    amount: &str,
) -> (String, String, String, String) {
    (owner.into(), issuer.into(), currency.into(), amount.into())
}

#[test]
fn issue_transfer_split_merge() {
    let mut l = Ledger::new();
    let c1 = l.issue("bank", "alice", "USD", "100.00");
    assert_eq!(
        l.ious(),
        BTreeSet::from([owned("alice", "bank", "USD", "100")])
    );

    let (tx, result) = l
        .exercise(
            &["alice"],
            "iou:Iou",
            c1,
            "Transfer",
            record(&[("newOwner", Value::Party(p("bob")))]),
        )
        .unwrap();
    let c2 = cid_of(&result);
    assert!(tx.inputs()[&c1].consumed);
    assert_eq!(tx.created().keys().copied().collect::<Vec<_>>(), vec![c2]);
    assert!(!l.acs.contains_key(&c1));
    assert_eq!(
        l.ious(),
        BTreeSet::from([owned("bob", "bank", "USD", "100")])
    );

    let (_, result) = l
        .exercise(
            &["bob"],
            "iou:Iou",
            c2,
            "Split",
            record(&[("splitAmount", dec("30.5"))]),
        )
        .unwrap();
    let Value::List(parts) = result else {
        panic!("{result:?}")
    };
    assert_eq!(parts.len(), 2);
    assert_eq!(
        l.ious(),
        BTreeSet::from([
            owned("bob", "bank", "USD", "30.5"),
            owned("bob", "bank", "USD", "69.5")
        ])
    );

    let (tx, _) = l
        .exercise(
            &["bob"],
            "iou:Iou",
            cid_of(&parts[0]),
            "Merge",
            record(&[("otherCid", parts[1].clone())]),
        )
        .unwrap();
    assert_eq!(tx.consumed().len(), 2);
    assert_eq!(
        l.ious(),
        BTreeSet::from([owned("bob", "bank", "USD", "100")])
    );
}

#[test]
fn split_and_merge_abort_on_bad_input() {
    let mut l = Ledger::new();
    let c = l.issue("bank", "alice", "USD", "10");
    let err = l
        .exercise(
            &["alice"],
            "iou:Iou",
            c,
            "Split",
            record(&[("splitAmount", dec("10"))]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(
        err.to_string(),
        "template iou:Iou, choice Split: aborted: splitAmount must be more than 0 and less than 10, got 10"
    );

    let other = l.issue("bank2", "alice", "USD", "5");
    let err = l
        .exercise(
            &["alice"],
            "iou:Iou",
            c,
            "Merge",
            record(&[("otherCid", Value::ContractId(other))]),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("can only merge IOUs of the same issuer, currency and owner"),
        "{err}"
    );
    assert_eq!(l.acs.len(), 2, "nothing changed");
}

fn propose_swap(l: &mut Ledger, offered: ContractId, wanted_amount: &str) -> ContractId {
    let tx = l
        .submit(
            &["alice"],
            Command::Create {
                template: tid("iou:SwapProposal"),
                payload: record(&[
                    ("proposer", Value::Party(p("alice"))),
                    ("counterparty", Value::Party(p("bob"))),
                    ("offeredCid", Value::ContractId(offered)),
                    ("wantedIssuer", Value::Party(p("bank2"))),
                    ("wantedCurrency", Value::Text("EUR".into())),
                    ("wantedAmount", dec(wanted_amount)),
                ]),
            },
        )
        .unwrap();
    *tx.created().keys().next().unwrap()
}

#[test]
fn swap_matching_moves_both_ious_atomically() {
    let mut l = Ledger::new();
    let usd = l.issue("bank1", "alice", "USD", "100");
    let eur = l.issue("bank2", "bob", "EUR", "80");
    let proposal = propose_swap(&mut l, usd, "80.0");

    let (tx, result) = l
        .exercise(
            &["bob"],
            "iou:SwapProposal",
            proposal,
            "Accept",
            record(&[("counterCid", Value::ContractId(eur))]),
        )
        .unwrap();
    assert_eq!(
        l.ious(),
        BTreeSet::from([
            owned("bob", "bank1", "USD", "100"),
            owned("alice", "bank2", "EUR", "80")
        ])
    );
    let offered = cid_of(result.field("offered").unwrap());
    assert_eq!(l.acs[&offered].observers, parties(&["bob"]));
    assert_eq!(tx.consumed(), BTreeSet::from([usd, eur, proposal]));
    // Both issuers and both owners are informed and confirm.
    assert_eq!(
        tx.all_informees(),
        parties(&["alice", "bob", "bank1", "bank2"])
    );
    assert_eq!(
        tx.all_confirming_parties(),
        parties(&["alice", "bob", "bank1", "bank2"])
    );
    // bank2 sees the fetch and the transfer of its Iou, not bank1's.
    let bank2 = tx.view(&parties(&["bank2"]));
    assert!(bank2.nodes.values().all(|n| match n {
        Node::Create { contract, .. } => contract.signatories == parties(&["bank2"]),
        Node::Exercise { contract_id, .. } | Node::Fetch { contract_id, .. } => *contract_id == eur,
        Node::LookupByKey { .. } => false,
    }));
}

#[test]
fn swap_non_matching_aborts() {
    let mut l = Ledger::new();
    let usd = l.issue("bank1", "alice", "USD", "100");
    let eur = l.issue("bank2", "bob", "EUR", "79");
    let proposal = propose_swap(&mut l, usd, "80");
    let err = l
        .exercise(
            &["bob"],
            "iou:SwapProposal",
            proposal,
            "Accept",
            record(&[("counterCid", Value::ContractId(eur))]),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "template iou:SwapProposal, choice Accept: aborted: the counter IOU must be 80 EUR issued by bank2, got 79 EUR issued by bank2"
    );
    // Withdraw is the proposer's only.
    let err = l
        .exercise(
            &["bob"],
            "iou:SwapProposal",
            proposal,
            "Withdraw",
            record(&[]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    l.exercise(
        &["alice"],
        "iou:SwapProposal",
        proposal,
        "Withdraw",
        record(&[]),
    )
    .unwrap();
    assert_eq!(l.acs.len(), 2);
}

#[test]
fn authorization_failures() {
    let mut l = Ledger::new();
    let bobs = l.issue("bank", "bob", "USD", "10");
    let err = l
        .exercise(
            &["alice"],
            "iou:Iou",
            bobs,
            "Transfer",
            record(&[("newOwner", Value::Party(p("alice")))]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.to_string(),
        format!(
            "exercise of Transfer on iou:Iou contract {bobs} requires the authorization of bob but only alice authorized it"
        )
    );

    let err = l
        .submit(
            &["alice"],
            Command::Create {
                template: tid("iou:Iou"),
                payload: iou("bank", "alice", "USD", "1000000"),
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.to_string(),
        "create of iou:Iou requires the authorization of bank but only alice authorized it"
    );

    // Archive is implicit, controlled by the signatories: the owner cannot archive.
    let err = l
        .exercise(&["bob"], "iou:Iou", bobs, "Archive", record(&[]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    l.exercise(&["bank"], "iou:Iou", bobs, "Archive", record(&[]))
        .unwrap();
    assert!(l.acs.is_empty());
}

#[test]
fn ensure_and_typing() {
    let mut l = Ledger::new();
    let err = l
        .submit(
            &["bank"],
            Command::Create {
                template: tid("iou:Iou"),
                payload: iou("bank", "alice", "USD", "0"),
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(
        err.to_string(),
        "template iou:Iou: ensure condition is false for the payload"
    );

    // Ill-typed command payloads name the field.
    let mut bad = iou("bank", "alice", "USD", "1");
    if let Value::Record(f) = &mut bad {
        f.insert("amount".into(), Value::Text("1".into()));
    }
    let err = l
        .submit(
            &["bank"],
            Command::Create {
                template: tid("iou:Iou"),
                payload: bad,
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        err.to_string(),
        "payload.amount: expected decimal, got text"
    );

    // JSON payloads through the store, as the APIs read them.
    let err = l
        .packages
        .payload_from_json(
            &tid("iou:Iou"),
            &json!({"issuer": "bank", "owner": "alice", "currency": "USD", "amount": true}),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload.amount: expected decimal as a string, got true"
    );
    let err = l
        .packages
        .payload_from_json(
            &tid("iou:Iou"),
            &json!({"issuer": "bank", "owner": "alice", "currency": "USD"}),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload.amount: missing field of type decimal"
    );
    let v = l
        .packages
        .payload_from_json(
            &tid("iou:Iou"),
            &json!({"issuer": "bank", "owner": "alice", "currency": "USD", "amount": "12.50"}),
        )
        .unwrap();
    assert_eq!(v, iou("bank", "alice", "USD", "12.5"));
    let err = l
        .packages
        .argument_from_json(
            &tid("iou:Iou"),
            "Split",
            &json!({"splitAmount": "1", "extra": 1}),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "argument.extra: unknown field");

    // A body creating an ill-typed payload aborts naming the field.
    let t = l
        .submit(
            &["alice"],
            Command::Create {
                template: tid("test:T"),
                payload: record(&[("owner", Value::Party(p("alice"))), ("n", Value::Int(0))]),
            },
        )
        .unwrap();
    let cid = *t.created().keys().next().unwrap();
    let err = l
        .exercise(&["alice"], "test:T", cid, "BadCreate", record(&[]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .starts_with("create test:T: payload.n: expected int, got string"),
        "{err}"
    );
}

#[test]
fn unknown_things_are_not_found() {
    let mut l = Ledger::new();
    let c = l.issue("bank", "alice", "USD", "1");
    let cases = [
        (
            Command::Create {
                template: tid("iou:Nope"),
                payload: record(&[]),
            },
            "unknown template iou:Nope".to_string(),
        ),
        (
            Command::Create {
                template: tid("nope:Iou"),
                payload: record(&[]),
            },
            "unknown package nope".to_string(),
        ),
        (
            Command::Exercise {
                template: tid("iou:Iou"),
                contract_id: c,
                choice: "Steal".into(),
                argument: record(&[]),
            },
            "template iou:Iou has no choice Steal".to_string(),
        ),
    ];
    for (cmd, msg) in cases {
        let err = l.submit(&["alice"], cmd).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), msg);
    }
    let ghost = ContractId(Hash::of(b"ghost"));
    let err = l
        .exercise(
            &["alice"],
            "iou:Iou",
            ghost,
            "Transfer",
            record(&[("newOwner", Value::Party(p("bob")))]),
        )
        .unwrap_err();
    assert_eq!(err, LedgerError::ContractNotFound(ghost));
    // A contract id that is known but of another template.
    let err = l
        .exercise(&["alice"], "iou:SwapProposal", c, "Withdraw", record(&[]))
        .unwrap_err();
    assert!(matches!(err, LedgerError::TemplateMismatch { .. }), "{err}");
    // Merging with an unknown contract: found missing during the body.
    let err = l
        .exercise(
            &["alice"],
            "iou:Iou",
            c,
            "Merge",
            record(&[("otherCid", Value::ContractId(ghost))]),
        )
        .unwrap_err();
    assert_eq!(err, LedgerError::ContractNotFound(ghost));
}

fn new_t(l: &mut Ledger, owner: &str) -> ContractId {
    let tx = l
        .submit(
            &[owner],
            Command::Create {
                template: tid("test:T"),
                payload: record(&[("owner", Value::Party(p(owner))), ("n", Value::Int(0))]),
            },
        )
        .unwrap();
    *tx.created().keys().next().unwrap()
}

#[test]
fn limits_and_sandbox() {
    let mut l = Ledger::new();
    let t = new_t(&mut l, "alice");
    let err = l
        .exercise(&["alice"], "test:T", t, "Spin", record(&[]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    assert_eq!(
        err.to_string(),
        "template test:T, choice Spin: step limit of 100000 operations exceeded"
    );

    let err = l
        .exercise(&["alice"], "test:T", t, "Recurse", record(&[]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
    assert!(
        err.to_string()
            .contains("nesting of exercises exceeds the limit of 8"),
        "{err}"
    );

    let other = new_t(&mut l, "alice");
    let err = l
        .exercise(
            &["alice"],
            "test:T",
            t,
            "ArchiveTwice",
            record(&[("other", Value::ContractId(other))]),
        )
        .unwrap_err();
    assert_eq!(err, LedgerError::ContractNotActive(other));

    // Template expressions may not act on the ledger.
    let err = l
        .submit(
            &["alice"],
            Command::Create {
                template: tid("test:Sneaky"),
                payload: record(&[("owner", Value::Party(p("alice")))]),
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "template test:Sneaky signatories: script failed: only choice bodies may create, exercise, fetch or archive"
    );

    // A tight node limit.
    let limits = Limits {
        max_nodes: 2,
        ..Limits::default()
    };
    let c = l.issue("bank", "alice", "USD", "10");
    let cmd = Command::Exercise {
        template: tid("iou:Iou"),
        contract_id: c,
        choice: "Split".into(),
        argument: record(&[("splitAmount", dec("1"))]),
    };
    let err = interpret(
        &l.packages,
        &cmd,
        &parties(&["alice"]),
        &l.acs,
        Hash::of(b"s"),
        &limits,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "number of transaction nodes exceeds the limit of 2"
    );
}

#[test]
fn malformed_packages_are_rejected_precisely() {
    let base = r#"
name = "pkg"
version = "1"
[templates.T]
fields = { owner = "party" }
signatories = "this.owner"
[templates.T.choices.C]
controllers = "this.owner"
body = "1"
"#;
    assert!(PackageStore::new().upload(base.as_bytes()).is_ok());
    let cases = [
        (
            base.replace("name = \"pkg\"", "name = \"Pkg\""),
            "invalid package Pkg: invalid package name \"Pkg\"",
        ),
        (
            base.replace("\"party\"", "\"float\""),
            "invalid package pkg: template T, fields: field owner: unknown type \"float\"",
        ),
        (
            base.replace("body = \"1\"", "body = \"let x = ;\""),
            "invalid package pkg: template T, choice C: body does not compile:",
        ),
        (
            base.replace("signatories = \"this.owner\"", "signatories = \" \""),
            "invalid package pkg: template T: signatories is empty",
        ),
        (
            base.replace("[templates.T]", "[templates.t]")
                .replace("templates.T.", "templates.t."),
            "invalid package pkg: template t: invalid template name \"t\"",
        ),
        (
            base.replace("\"party\"", "\"contract_id<Nope>\""),
            "invalid package pkg: template T, fields: field owner: contract_id<Nope> names no template of this package",
        ),
        (
            base.replace("choices.C", "choices.Archive"),
            "invalid package pkg: template T, choice Archive: Archive is implicit",
        ),
        (
            base.replace("body = \"1\"", "bdoy = \"1\""),
            "not a valid package file",
        ),
        (
            base.replace("version = \"1\"", "version = \"1\"\n[["),
            "not a valid package file",
        ),
        (
            base.replace(
                "controllers = \"this.owner\"",
                "controllers = \"try { 1 } catch {}\"",
            ),
            "invalid package pkg: template T, choice C: controllers does not compile:",
        ),
    ];
    for (text, msg) in cases {
        let err = PackageStore::new().upload(text.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(msg), "expected {msg:?} in {err}");
    }
    let mut store = PackageStore::new();
    let first = store.upload(base.as_bytes()).unwrap();
    assert_eq!(
        store.upload(base.as_bytes()).unwrap().id,
        first.id,
        "re-upload is idempotent"
    );
    let err = store
        .upload(format!("{base}\n# changed").as_bytes())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "package name pkg already bound to {}; upload it under a new name to change it",
            first.id
        )
    );
    assert!(store.by_id(&first.id).is_some());
}

#[test]
fn same_seed_same_transaction() {
    let mut l = Ledger::new();
    let c = l.issue("bank", "alice", "USD", "100");
    let cmd = Command::Exercise {
        template: tid("iou:Iou"),
        contract_id: c,
        choice: "Split".into(),
        argument: record(&[("splitAmount", dec("40"))]),
    };
    let a = l.interpret(&["alice"], &cmd).unwrap();
    let b = l.interpret(&["alice"], &cmd).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.created().len(), 2);
    l.submissions += 1;
    let c2 = l.interpret(&["alice"], &cmd).unwrap();
    assert_ne!(
        a.created().keys().collect::<Vec<_>>(),
        c2.created().keys().collect::<Vec<_>>()
    );
    // Transactions survive JSON storage.
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Transaction>(&json).unwrap(), a);
}

/// A thread interprets with one engine, built once: what an interpretation leaves behind
/// (a spent step budget, an abort) does not reach the next on the thread, and a command
/// gives the same transaction on any thread.
#[test]
fn interpretations_sharing_a_thread_share_no_state() {
    let mut l = Ledger::new();
    let c = l.issue("bank", "alice", "USD", "100");
    let t = new_t(&mut l, "alice");
    let split = |amount: &str| Command::Exercise {
        template: tid("iou:Iou"),
        contract_id: c,
        choice: "Split".into(),
        argument: record(&[("splitAmount", dec(amount))]),
    };
    let first = l.interpret(&["alice"], &split("40")).unwrap();

    let spin = Command::Exercise {
        template: tid("test:T"),
        contract_id: t,
        choice: "Spin".into(),
        argument: record(&[]),
    };
    let spent = l.interpret(&["alice"], &spin).unwrap_err();
    assert!(matches!(spent, LedgerError::StepLimit { .. }), "{spent}");
    let aborted = l.interpret(&["alice"], &split("100")).unwrap_err();
    assert!(matches!(aborted, LedgerError::Aborted { .. }), "{aborted}");
    // The spent budget was that interpretation's alone.
    assert_eq!(l.interpret(&["alice"], &split("40")).as_ref(), Ok(&first));
    let elsewhere = std::thread::scope(|s| {
        s.spawn(|| l.interpret(&["alice"], &split("40")))
            .join()
            .expect("the other thread ran")
    });
    assert_eq!(elsewhere, Ok(first));
}

#[test]
fn projection_and_views_of_a_transfer() {
    let mut l = Ledger::new();
    let c = l.issue("bank", "alice", "USD", "100");
    let (tx, _) = l
        .exercise(
            &["alice"],
            "iou:Iou",
            c,
            "Transfer",
            record(&[("newOwner", Value::Party(p("bob")))]),
        )
        .unwrap();
    // node 0: exercise Transfer (informees bank, alice); node 1: create for bob (bank, bob)
    assert_eq!(tx.informees(0), parties(&["alice", "bank"]));
    assert_eq!(tx.informees(1), parties(&["bank", "bob"]));
    assert_eq!(tx.confirming_parties(0), parties(&["alice", "bank"]));
    assert_eq!(tx.confirming_parties(1), parties(&["bank"]));
    assert_eq!(tx.project(&parties(&["bank"])).roots, vec![0]);
    assert_eq!(tx.project(&parties(&["alice"])).roots, vec![0]);
    assert_eq!(tx.project(&parties(&["bob"])).roots, vec![1]);
    assert!(tx.project(&parties(&["carol"])).roots.is_empty());

    let alice = tx.view(&parties(&["alice"]));
    assert_eq!(alice.nodes.len(), 2);
    assert_eq!(alice.inputs.keys().copied().collect::<Vec<_>>(), vec![c]);
    let bob = tx.view(&parties(&["bob"]));
    assert_eq!(bob.nodes.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert!(bob.inputs.is_empty());
    assert_eq!(bob.roots[0].authorizers, parties(&["alice", "bank"]));
    let json = serde_json::to_string(&bob).unwrap();
    assert_eq!(
        serde_json::from_str::<ordo_ledger::View>(&json).unwrap(),
        bob
    );

    let limits = Limits::default();
    for v in [&alice, &bob] {
        reinterpret_view(&l.packages, v, &limits).unwrap();
    }

    // Tampered: bob's created contract names another owner.
    let mut forged = bob.clone();
    if let Some(Node::Create { contract, .. }) = forged.nodes.get_mut(&1) {
        contract.payload = iou("bank", "carol", "USD", "100");
        contract.observers = parties(&["carol"]);
    }
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "view does not conform: node 1 differs from its re-interpretation"
    );

    // Tampered: the amount of the contract created inside alice's exercise.
    let mut forged = alice.clone();
    if let Some(Node::Create { contract, .. }) = forged.nodes.get_mut(&1) {
        contract.payload = iou("bank", "bob", "USD", "1000");
    }
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    // Tampered: the input contract's payload no longer matches what was exercised.
    let mut forged = alice.clone();
    forged.inputs.insert(
        c,
        ContractInstance {
            payload: iou("bank", "alice", "USD", "5"),
            ..alice.inputs[&c].clone()
        },
    );
    assert!(reinterpret_view(&l.packages, &forged, &limits).is_err());
    // ... or claims other signatories than its payload gives.
    let mut forged = alice.clone();
    forged.inputs.insert(
        c,
        ContractInstance {
            signatories: parties(&["alice"]),
            ..alice.inputs[&c].clone()
        },
    );
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert!(
        err.to_string().contains("do not follow from its payload"),
        "{err}"
    );

    // Forged authorizers: a root claiming more than the submitters ...
    let mut forged = alice.clone();
    forged.roots[0].authorizers = parties(&["alice", "bob"]);
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert!(
        err.to_string()
            .contains("instead of the submitters {alice}"),
        "{err}"
    );
    // ... and a body-level root whose claimed authorizers cannot create the contract.
    let mut forged = bob.clone();
    forged.roots[0].authorizers = parties(&["alice"]);
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    // ... and a submitter swapped in the whole view.
    let mut forged = alice.clone();
    forged.submitters = parties(&["bob"]);
    forged.roots[0].authorizers = parties(&["bob"]);
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
}

#[test]
fn choice_observers_are_informees_of_the_exercise_but_not_confirmers() {
    let mut l = Ledger::new();
    let c = new_t(&mut l, "olga");
    let (tx, _) = l
        .exercise(
            &["olga"],
            "test:T",
            c,
            "Show",
            record(&[("to", Value::List(vec![Value::Party(p("audrey"))]))]),
        )
        .unwrap();
    assert_eq!(tx.informees(0), parties(&["audrey", "olga"]));
    assert_eq!(tx.confirming_parties(0), parties(&["olga"]));
    assert_eq!(tx.project(&parties(&["audrey"])).roots, vec![0]);
    assert!(tx.project(&parties(&["oscar"])).roots.is_empty());

    // audrey's view conforms; one that drops her from the choice observers does not.
    let limits = Limits::default();
    let view = tx.view(&parties(&["audrey"]));
    reinterpret_view(&l.packages, &view, &limits).unwrap();
    let mut forged = view.clone();
    if let Some(Node::Exercise {
        choice_observers, ..
    }) = forged.nodes.get_mut(&0)
    {
        choice_observers.clear();
    }
    let err = reinterpret_view(&l.packages, &forged, &limits).unwrap_err();
    assert!(
        err.to_string()
            .contains("differs from its re-interpretation"),
        "{err}"
    );
}

#[test]
fn several_commands_are_one_transaction_and_fail_together() {
    let mut l = Ledger::new();
    let c = l.issue("bank", "alice", "USD", "100");
    let transfer = |to: &str| Command::Exercise {
        template: tid("iou:Iou"),
        contract_id: c,
        choice: "Transfer".into(),
        argument: record(&[("newOwner", Value::Party(p(to)))]),
    };
    let create = Command::Create {
        template: tid("iou:Iou"),
        payload: iou("alice", "alice", "EUR", "5"),
    };
    let seed = Hash::of(b"multi");
    let limits = Limits::default();
    let tx = interpret_all(
        &l.packages,
        &[create.clone(), transfer("bob")],
        &parties(&["alice"]),
        &l.acs,
        seed,
        &limits,
    )
    .unwrap();
    // One root per command: the create, then the exercise (with its create below).
    assert_eq!(tx.roots.len(), 2);
    assert!(matches!(tx.nodes[tx.roots[0]], Node::Create { .. }));
    assert!(matches!(tx.nodes[tx.roots[1]], Node::Exercise { .. }));
    assert_eq!(tx.created().len(), 2);
    // A later command sees what an earlier one consumed: the second transfer of the same
    // Iou fails, and so does the whole submission.
    let err = interpret_all(
        &l.packages,
        &[create, transfer("bob"), transfer("carol")],
        &parties(&["alice"]),
        &l.acs,
        seed,
        &limits,
    )
    .unwrap_err();
    assert!(
        matches!(err, LedgerError::ContractNotActive(id) if id == c),
        "{err}"
    );
    l.submissions += 1;
}
