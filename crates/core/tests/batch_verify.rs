//! `verify_batch` decides every signature as `PublicKey::verify` (strict) does, whatever
//! the batch: honest signatures, corrupted ones, and the crafted ones on which
//! ed25519-dalek's batch equation and `verify_strict` disagree (small-order or torsioned
//! `R`, non-canonical `s` or `R`, keys with a torsion component).
//!
//! Crafting them takes the signer's secret scalar, so the signers here are built from
//! scalars rather than seeds.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ordo_core::{KeyPair, PublicKey, Signature, verify_batch};
use proptest::prelude::*;
use sha2::{Digest, Sha512};

fn scalar(seed: u64, domain: &[u8]) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(domain)
        .chain_update(seed.to_le_bytes())
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// A signer with secret scalar `a` and key `A = [a]B + T`, `T` the given 8-torsion point
/// (the identity for an honest key).
struct Signer {
    a: Scalar,
    public: PublicKey,
}

impl Signer {
    fn new(seed: u64, key_torsion: usize) -> Self {
        let a = scalar(seed, b"key");
        let point = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[key_torsion];
        let public = PublicKey::from_bytes(point.compress().as_bytes()).expect("not small order");
        Self { a, public }
    }

    /// `k = H(R ‖ A ‖ M)`.
    fn challenge(&self, r: &CompressedEdwardsY, message: &[u8]) -> Scalar {
        let digest: [u8; 64] = Sha512::new()
            .chain_update(r.as_bytes())
            .chain_update(self.public.as_bytes())
            .chain_update(message)
            .finalize()
            .into();
        Scalar::from_bytes_mod_order_wide(&digest)
    }

    /// A signature with `R = [r]B + T` (`T` of `r_torsion`) and `s = r + k·a`: valid when
    /// neither `R` nor the key has a torsion component.
    fn sign(&self, message: &[u8], nonce: u64, r_torsion: usize) -> Signature {
        let r = scalar(nonce, b"nonce");
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[r_torsion]).compress();
        let s = r + self.challenge(&big_r, message) * self.a;
        signature(big_r.as_bytes(), s.as_bytes())
    }

    /// A small-order `R` with `s = k·a`: `[s]B − [k]A` is `R` but for torsion.
    fn sign_small_order_r(&self, message: &[u8], r_torsion: usize) -> Signature {
        let big_r = EIGHT_TORSION[r_torsion].compress();
        let s = self.challenge(&big_r, message) * self.a;
        signature(big_r.as_bytes(), s.as_bytes())
    }
}

fn signature(r: &[u8; 32], s: &[u8; 32]) -> Signature {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(r);
    bytes[32..].copy_from_slice(s);
    Signature::from_bytes(&bytes).expect("64 bytes")
}

/// `s + ℓ`: the same scalar, not canonically encoded (it still fits in 253 bits).
fn non_canonical_s(sig: &Signature) -> Signature {
    let bytes = sig.to_bytes();
    let ell = (-Scalar::ONE).to_bytes();
    let mut s = [0u8; 32];
    // s + (ℓ − 1) + 1, little-endian with carry.
    let mut carry = 1u16;
    for i in 0..32 {
        let sum = u16::from(bytes[32 + i]) + u16::from(ell[i]) + carry;
        s[i] = sum as u8;
        carry = sum >> 8;
    }
    signature(bytes[..32].try_into().expect("32 bytes"), &s)
}

/// Non-canonical encodings of points: `y + p` for the y below 19, and the identity and
/// `(0, −1)` with the sign bit of x set.
fn non_canonical_r(which: usize, s: &[u8; 32]) -> Signature {
    let mut r = [0xff; 32];
    r[31] = 0x7f;
    if which < 19 {
        r[0] = 0xed + which as u8;
    } else {
        let point = if which == 19 {
            EIGHT_TORSION[0]
        } else {
            EIGHT_TORSION[4]
        };
        r = point.compress().to_bytes();
        r[31] |= 0x80;
    }
    signature(&r, s)
}

fn singly(items: &[(&PublicKey, &[u8], &Signature)]) -> Vec<bool> {
    items
        .iter()
        .map(|(k, m, s)| k.verify(m, s).is_ok())
        .collect()
}

fn batched(items: &[(&PublicKey, &[u8], &Signature)]) -> Vec<bool> {
    verify_batch(items).iter().map(Result::is_ok).collect()
}

#[test]
fn one_bad_signature_is_the_one_reported() {
    let keys: Vec<KeyPair> = (0..16u8).map(|i| KeyPair::from_seed([i + 1; 32])).collect();
    let publics: Vec<PublicKey> = keys.iter().map(KeyPair::public).collect();
    let messages: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 100]).collect();
    let mut signatures: Vec<Signature> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    // Signed by the wrong key.
    signatures[11] = keys[3].sign(&messages[11]);
    let items: Vec<(&PublicKey, &[u8], &Signature)> = publics
        .iter()
        .zip(&messages)
        .zip(&signatures)
        .map(|((k, m), s)| (k, m.as_slice(), s))
        .collect();
    let results = verify_batch(&items);
    for (i, result) in results.iter().enumerate() {
        if i == 11 {
            assert_eq!(
                result.as_ref().unwrap_err(),
                &publics[11]
                    .verify(&messages[11], &signatures[11])
                    .unwrap_err()
            );
        } else {
            assert!(result.is_ok(), "signature {i}: {result:?}");
        }
    }
    assert!(verify_batch(&[]).is_empty());
    // Below the batch size, the same.
    assert_eq!(batched(&items[10..12]), [true, false]);
}

/// The case that ed25519-dalek's batch gets wrong and rejecting small-order and
/// non-canonical components does not catch: `R` with an order-2 component. Some batch
/// accepts it (whenever its weight is even); `verify_batch` never does.
#[test]
fn torsion_in_r_is_rejected_whatever_the_batch() {
    let honest: Vec<Signer> = (0..5).map(|i| Signer::new(i, 0)).collect();
    let messages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 64]).collect();
    let mut dalek_accepted = 0;
    for attempt in 0..32u64 {
        let crafted = honest[0].sign(&messages[5], attempt, 4);
        let mut signatures: Vec<Signature> = honest
            .iter()
            .zip(&messages)
            .enumerate()
            .map(|(i, (k, m))| k.sign(m, i as u64, 0))
            .collect();
        signatures.push(crafted);
        let mut publics: Vec<&PublicKey> = honest.iter().map(|k| &k.public).collect();
        publics.push(&honest[0].public);
        let items: Vec<(&PublicKey, &[u8], &Signature)> = publics
            .iter()
            .zip(&messages)
            .zip(&signatures)
            .map(|((k, m), s)| (*k, m.as_slice(), s))
            .collect();

        let dalek = ed25519_dalek::verify_batch(
            &messages.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            &signatures
                .iter()
                .map(|s| ed25519_dalek::Signature::from_bytes(&s.to_bytes()))
                .collect::<Vec<_>>(),
            &publics
                .iter()
                .map(|k| ed25519_dalek::VerifyingKey::from_bytes(k.as_bytes()).unwrap())
                .collect::<Vec<_>>(),
        );
        dalek_accepted += usize::from(dalek.is_ok());
        assert_eq!(batched(&items), [true, true, true, true, true, false]);
        assert_eq!(singly(&items), [true, true, true, true, true, false]);
    }
    // Each attempt passes dalek's equation with probability 1/2.
    assert!(dalek_accepted > 0, "no batch let the torsioned R through");
}

/// A key with a torsion component: `verify_strict` accepts an honestly made signature only
/// when `[k]T` vanishes, which the batch alone could not tell.
#[test]
fn keys_with_torsion_are_decided_as_singly() {
    let mixed = Signer::new(7, 1);
    let honest: Vec<Signer> = (10..14).map(|i| Signer::new(i, 0)).collect();
    let message = b"transfer".to_vec();
    let (mut accepted, mut rejected) = (0, 0);
    for nonce in 0..48u64 {
        let mut signatures: Vec<Signature> =
            honest.iter().map(|k| k.sign(&message, nonce, 0)).collect();
        signatures.push(mixed.sign(&message, nonce, 0));
        let publics: Vec<&PublicKey> = honest.iter().chain([&mixed]).map(|k| &k.public).collect();
        let items: Vec<(&PublicKey, &[u8], &Signature)> = publics
            .iter()
            .zip(&signatures)
            .map(|(k, s)| (*k, message.as_slice(), s))
            .collect();
        let expected = singly(&items);
        assert_eq!(batched(&items), expected);
        if expected[4] {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    // k ≡ 0 (mod 8) one time in eight: both outcomes occur.
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// One signature of the property tests.
#[derive(Clone, Debug)]
enum Kind {
    Valid,
    WrongMessage,
    /// `s + 1`.
    CorruptS,
    /// `R` of small order (the identity among them) with `s = k·a`.
    SmallOrderR(usize),
    NonCanonicalS,
    NonCanonicalR(usize),
    /// `R = [r]B + T`, `T` of order 2, 4 or 8.
    TorsionR(usize),
    /// An honestly made signature under a key with a torsion component.
    TorsionKey,
}

/// Signatures that ed25519-dalek's batch equation accepts, at least sometimes, and
/// `verify_strict` does not (or, for torsioned keys, not always): in a batch of otherwise
/// valid signatures, they are where a batch could go wrong.
fn subtle() -> impl Strategy<Value = Kind> {
    prop_oneof![
        8 => Just(Kind::Valid),
        1 => (0usize..8).prop_map(Kind::SmallOrderR),
        2 => (1usize..8).prop_map(Kind::TorsionR),
        1 => Just(Kind::TorsionKey),
    ]
}

/// Any kind: the bad ones fail the batch equation and send the whole batch to single
/// verification.
fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => subtle(),
        1 => Just(Kind::WrongMessage),
        1 => Just(Kind::CorruptS),
        1 => Just(Kind::NonCanonicalS),
        1 => (0usize..21).prop_map(Kind::NonCanonicalR),
    ]
}

/// Signs one signature of each `(kind, signer, nonce)`, over a message of its nonce, and
/// checks that the batch decides each as single verification does.
fn decides_as_singly(batch: &[(Kind, usize, u64)]) -> Result<(), TestCaseError> {
    let honest: Vec<Signer> = (0..4).map(|i| Signer::new(i, 0)).collect();
    let mixed: Vec<Signer> = (1..8).map(|t| Signer::new(100 + t as u64, t)).collect();
    let messages: Vec<Vec<u8>> = batch
        .iter()
        .map(|(_, _, nonce)| nonce.to_le_bytes().repeat(8))
        .collect();
    let signed: Vec<(&PublicKey, Signature)> = batch
        .iter()
        .zip(&messages)
        .map(|((kind, signer, nonce), message)| {
            let signer = &honest[*signer];
            let valid = signer.sign(message, *nonce, 0);
            let s: [u8; 32] = valid.to_bytes()[32..].try_into().expect("32 bytes");
            let sig = match kind {
                Kind::Valid => valid,
                Kind::WrongMessage => signer.sign(b"something else", *nonce, 0),
                Kind::CorruptS => {
                    let r: [u8; 32] = valid.to_bytes()[..32].try_into().expect("32 bytes");
                    signature(
                        &r,
                        (Scalar::from_bytes_mod_order(s) + Scalar::ONE).as_bytes(),
                    )
                }
                Kind::SmallOrderR(t) => signer.sign_small_order_r(message, *t),
                Kind::NonCanonicalS => non_canonical_s(&valid),
                Kind::NonCanonicalR(which) => non_canonical_r(*which, &s),
                Kind::TorsionR(t) => signer.sign(message, *nonce, *t),
                Kind::TorsionKey => {
                    let signer = &mixed[(*nonce % 7) as usize];
                    return (&signer.public, signer.sign(message, *nonce, 0));
                }
            };
            (&signer.public, sig)
        })
        .collect();
    let items: Vec<(&PublicKey, &[u8], &Signature)> = signed
        .iter()
        .zip(&messages)
        .map(|((k, s), m)| (*k, m.as_slice(), s))
        .collect();
    let results = batched(&items);
    prop_assert_eq!(&results, &singly(&items));
    for ((kind, _, _), ok) in batch.iter().zip(results) {
        if matches!(kind, Kind::Valid) {
            prop_assert!(ok, "a valid signature was rejected");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn subtle_signatures_among_valid_ones(
        batch in proptest::collection::vec((subtle(), 0usize..4, any::<u64>()), 0..16)
    ) {
        decides_as_singly(&batch)?;
    }

    #[test]
    fn any_mix_of_signatures(
        batch in proptest::collection::vec((any_kind(), 0usize..4, any::<u64>()), 0..24)
    ) {
        decides_as_singly(&batch)?;
    }
}

/// The crafted components are what they claim to be.
#[test]
fn crafted_components() {
    for torsion in &EIGHT_TORSION[1..] {
        assert!(torsion.is_small_order() && *torsion != EdwardsPoint::default());
    }
    let signer = Signer::new(1, 0);
    let sig = signer.sign(b"m", 1, 0);
    assert!(signer.public.verify(b"m", &sig).is_ok());
    // s + ℓ: other bytes, the same scalar.
    let s: [u8; 32] = sig.to_bytes()[32..].try_into().unwrap();
    let stretched: [u8; 32] = non_canonical_s(&sig).to_bytes()[32..].try_into().unwrap();
    assert_ne!(s, stretched);
    assert_eq!(
        Scalar::from_bytes_mod_order(stretched),
        Scalar::from_bytes_mod_order(s)
    );
    // y + p decodes to the point y encodes.
    let y_plus_p = non_canonical_r(1, &s).to_bytes();
    let mut y = [0u8; 32];
    y[0] = 1;
    assert_eq!(
        CompressedEdwardsY(y_plus_p[..32].try_into().unwrap()).decompress(),
        CompressedEdwardsY(y).decompress()
    );
}
