//! What a member does per protocol message: sign and frame it (`SignedMessage::encode`),
//! and on receipt parse and verify it (`SignedMessage::decode` + `verify`); for a view,
//! also check its place in the request's Merkle tree (`ViewMessage::check_inclusion`).
//! Messages as a transfer makes them: the verdict, and a view message carrying a view of
//! about 1.5 KiB (the size of a transfer's views; its content is opaque to this crate).
//!
//! `cargo bench -p ordo-protocol --bench frame`

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ordo_core::{Hash, KeyPair, MemberId, PartyId, Timestamp};
use ordo_protocol::merkle;
use ordo_protocol::{Message, SignedMessage, Verdict, VerdictOutcome, ViewCommitment, ViewMessage};
use serde_json::value::RawValue;

fn member(name: &str, seed: u8) -> (MemberId, KeyPair) {
    let key = KeyPair::from_seed([seed; 32]);
    let id = MemberId::new(name, &key.public()).expect("a valid member name");
    (id, key)
}

fn parties(names: &[&str]) -> BTreeSet<PartyId> {
    names
        .iter()
        .map(|n| PartyId::new(n).expect("a valid party"))
        .collect()
}

/// A view message for `to` from `submitter`, with one other (blinded) view in the
/// request; its view hash as the recipient computes it.
fn view_message(submitter: &MemberId, to: &MemberId, other: &MemberId) -> (ViewMessage, Hash) {
    let view = format!(r#"{{"opaque":"{}"}}"#, "v".repeat(1500));
    let view_hash = Hash::of(view.as_bytes());
    let commitments = [
        ViewCommitment::new(
            to.clone(),
            &view_hash,
            parties(&["bank", "alice", "bob"]),
            parties(&["bank", "alice"]),
        ),
        ViewCommitment::new(
            other.clone(),
            &Hash::of(b"the other view"),
            parties(&["bob"]),
            BTreeSet::new(),
        ),
    ];
    let (leaves, root) = merkle::build(submitter, &commitments).expect("hashes");
    let [mine, _] = commitments;
    let message = ViewMessage {
        root_hash: root.to_hex(),
        commitment: mine,
        position: 0,
        leaves: leaves.iter().map(Hash::to_hex).collect(),
        view: RawValue::from_string(view).expect("valid JSON"),
    };
    (message, view_hash)
}

fn frames(c: &mut Criterion) {
    let (participant_1, key_1) = member("participant-1", 1);
    let (participant_2, _) = member("participant-2", 2);
    let (mediator, mediator_key) = member("mediator", 3);
    let verdict = Message::Verdict(Verdict {
        request: Timestamp(1_796_458_369_642_232),
        root_hash: Hash::of(b"root").to_hex(),
        outcome: VerdictOutcome::Approve,
    });
    let (view, view_hash) = view_message(&participant_1, &participant_2, &mediator);
    let view = Message::View(view);
    let mediator_public = mediator_key.public();
    let public_1 = key_1.public();

    let mut group = c.benchmark_group("frame");
    for (name, message, signer, key, public) in [
        (
            "verdict",
            &verdict,
            &mediator,
            &mediator_key,
            &mediator_public,
        ),
        ("view", &view, &participant_1, &key_1, &public_1),
    ] {
        let bytes = SignedMessage::encode(signer, key, message);
        group.bench_function(format!("{name}/encode_and_sign"), |b| {
            b.iter(|| SignedMessage::encode(signer, key, black_box(message)))
        });
        group.bench_function(format!("{name}/decode_and_verify"), |b| {
            b.iter(|| {
                let signed = SignedMessage::decode(black_box(&bytes)).expect("decodes");
                signed.verify(public).expect("verifies");
                signed
            })
        });
    }
    let Message::View(view) = &view else {
        unreachable!("built as a view")
    };
    group.bench_function("view/check_inclusion", |b| {
        b.iter(|| {
            view.check_inclusion(&participant_1, &participant_2, black_box(&view_hash))
                .expect("included")
        })
    });
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
