//! Conflict detection (DESIGN §4 step 4): the activeness check of a confirmation request's
//! inputs against this shard's active contracts, with pessimistic locks.
//!
//! A participant can judge only the contracts its hosted parties are stakeholders of (the
//! others it never saw). Such an input must be active and not locked by another in-flight
//! request; a request that passes locks the inputs it consumes until its verdict (Canton's
//! pessimistic locking), so a concurrent double spend is rejected by whichever request is
//! sequenced second. Pure: the SQL that reads the states and writes the locks is in
//! `store`.

use std::collections::BTreeMap;

use ordo_core::Timestamp;

/// How a request uses one of its input contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputUse {
    pub contract_id: String,
    /// Archived by the request (a consuming exercise).
    pub consumed: bool,
    /// Some stakeholder of the contract is hosted here, so this shard must know it.
    pub hosted_stakeholder: bool,
}

/// What this shard knows of a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContractState {
    /// Locked for archival by this in-flight request (its sequencing timestamp).
    pub locked_by: Option<Timestamp>,
}

/// The outcome of a successful check: the contracts to lock for `request`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locks {
    pub contract_ids: Vec<String>,
}

/// Checks the inputs of `request` against `acs` (the states of the inputs found among
/// this shard's active contracts; an absent id is not active here). `Err` carries the
/// rejection reason, naming the contract.
pub fn check_activeness(
    request: Timestamp,
    inputs: &[InputUse],
    acs: &BTreeMap<String, ContractState>,
) -> Result<Locks, String> {
    let mut locks = Locks::default();
    for input in inputs.iter().filter(|i| i.hosted_stakeholder) {
        let Some(state) = acs.get(&input.contract_id) else {
            return Err(format!("contract {} is not active", input.contract_id));
        };
        match state.locked_by {
            Some(other) if other != request => {
                return Err(format!(
                    "contract {} is locked by request {}",
                    input.contract_id,
                    other.micros()
                ));
            }
            _ => {}
        }
        if input.consumed && !locks.contract_ids.contains(&input.contract_id) {
            locks.contract_ids.push(input.contract_id.clone());
        }
    }
    Ok(locks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(id: &str, consumed: bool) -> InputUse {
        InputUse {
            contract_id: id.into(),
            consumed,
            hosted_stakeholder: true,
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
                    },
                )
            })
            .collect()
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
        assert_eq!(e, "contract gone is not active");
    }

    #[test]
    fn an_input_locked_by_another_request_is_rejected_naming_both() {
        let e = check_activeness(Timestamp(10), &[used("a", false)], &acs(&[("a", Some(7))]))
            .unwrap_err();
        assert_eq!(e, "contract a is locked by request 7");
        // Its own lock (a re-processed request) is no conflict.
        assert!(
            check_activeness(Timestamp(7), &[used("a", true)], &acs(&[("a", Some(7))])).is_ok()
        );
    }

    #[test]
    fn inputs_without_hosted_stakeholders_are_not_judged() {
        let foreign = InputUse {
            contract_id: "x".into(),
            consumed: true,
            hosted_stakeholder: false,
        };
        let locks = check_activeness(Timestamp(1), &[foreign], &acs(&[])).unwrap();
        assert!(locks.contract_ids.is_empty());
    }
}
