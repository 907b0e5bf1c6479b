//! Conflict detection (DESIGN §4 step 4): the activeness check of a confirmation request's
//! inputs against this shard's active contracts, with pessimistic locks, the check that
//! each input is the contract this shard stores, and the freshness of what it creates.
//!
//! A participant can judge only the contracts its hosted parties are stakeholders of (the
//! others it never saw). Such an input must be active and not locked by another in-flight
//! request; a request that passes locks the inputs it consumes until its verdict (Canton's
//! pessimistic locking), so a concurrent double spend is rejected by whichever request is
//! sequenced second.
//!
//! Every input this shard stores must also be carried by the view exactly as stored
//! (template, payload, signatories, observers). A submitting participant may have taken an
//! input from a disclosure of its client (explicit disclosure) rather than from its own
//! ACS; it is the participants storing the contract that vouch for it. As the signatories
//! a view claims for an input are confirming parties, and their participants must store
//! the contract for it to be active, a forged input is always rejected by someone; a
//! participant that stores the contract checks it even when the view claims other
//! stakeholders. Pure: the SQL that reads the states and writes the locks is in `store`.

use std::collections::BTreeMap;

use ordo_core::Timestamp;
use ordo_ledger::ContractInstance;
use ordo_proto::errors::{self, ErrorCode};

/// How a request uses one of its input contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputUse {
    pub contract_id: String,
    /// Archived by the request (a consuming exercise).
    pub consumed: bool,
    /// Some stakeholder of the contract (as the view carries it) is hosted here, so this
    /// shard must know it.
    pub hosted_stakeholder: bool,
    /// The contract as the view carries it.
    pub instance: ContractInstance,
}

/// What this shard knows of an active contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractState {
    /// Locked for archival by this in-flight request (its sequencing timestamp).
    pub locked_by: Option<Timestamp>,
    /// The contract as stored here (`None` if the stored copy cannot be read, which no
    /// input then matches).
    pub stored: Option<ContractInstance>,
}

/// Why an input fails the check: the reason for the submitter, naming the contract, and
/// its error code (`CONTRACT_NOT_ACTIVE`, `LOCKED_CONTRACTS`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub code: ErrorCode,
    pub reason: String,
}

/// The outcome of a successful check: the contracts to lock for `request`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locks {
    pub contract_ids: Vec<String>,
}

/// Whether a view's input is the stored contract: same template, payload, signatories
/// and observers.
pub fn same_contract(stored: &ContractInstance, input: &ContractInstance) -> bool {
    stored.template == input.template
        && stored.payload == input.payload
        && stored.signatories == input.signatories
        && stored.observers == input.observers
}

/// Checks the inputs of `request` against `acs` (the states of the inputs found among
/// this shard's active contracts; an absent id is not active here): an input with a
/// hosted stakeholder must be active, every input stored here must match the stored
/// contract, and none may be locked by another request. `Err` carries the rejection
/// reason, naming the contract, with its code.
pub fn check_activeness(
    request: Timestamp,
    inputs: &[InputUse],
    acs: &BTreeMap<String, ContractState>,
) -> Result<Locks, Conflict> {
    check_activeness_in(request, inputs, |id| acs.get(id))
}

/// [`check_activeness`] against the states `acs` looks up by contract id.
pub fn check_activeness_in<'s>(
    request: Timestamp,
    inputs: &[InputUse],
    acs: impl Fn(&str) -> Option<&'s ContractState>,
) -> Result<Locks, Conflict> {
    let conflict = |code, reason| Err(Conflict { code, reason });
    let mut locks = Locks::default();
    for input in inputs {
        let state = match acs(&input.contract_id) {
            Some(state) => state,
            None if input.hosted_stakeholder => {
                return conflict(
                    errors::CONTRACT_NOT_ACTIVE,
                    format!("contract {} is not active", input.contract_id),
                );
            }
            None => continue,
        };
        if !state
            .stored
            .as_ref()
            .is_some_and(|stored| same_contract(stored, &input.instance))
        {
            return conflict(
                errors::FAILED_PRECONDITION,
                format!(
                    "contract {} does not match the stored contract",
                    input.contract_id
                ),
            );
        }
        match state.locked_by {
            Some(other) if other != request => {
                return conflict(
                    errors::LOCKED_CONTRACTS,
                    format!(
                        "contract {} is locked by request {}",
                        input.contract_id,
                        other.micros()
                    ),
                );
            }
            _ => {}
        }
        if input.consumed && !locks.contract_ids.contains(&input.contract_id) {
            locks.contract_ids.push(input.contract_id.clone());
        }
    }
    Ok(locks)
}

/// How a request uses a contract key whose maintainers include a party hosted here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    /// [`ordo_ledger::transaction::key_hash`] as hex.
    pub key_hash: String,
    /// The template and key, for messages.
    pub describe: String,
    /// A create assigns the key (it must be free, and is locked until the verdict); a
    /// lookup that found nothing says the key is free.
    pub assigns: bool,
}

/// What this shard knows of a contract key it maintains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// The active contract holding the key.
    pub holder: Option<String>,
    /// The in-flight request assigning it (a create awaiting its verdict).
    pub locked_by: Option<Timestamp>,
}

/// Key uniqueness (DESIGN §4; Canton's unique contract keys) on the key's maintainers'
/// shards: a key the request assigns or finds free must have no holder but one the
/// request itself archives (`consumed`), and no other in-flight request may be assigning
/// it. Concurrent creates of one key are thereby decided by sequencing order: the second
/// finds the key locked. `Ok` holds the keys to lock for the request.
pub fn check_keys<'s>(
    request: Timestamp,
    uses: &[KeyUse],
    consumed: &std::collections::BTreeSet<String>,
    keys: impl Fn(&str) -> Option<&'s KeyState>,
) -> Result<Vec<String>, Conflict> {
    let free = KeyState::default();
    let mut locks = Vec::new();
    for u in uses {
        let state = keys(&u.key_hash).unwrap_or(&free);
        let (code, verb) = if u.assigns {
            (errors::DUPLICATE_CONTRACT_KEY, "creates a contract with")
        } else {
            (errors::INCONSISTENT_CONTRACT_KEY, "found no contract with")
        };
        if let Some(holder) = state.holder.as_ref().filter(|h| !consumed.contains(*h)) {
            return Err(Conflict {
                code,
                reason: format!(
                    "the transaction {verb} {}, which active contract {holder} has",
                    u.describe
                ),
            });
        }
        if let Some(other) = state.locked_by.filter(|r| *r != request) {
            return Err(Conflict {
                code,
                reason: format!(
                    "the transaction {verb} {}, which request {} is assigning",
                    u.describe,
                    other.micros()
                ),
            });
        }
        if u.assigns && !locks.contains(&u.key_hash) {
            locks.push(u.key_hash.clone());
        }
    }
    Ok(locks)
}

/// Freshness: the contracts a request creates must be new to this shard. `known` holds
/// those of its created ids that this shard stores or stored (archived); any one of them
/// means the request replays a transaction (contract ids hash the submitter's seed), which
/// would duplicate or resurrect a contract. `Err` names it.
pub fn check_fresh(known: &[String]) -> Result<(), String> {
    match known.first() {
        None => Ok(()),
        Some(id) => Err(format!(
            "contract {id} already exists or existed here: the request creates it again"
        )),
    }
}

#[cfg(test)]
mod tests {
    use ordo_core::{Hash, PartyId};
    use ordo_ledger::{PackageId, Value};

    use super::*;

    /// An Iou of bank to alice over `amount` (a whole number).
    fn iou(amount: i64) -> ContractInstance {
        let party = |p: &str| PartyId::new(p).unwrap();
        ContractInstance {
            template: "iou:Iou".parse().unwrap(),
            package_id: PackageId(Hash::of(b"iou")),
            payload: Value::Record(
                [
                    ("issuer".to_owned(), Value::Party(party("bank"))),
                    ("owner".to_owned(), Value::Party(party("alice"))),
                    ("currency".to_owned(), Value::Text("EUR".into())),
                    ("amount".to_owned(), Value::Int(amount)),
                ]
                .into_iter()
                .collect(),
            ),
            signatories: [party("bank")].into_iter().collect(),
            observers: [party("alice")].into_iter().collect(),
            key: None,
            maintainers: Default::default(),
        }
    }

    fn used(id: &str, consumed: bool) -> InputUse {
        InputUse {
            contract_id: id.into(),
            consumed,
            hosted_stakeholder: true,
            instance: iou(100),
        }
    }

    fn acs(entries: &[(&str, Option<i64>)]) -> BTreeMap<String, ContractState> {
        entries
            .iter()
            .map(|(id, lock)| {
                (
                    (*id).to_owned(),
                    ContractState {
                        locked_by: lock.map(Timestamp),
                        stored: Some(iou(100)),
                    },
                )
            })
            .collect()
    }

    fn key_use(hash: &str, assigns: bool) -> KeyUse {
        KeyUse {
            key_hash: hash.into(),
            describe: format!("key {hash}"),
            assigns,
        }
    }

    #[test]
    fn a_free_key_is_assigned_and_locked_and_a_held_or_locked_one_is_refused() {
        let me = Timestamp(10);
        let keys: BTreeMap<String, KeyState> = [
            (
                "held".to_owned(),
                KeyState {
                    holder: Some("c1".into()),
                    locked_by: None,
                },
            ),
            (
                "assigning".to_owned(),
                KeyState {
                    holder: None,
                    locked_by: Some(Timestamp(7)),
                },
            ),
            (
                "mine".to_owned(),
                KeyState {
                    holder: None,
                    locked_by: Some(me),
                },
            ),
        ]
        .into_iter()
        .collect();
        let none = std::collections::BTreeSet::new();
        let check = |uses: &[KeyUse], consumed: &std::collections::BTreeSet<String>| {
            check_keys(me, uses, consumed, |k| keys.get(k))
        };
        // Unknown here: free. A create locks it; a lookup that found nothing does not.
        assert_eq!(
            check(&[key_use("free", true), key_use("free2", false)], &none),
            Ok(vec!["free".to_owned()])
        );
        assert_eq!(
            check(&[key_use("mine", true)], &none),
            Ok(vec!["mine".to_owned()])
        );
        let held = check(&[key_use("held", true)], &none).unwrap_err();
        assert_eq!(held.code, errors::DUPLICATE_CONTRACT_KEY);
        assert!(held.reason.contains("c1"), "{}", held.reason);
        let locked = check(&[key_use("assigning", true)], &none).unwrap_err();
        assert_eq!(locked.code, errors::DUPLICATE_CONTRACT_KEY);
        assert!(locked.reason.contains("request 7"), "{}", locked.reason);
        let lookup = check(&[key_use("held", false)], &none).unwrap_err();
        assert_eq!(lookup.code, errors::INCONSISTENT_CONTRACT_KEY);
        // The request archives the holder first: the key is free for it.
        let consumed = ["c1".to_owned()].into_iter().collect();
        assert_eq!(
            check(&[key_use("held", true)], &consumed),
            Ok(vec!["held".to_owned()])
        );
    }

    #[test]
    fn a_created_contract_must_be_new() {
        assert!(check_fresh(&[]).is_ok());
        let e = check_fresh(&["c1".to_owned()]).unwrap_err();
        assert!(e.contains("c1") && e.contains("already exists"), "{e}");
    }

    #[test]
    fn active_unlocked_inputs_pass_and_consumed_ones_are_locked() {
        let locks = check_activeness(
            Timestamp(10),
            &[used("a", true), used("b", false)],
            &acs(&[("a", None), ("b", None)]),
        )
        .unwrap();
        assert_eq!(locks.contract_ids, vec!["a".to_owned()]);
    }

    #[test]
    fn an_inactive_input_is_rejected_naming_it() {
        let e = check_activeness(Timestamp(10), &[used("gone", true)], &acs(&[])).unwrap_err();
        assert_eq!(e.reason, "contract gone is not active");
        assert_eq!(e.code, errors::CONTRACT_NOT_ACTIVE);
    }

    #[test]
    fn an_input_locked_by_another_request_is_rejected_naming_both() {
        let e = check_activeness(Timestamp(10), &[used("a", false)], &acs(&[("a", Some(7))]))
            .unwrap_err();
        assert_eq!(e.reason, "contract a is locked by request 7");
        assert_eq!(e.code, errors::LOCKED_CONTRACTS);
        // Its own lock (a re-processed request) is no conflict.
        assert!(
            check_activeness(Timestamp(7), &[used("a", true)], &acs(&[("a", Some(7))])).is_ok()
        );
    }

    #[test]
    fn inputs_without_hosted_stakeholders_are_not_judged() {
        let foreign = InputUse {
            hosted_stakeholder: false,
            ..used("x", true)
        };
        let locks = check_activeness(Timestamp(1), &[foreign], &acs(&[])).unwrap();
        assert!(locks.contract_ids.is_empty());
    }

    #[test]
    fn an_input_that_differs_from_the_stored_contract_is_rejected_naming_it() {
        let stored = acs(&[("a", None)]);
        let mismatch = |instance: ContractInstance| {
            let input = InputUse {
                instance,
                ..used("a", true)
            };
            check_activeness(Timestamp(10), &[input], &stored)
                .unwrap_err()
                .reason
        };
        let expected = "contract a does not match the stored contract";
        // A changed payload (e.g. a forged disclosure with another amount).
        assert_eq!(mismatch(iou(1_000_000)), expected);
        // Changed parties, or another template.
        let mut other = iou(100);
        other.observers.clear();
        assert_eq!(mismatch(other), expected);
        let mut other = iou(100);
        other.signatories.insert(PartyId::new("mallory").unwrap());
        assert_eq!(mismatch(other), expected);
        let mut other = iou(100);
        other.template = "iou:SwapProposal".parse().unwrap();
        assert_eq!(mismatch(other), expected);

        // A stored contract is checked even if the view claims no stakeholder hosted
        // here (the forgery changed its parties), and a stored copy that cannot be read
        // matches nothing.
        let mut disowned = iou(100);
        disowned.observers.clear();
        let input = InputUse {
            hosted_stakeholder: false,
            instance: disowned,
            ..used("a", true)
        };
        assert_eq!(
            check_activeness(Timestamp(10), &[input], &stored)
                .unwrap_err()
                .reason,
            expected
        );
        let unreadable: BTreeMap<_, _> = [(
            "a".to_owned(),
            ContractState {
                locked_by: None,
                stored: None,
            },
        )]
        .into_iter()
        .collect();
        assert_eq!(
            check_activeness(Timestamp(10), &[used("a", false)], &unreadable)
                .unwrap_err()
                .reason,
            expected
        );
        // The very stored contract passes.
        assert!(check_activeness(Timestamp(10), &[used("a", true)], &stored).is_ok());
    }
}
