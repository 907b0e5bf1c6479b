//! ed25519 signing and verification as every member does it per message
//! (`KeyPair::sign`, `PublicKey::verify`, which is strict: non-canonical and small-order
//! components rejected), and 64 signatures verified one by one against ordo's strict batch
//! verification (`ordo_core::verify_batch`) and ed25519-dalek's (not strict) of the same 64.
//!
//! `cargo bench -p ordo-core --bench signature`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use ordo_core::KeyPair;

/// Sizes of signed bodies: a response or verdict (about 450 bytes on the wire), and a
/// transfer's confirmation request (about 5 KiB).
const SIZES: [usize; 2] = [450, 5 * 1024];
const BATCH: usize = 64;

fn sign_and_verify(c: &mut Criterion) {
    let key = KeyPair::from_seed([7; 32]);
    let public = key.public();
    let mut group = c.benchmark_group("ordo_core");
    for size in SIZES {
        let message = vec![0x5a; size];
        let signature = key.sign(&message);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("sign", size), &message, |b, m| {
            b.iter(|| key.sign(black_box(m)))
        });
        group.bench_with_input(BenchmarkId::new("verify", size), &message, |b, m| {
            b.iter(|| public.verify(black_box(m), &signature))
        });
    }
    group.finish();
}

/// 64 messages of 450 bytes, each signed by a key of its own (a batch of events comes
/// from many members).
fn batch(c: &mut Criterion) {
    let keys: Vec<SigningKey> = (0..BATCH)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let messages: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; SIZES[0]]).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    let publics: Vec<ed25519_dalek::VerifyingKey> =
        keys.iter().map(SigningKey::verifying_key).collect();
    let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    // ordo's own keys and signatures over the same messages, for its strict path.
    let ordo_keys: Vec<KeyPair> = (0..BATCH)
        .map(|i| KeyPair::from_seed([i as u8 + 1; 32]))
        .collect();
    let ordo_signatures: Vec<ordo_core::Signature> = ordo_keys
        .iter()
        .zip(&messages)
        .map(|(k, m)| k.sign(m))
        .collect();
    let ordo_publics: Vec<ordo_core::PublicKey> = ordo_keys.iter().map(KeyPair::public).collect();

    let mut group = c.benchmark_group(format!("verify_{BATCH}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("ordo_core_one_by_one_strict", |b| {
        b.iter(|| {
            for ((k, m), s) in ordo_publics.iter().zip(&messages).zip(&ordo_signatures) {
                k.verify(black_box(m), s).expect("valid");
            }
        })
    });
    let ordo_items: Vec<(&ordo_core::PublicKey, &[u8], &ordo_core::Signature)> = ordo_publics
        .iter()
        .zip(&slices)
        .zip(&ordo_signatures)
        .map(|((k, m), s)| (k, *m, s))
        .collect();
    group.bench_function("ordo_core_verify_batch", |b| {
        b.iter(|| {
            let results = ordo_core::verify_batch(black_box(&ordo_items));
            assert!(results.iter().all(Result::is_ok));
        })
    });
    group.bench_function("dalek_one_by_one", |b| {
        b.iter(|| {
            for ((k, m), s) in publics.iter().zip(&messages).zip(&signatures) {
                k.verify(black_box(m), s).expect("valid");
            }
        })
    });
    group.bench_function("dalek_verify_batch", |b| {
        b.iter(|| {
            ed25519_dalek::verify_batch(black_box(&slices), &signatures, &publics).expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, sign_and_verify, batch);
criterion_main!(benches);
