//! Batch verification that accepts exactly the signatures [`PublicKey::verify`]
//! (ed25519-dalek's `verify_strict`) accepts, each one whatever else is in the batch.
//!
//! `verify_strict` decodes `s` as a canonical scalar and `R` as a point not of small order,
//! refuses a key `A` of small order, and checks `R = [s]B − [k]A` on encodings (so `R` must
//! be canonically encoded). ed25519-dalek's `verify_batch` checks one random combination
//! `Σ zᵢ([sᵢ]B − [kᵢ]Aᵢ − Rᵢ) = 0` without the cofactor instead. Besides the encodings it
//! does not look at, that combination misses a difference lying in the curve's 8-torsion
//! whenever the difference's order divides its weight `zᵢ`: one chance in 2 to 8, and the
//! weights derive from the batch itself, so a signer can retry until it happens. Rejecting
//! small-order and non-canonical components is therefore not enough. A signature enters the
//! batch only if
//!
//! - it passes `verify_strict`'s format checks (canonical `s`, canonical `R` not of small
//!   order; a key not of small order is [`PublicKey`]'s invariant): otherwise it is rejected
//!   without further work, as `verify_strict` would reject it;
//! - `R` and `A` lie in the prime-order subgroup: then so does each difference, and the
//!   combination vanishes only if every difference does (up to the batch's soundness error,
//!   about 2⁻¹²⁸). A signature with a torsion component in `R` or `A`, which no honest
//!   signer makes, is verified on its own.
//!
//! When the batch fails, each of its signatures is verified on its own to find which.
//!
//! The price is the subgroup check on `R`, a 253-bit scalar multiplication per signature
//! (about two thirds of a strict verification), which outweighs what the batch saves: 64
//! signatures of 450 bytes by 4 keys took 2.68 ms against 2.33 ms one by one, by 64 keys
//! (one check per key and batch) 3.96 ms (`benches/signature.rs`, `verify_64`, on a
//! 2-core VM). Batching pays only once that check is cheaper or not needed, e.g. with
//! cofactored verification (ZIP 215) for single and batch alike, which a protocol change
//! would have to bring to every member at once.

use std::collections::HashMap;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;

use super::{PublicKey, Signature};
use crate::CoreError;

/// Fewer signatures than this are verified one by one: the batch's fixed costs (its
/// transcript, its allocations) would outweigh what it saves.
const MIN_BATCH: usize = 4;

/// Verifies each `(key, message, signature)`: the result of each is what
/// [`PublicKey::verify`] returns for it.
pub fn verify_batch(items: &[(&PublicKey, &[u8], &Signature)]) -> Vec<Result<(), CoreError>> {
    if items.len() < MIN_BATCH {
        return items.iter().map(alone).collect();
    }
    let mut keys = HashMap::new();
    let mut batched = Vec::with_capacity(items.len());
    let mut results: Vec<Result<(), CoreError>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| match route(item, &mut keys) {
            Route::Reject => Err(item.0.mismatch()),
            Route::Alone => alone(item),
            Route::Batch => {
                batched.push(i);
                Ok(())
            }
        })
        .collect();
    if batched.len() < MIN_BATCH || !holds(items, &batched) {
        for i in batched {
            results[i] = alone(&items[i]);
        }
    }
    results
}

fn alone(&(key, message, signature): &(&PublicKey, &[u8], &Signature)) -> Result<(), CoreError> {
    key.verify(message, signature)
}

/// Where one signature is decided.
enum Route {
    /// `verify_strict` rejects it on its format.
    Reject,
    /// The batch could disagree with `verify_strict` about it.
    Alone,
    Batch,
}

/// `keys` remembers, per key, whether it may enter the batch: a batch holds many
/// signatures of few keys.
fn route(
    &(key, _, signature): &(&PublicKey, &[u8], &Signature),
    keys: &mut HashMap<[u8; 32], bool>,
) -> Route {
    let s = Scalar::from_canonical_bytes(*signature.0.s_bytes());
    let r_bytes = signature.0.r_bytes();
    if bool::from(s.is_none()) || !canonical_y(r_bytes) {
        return Route::Reject;
    }
    let Some(r) = CompressedEdwardsY(*r_bytes).decompress() else {
        return Route::Reject;
    };
    if r.is_small_order() {
        return Route::Reject;
    }
    let key_batchable = *keys.entry(*key.as_bytes()).or_insert_with(|| {
        // A weak key cannot be constructed; should one appear, verify_strict decides.
        !key.0.is_weak() && in_prime_order_subgroup(&key.0.to_edwards())
    });
    if key_batchable && in_prime_order_subgroup(&r) {
        Route::Batch
    } else {
        Route::Alone
    }
}

/// Whether the encoded y coordinate is below p = 2²⁵⁵ − 19 (bit 255, the sign of x, aside).
/// With that, an encoding is canonical unless x = 0 and its sign bit is set, and both points
/// with x = 0 are of small order, which is rejected anyway.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    !(bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// Whether `[ℓ]P` is the identity, i.e. `P` has no torsion component. Written `[ℓ − 1]P = −P`
/// to use a canonical scalar, and in variable time: every input here is public.
fn in_prime_order_subgroup(point: &EdwardsPoint) -> bool {
    EdwardsPoint::vartime_double_scalar_mul_basepoint(&-Scalar::ONE, point, &Scalar::ZERO) == -point
}

/// Whether ed25519-dalek's batch equation holds for the signatures at `batched`.
fn holds(items: &[(&PublicKey, &[u8], &Signature)], batched: &[usize]) -> bool {
    let messages: Vec<&[u8]> = batched.iter().map(|&i| items[i].1).collect();
    let signatures: Vec<ed25519_dalek::Signature> = batched.iter().map(|&i| items[i].2.0).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = batched.iter().map(|&i| items[i].0.0).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;
    use curve25519_dalek::constants::EIGHT_TORSION;

    #[test]
    fn canonical_y_is_below_p() {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!canonical_y(&p));
        let mut below = p;
        below[0] = 0xec;
        assert!(canonical_y(&below));
        // The sign bit of x is not part of y.
        let mut signed = below;
        signed[31] |= 0x80;
        assert!(canonical_y(&signed));
        p[31] = 0xff;
        assert!(!canonical_y(&p));
        assert!(canonical_y(&[0; 32]));
    }

    #[test]
    fn subgroup_membership() {
        let honest = KeyPair::from_seed([9; 32]).public();
        let point = honest.0.to_edwards();
        assert!(in_prime_order_subgroup(&point));
        for torsion in &EIGHT_TORSION[1..] {
            assert!(!in_prime_order_subgroup(&(point + torsion)));
        }
    }
}
