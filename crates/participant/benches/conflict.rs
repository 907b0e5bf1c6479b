//! Conflict detection (`ordo_participant::conflict`), pure: the activeness check of a
//! transfer's input (one consumed Iou) against the states of its inputs, and a batch of
//! 256 transfers, each checked against an in-memory active contract set of 100,000 Ious
//! (as a batched participant holding its contract states in memory would; the locks they
//! return are not applied); and the freshness check.
//!
//! `cargo bench -p ordo-participant --bench conflict`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ordo_core::{Hash, PartyId, Timestamp};
use ordo_ledger::{ContractInstance, PackageId, Value};
use ordo_participant::conflict::{ContractState, InputUse, check_activeness, check_fresh};

const ACS: usize = 100_000;
const BATCH: usize = 256;

/// Bank's Iou to `owner`.
fn iou(owner: &str) -> ContractInstance {
    let party = |p: &str| PartyId::new(p).expect("a valid party");
    ContractInstance {
        template: "iou:Iou".parse().expect("a template id"),
        package_id: PackageId(Hash::of(b"iou")),
        payload: Value::Record(
            [
                ("issuer".to_owned(), Value::Party(party("bank"))),
                ("owner".to_owned(), Value::Party(party(owner))),
                ("currency".to_owned(), Value::Text("USD".into())),
                ("amount".to_owned(), Value::Int(10)),
            ]
            .into_iter()
            .collect(),
        ),
        signatories: [party("bank")].into_iter().collect(),
        observers: [party(owner)].into_iter().collect(),
        key: None,
        maintainers: Default::default(),
    }
}

fn contract_id(i: usize) -> String {
    Hash::of(&i.to_be_bytes()).to_hex()
}

/// A transfer's input: the Iou it consumes, as its view carries it.
fn consumed(i: usize) -> InputUse {
    InputUse {
        contract_id: contract_id(i),
        consumed: true,
        hosted_stakeholder: true,
        instance: iou(&format!("c{}", i % 16)),
    }
}

fn activeness(c: &mut Criterion) {
    let acs: BTreeMap<String, ContractState> = (0..ACS)
        .map(|i| {
            let state = ContractState {
                locked_by: None,
                stored: Some(iou(&format!("c{}", i % 16))),
            };
            (contract_id(i), state)
        })
        .collect();
    let one = [consumed(7)];
    let own: BTreeMap<String, ContractState> = acs
        .get(&one[0].contract_id)
        .map(|s| (one[0].contract_id.clone(), s.clone()))
        .into_iter()
        .collect();
    let batch: Vec<[InputUse; 1]> = (0..BATCH).map(|r| [consumed(r * 331 % ACS)]).collect();

    let mut group = c.benchmark_group("conflict");
    group.bench_function("activeness_one_transfer", |b| {
        b.iter(|| check_activeness(Timestamp(1), black_box(&one), &own).expect("active"))
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("activeness_batch_256_against_100k", |b| {
        b.iter(|| {
            batch
                .iter()
                .enumerate()
                .map(|(r, inputs)| {
                    check_activeness(Timestamp(r as i64), black_box(inputs), &acs)
                        .expect("active")
                        .contract_ids
                        .len()
                })
                .sum::<usize>()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("conflict");
    let created = [contract_id(ACS + 1)];
    group.bench_function("fresh_one_transfer", |b| {
        b.iter(|| {
            // What the store finds of the created ids: none, for an honest request.
            let known: Vec<String> = black_box(&created)
                .iter()
                .filter(|id| acs.contains_key(*id))
                .cloned()
                .collect();
            check_fresh(&known)
        })
    });
    group.finish();
}

criterion_group!(benches, activeness);
criterion_main!(benches);
