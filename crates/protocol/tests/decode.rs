//! Decoding protocol messages from arbitrary bytes never panics and never allocates out of
//! proportion to its input (DESIGN §4, *Poison events*): every member decodes what any other
//! member sends before it knows whether to trust it.
//!
//! The allocation bound is measured with a counting allocator, which is why this file is a
//! test binary of its own with a single test: the counter is process-wide.

#![allow(unsafe_code)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use ordo_core::{Hash, KeyPair, MemberId, PartyId, Timestamp};
use ordo_protocol::{
    ConfirmationResponse, InformeeTree, Message, ResponseOutcome, SignedMessage, TimeProof,
    TopologyChange, TopologyTransaction, Verdict, VerdictOutcome, ViewCommitment, ViewMessage,
    merkle,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The system allocator, counting the bytes live and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes allocated at once (beyond what was live before) while `f` ran.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

fn party(p: &str) -> PartyId {
    PartyId::new(p).unwrap()
}

/// One valid message of every kind, signed by `signer`.
fn samples(signer: &MemberId, key: &KeyPair) -> Vec<Vec<u8>> {
    let commitment = ViewCommitment::new(
        signer.clone(),
        &Hash::of(b"view"),
        BTreeSet::from([party("alice"), party("bob")]),
        BTreeSet::from([party("alice")]),
    );
    let (leaves, root) = merkle::build(signer, std::slice::from_ref(&commitment)).unwrap();
    let view_json = serde_json::json!({"view": {"nodes": {"0": {"type": "fetch"}}, "roots": []}});
    let messages = [
        Message::Topology(TopologyTransaction {
            serial: 3,
            change: TopologyChange::AllocateParty {
                party: party("alice"),
                shard: "shard-1".into(),
            },
        }),
        Message::View(ViewMessage {
            root_hash: root.to_hex(),
            commitment: commitment.clone(),
            position: 0,
            leaves: leaves.iter().map(Hash::to_hex).collect(),
            view: serde_json::value::to_raw_value(&view_json).unwrap(),
        }),
        Message::InformeeTree(InformeeTree {
            root_hash: root.to_hex(),
            submitter: signer.clone(),
            views: vec![commitment],
        }),
        Message::Response(ConfirmationResponse {
            request: Timestamp(17),
            root_hash: root.to_hex(),
            parties: BTreeSet::from([party("alice")]),
            outcome: ResponseOutcome::Reject {
                reason: "contract is locked".into(),
                code: Some("LOCKED_CONTRACTS".into()),
            },
        }),
        Message::Verdict(Verdict {
            request: Timestamp(17),
            root_hash: root.to_hex(),
            outcome: VerdictOutcome::Reject {
                reasons: vec!["no".into()],
                code: None,
            },
        }),
        Message::TimeProof(TimeProof { nonce: 42 }),
    ];
    messages
        .iter()
        .map(|m| SignedMessage::encode(signer, key, m))
        .collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Flip { at, bit } => {
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        Mutation::Insert { at, bytes: b } => {
            let i = at % (bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let i = at % bytes.len();
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Truncate { at } => bytes.truncate(at % bytes.len()),
    }
}

/// Decodes (and, when it decodes, verifies) `bytes`; asserts the allocation bound.
fn decode_bounded(bytes: &[u8], key: &KeyPair) -> Result<(), TestCaseError> {
    let peak = peak_during(|| {
        if let Ok(m) = SignedMessage::decode(bytes) {
            let _ = m.verify(&key.public());
        }
    });
    // A few copies of the input (the body, the parsed strings) plus a constant.
    let bound = 8 * bytes.len() + 64 * 1024;
    prop_assert!(
        peak <= bound,
        "decoding {} bytes allocated {peak} bytes at once (bound {bound})",
        bytes.len()
    );
    Ok(())
}

#[test]
fn decoding_never_panics_and_allocates_in_proportion_to_its_input() {
    let key = KeyPair::generate();
    let signer = MemberId::new("p1", &key.public()).unwrap();
    let samples = samples(&signer, &key);
    for s in &samples {
        SignedMessage::decode(s)
            .expect("a valid message decodes")
            .verify(&key.public())
            .expect("and verifies");
    }
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });

    // Arbitrary bytes, and arbitrary bytes behind a valid frame header.
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            decode_bounded(&bytes, &key)?;
            let mut framed = b"ordo1".to_vec();
            framed.extend_from_slice(&(bytes.len().saturating_sub(64) as u32).to_be_bytes());
            framed.extend_from_slice(&bytes);
            decode_bounded(&framed, &key)
        })
        .unwrap();

    // Valid messages of every kind, mutated.
    let strategy = (0..samples.len(), prop::collection::vec(mutation(), 1..6));
    runner
        .run(&strategy, |(i, mutations)| {
            let mut bytes = samples[i].clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            decode_bounded(&bytes, &key)
        })
        .unwrap();

    // Bodies that are JSON of the right shape but hold what no honest member sends.
    let hostile = [
        r#"{"signer":"p1::00","message":{"type":"view"}}"#.to_owned(),
        r#"{"signer":"x","message":{"type":"nonsense","a":1}}"#.to_owned(),
        format!(r#"{{"signer":"{signer}","message":{{"type":"time_proof","nonce":-1}}}}"#),
        format!(
            r#"{{"signer":"{signer}","message":{{"type":"verdict","type":"view","request":1}}}}"#
        ),
        format!(
            r#"{{"signer":"{signer}","message":{}}}"#,
            "[".repeat(100_000)
        ),
    ];
    for body in hostile {
        let mut bytes = b"ordo1".to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(body.as_bytes());
        bytes.extend_from_slice(&[0u8; 64]);
        assert!(
            SignedMessage::decode(&bytes).is_err(),
            "{}",
            &body[..body.len().min(80)]
        );
        decode_bounded(&bytes, &key).unwrap();
    }
}
