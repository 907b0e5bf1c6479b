//! The participant's stored forms (a cross-shard transfer's transaction and one contract,
//! as a shard stored them during a load run; `fixtures/`) read and written as the JSON
//! they are stored in, against MessagePack (`rmp-serde`, fields named, as the stored
//! types' tagged enums and JSON values need a self-describing format): what a compact
//! binary encoding would save (docs/performance.md).
//!
//! `cargo bench -p ordo-participant --bench encoding`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ordo_participant::events::{StoredContract, StoredTx};

const TRANSFER: &[u8] = include_bytes!("fixtures/stored_transfer.json");
const CONTRACT: &[u8] = include_bytes!("fixtures/stored_contract.json");

fn encoding(c: &mut Criterion) {
    let tx: StoredTx = serde_json::from_slice(TRANSFER).expect("the fixture parses");
    let packed = rmp_serde::to_vec_named(&tx).expect("encodes");
    let back: StoredTx = rmp_serde::from_slice(&packed).expect("decodes");
    assert_eq!(back, tx, "MessagePack round-trips the transaction");
    let contract: StoredContract = serde_json::from_slice(CONTRACT).expect("the fixture parses");
    let contract_packed = rmp_serde::to_vec_named(&contract).expect("encodes");
    eprintln!(
        "stored transfer: JSON {} bytes, MessagePack {} bytes; contract: JSON {} bytes, MessagePack {} bytes",
        TRANSFER.len(),
        packed.len(),
        CONTRACT.len(),
        contract_packed.len()
    );

    let mut g = c.benchmark_group("stored_transfer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_json", |b| {
        b.iter(|| serde_json::from_slice::<StoredTx>(black_box(TRANSFER)).expect("parses"))
    });
    g.bench_function("decode_msgpack", |b| {
        b.iter(|| rmp_serde::from_slice::<StoredTx>(black_box(&packed)).expect("decodes"))
    });
    g.bench_function("encode_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&tx)).expect("encodes"))
    });
    g.bench_function("encode_msgpack", |b| {
        b.iter(|| rmp_serde::to_vec_named(black_box(&tx)).expect("encodes"))
    });
    g.finish();

    let mut g = c.benchmark_group("stored_contract");
    g.throughput(Throughput::Elements(1));
    g.bench_function("instance_of_json", |b| {
        b.iter(|| StoredContract::instance_of(black_box(CONTRACT)).expect("parses"))
    });
    g.bench_function("decode_msgpack", |b| {
        b.iter(|| {
            rmp_serde::from_slice::<StoredContract>(black_box(&contract_packed)).expect("decodes")
        })
    });
    g.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
