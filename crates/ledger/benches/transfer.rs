//! The ledger's hot paths for one Iou transfer (examples/packages/iou.toml): the
//! submitter's interpretation of the command, and what each informee participant does
//! with the view it receives (decode its JSON, check its structure, re-interpret it).
//!
//! `cargo bench -p ordo-ledger --bench transfer`

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ordo_ledger::{
    Command, ContractId, ContractInstance, Hash, Limits, PackageStore, PartyId, TemplateId,
    Transaction, View, check_view, interpret, reinterpret_view,
};
use serde_json::json;

const IOU: &[u8] = include_bytes!("../../../examples/packages/iou.toml");

/// The packages, an Iou of bank's owned by alice, and the command moving it to bob.
struct Fixture {
    packages: PackageStore,
    acs: BTreeMap<ContractId, ContractInstance>,
    create: Command,
    transfer: Command,
}

fn party(name: &str) -> PartyId {
    PartyId::new(name).expect("a valid party name")
}

fn parties(names: &[&str]) -> BTreeSet<PartyId> {
    names.iter().map(|n| party(n)).collect()
}

impl Fixture {
    fn new() -> Self {
        let mut packages = PackageStore::new();
        packages.upload(IOU).expect("the iou package parses");
        let template: TemplateId = "iou:Iou".parse().expect("a template id");
        let payload = packages
            .payload_from_json(
                &template,
                &json!({"issuer": "bank", "owner": "alice", "currency": "USD", "amount": "10"}),
            )
            .expect("an Iou payload");
        let create = Command::Create {
            template: template.clone(),
            payload,
        };
        let issued = interpret(
            &packages,
            &create,
            &parties(&["bank"]),
            &BTreeMap::new(),
            Hash::of(b"issue"),
            &Limits::default(),
        )
        .expect("bank issues an Iou");
        let acs = issued.created();
        let contract_id = *acs.keys().next().expect("the Iou created");
        let argument = packages
            .argument_from_json(&template, "Transfer", &json!({"newOwner": "bob"}))
            .expect("a Transfer argument");
        let transfer = Command::Exercise {
            template,
            contract_id,
            choice: "Transfer".into(),
            argument,
        };
        Self {
            packages,
            acs,
            create,
            transfer,
        }
    }

    fn interpret(&self, act_as: &[&str], command: &Command) -> Transaction {
        interpret(
            &self.packages,
            command,
            &parties(act_as),
            &self.acs,
            Hash::of(b"transfer"),
            &Limits::default(),
        )
        .expect("the command interprets")
    }
}

fn interpretation(c: &mut Criterion) {
    let f = Fixture::new();
    let limits = Limits::default();
    let (bank, alice) = (parties(&["bank"]), parties(&["alice"]));
    let mut group = c.benchmark_group("interpret");
    group.bench_function("create_iou", |b| {
        b.iter(|| {
            interpret(
                &f.packages,
                black_box(&f.create),
                &bank,
                &f.acs,
                Hash::of(b"issue"),
                &limits,
            )
        })
    });
    group.bench_function("transfer_iou", |b| {
        b.iter(|| {
            interpret(
                &f.packages,
                black_box(&f.transfer),
                &alice,
                &f.acs,
                Hash::of(b"transfer"),
                &limits,
            )
        })
    });
    group.finish();
}

/// What an informee participant does with a transfer's view: the issuer's (the exercise
/// and the create under it, with the consumed Iou as input) and the new owner's (the
/// create alone).
fn view_validation(c: &mut Criterion) {
    let f = Fixture::new();
    let tx = f.interpret(&["alice"], &f.transfer);
    let limits = Limits::default();
    for (name, informee) in [("issuer_view", "bank"), ("receiver_view", "bob")] {
        let view = tx.view(&parties(&[informee]));
        let json = serde_json::to_string(&view).expect("a view serialises");
        let mut group = c.benchmark_group(format!("view/{name}"));
        group.bench_function("decode_json", |b| {
            b.iter(|| serde_json::from_str::<View>(black_box(&json)))
        });
        group.bench_function("check_view", |b| {
            b.iter(|| check_view(black_box(&view), &limits))
        });
        group.bench_function("reinterpret_view", |b| {
            b.iter(|| reinterpret_view(&f.packages, black_box(&view), &limits))
        });
        group.bench_function("decode_check_reinterpret", |b| {
            b.iter(|| {
                let view: View = serde_json::from_str(black_box(&json)).expect("decodes");
                check_view(&view, &limits).expect("well formed");
                reinterpret_view(&f.packages, &view, &limits).expect("conforms")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, interpretation, view_validation);
criterion_main!(benches);
