//! Deciding the order: which submissions of a group-commit batch get which timestamp.
//! Pure: the writer gathers the facts inside its transaction (the head, the database
//! clock, the `(sender, message_id)` pairs already sequenced) and executes the decision.

use std::collections::{HashMap, HashSet};

/// One submission of a batch, as far as ordering is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub sender: i32,
    pub message_id: &'a str,
    pub max_sequencing_time: i64,
}

/// What happens to one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Already sequenced (earlier, or earlier in this batch) at this timestamp.
    Duplicate(i64),
    /// Sequenced now at this timestamp.
    Sequenced(i64),
    /// Its timestamp would have been `would_be`, after its max sequencing time: never
    /// sequenced.
    Expired { would_be: i64 },
}

/// The decisions for a batch, in input order, and the new head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub decisions: Vec<Decision>,
    /// The last assigned timestamp, or the old head when nothing was sequenced.
    pub head: i64,
}

/// Assigns strictly increasing timestamps starting at `max(head + 1, db_now)`.
///
/// `existing` maps the batch's `(sender, message_id)` pairs that are already in the table
/// to their timestamps. An expired candidate does not consume a timestamp; a candidate
/// that repeats an earlier one of the same batch is a duplicate of it (even when the
/// earlier one expired, it is decided on its own).
pub fn assign(
    head: i64,
    db_now: i64,
    existing: &HashMap<(i32, String), i64>,
    batch: &[Candidate<'_>],
) -> Assignment {
    let mut next = head.saturating_add(1).max(db_now);
    let mut last = head;
    let mut in_batch: HashMap<(i32, &str), i64> = HashMap::new();
    let decisions = batch
        .iter()
        .map(|c| {
            if let Some(&ts) = existing.get(&(c.sender, c.message_id.to_owned())) {
                return Decision::Duplicate(ts);
            }
            if let Some(&ts) = in_batch.get(&(c.sender, c.message_id)) {
                return Decision::Duplicate(ts);
            }
            if next > c.max_sequencing_time {
                return Decision::Expired { would_be: next };
            }
            let ts = next;
            in_batch.insert((c.sender, c.message_id), ts);
            last = ts;
            next = ts.saturating_add(1);
            Decision::Sequenced(ts)
        })
        .collect();
    Assignment {
        decisions,
        head: last,
    }
}

/// After an optimistic insert (`assign` with no `existing` pairs, then `INSERT ... ON
/// CONFLICT DO NOTHING`): the `(sender, message_id)` pairs whose stored timestamp the
/// writer must still look up, deduplicated. `inserted` holds the timestamps the insert
/// actually wrote. These are the pairs of candidates decided `Sequenced` that were not
/// inserted (the pair already existed), and of `Expired` candidates whose pair this batch
/// did not insert (a retry whose original was sequenced must learn its timestamp).
pub fn unresolved<'a>(
    batch: &[Candidate<'a>],
    assignment: &Assignment,
    inserted: &HashSet<i64>,
) -> Vec<(i32, &'a str)> {
    let ours: HashSet<(i32, &str)> = batch
        .iter()
        .zip(&assignment.decisions)
        .filter(|(_, d)| matches!(d, Decision::Sequenced(ts) if inserted.contains(ts)))
        .map(|(c, _)| (c.sender, c.message_id))
        .collect();
    let mut seen = HashSet::new();
    batch
        .iter()
        .zip(&assignment.decisions)
        .filter(|(c, d)| match d {
            Decision::Sequenced(ts) => !inserted.contains(ts),
            Decision::Expired { .. } => !ours.contains(&(c.sender, c.message_id)),
            Decision::Duplicate(_) => false,
        })
        .map(|(c, _)| (c.sender, c.message_id))
        .filter(|pair| seen.insert(*pair))
        .collect()
}

/// Merges the looked-up timestamps of the [`unresolved`] pairs into the decisions: every
/// candidate whose pair is in `existing` becomes `Duplicate(existing)` — a conflicting
/// `Sequenced` one (its assigned timestamp becomes a hole), an in-batch repeat of it, and
/// an `Expired` one. The head is unchanged (holes are fine; it only increases). `None`
/// when a candidate decided `Sequenced` was neither inserted nor found (the conflicting
/// row vanished meanwhile, e.g. pruned): the batch must not be committed.
pub fn resolve(
    assignment: Assignment,
    batch: &[Candidate<'_>],
    inserted: &HashSet<i64>,
    existing: &HashMap<(i32, String), i64>,
) -> Option<Assignment> {
    let decisions = batch
        .iter()
        .zip(assignment.decisions)
        .map(|(c, d)| {
            if matches!(d, Decision::Sequenced(ts) if inserted.contains(&ts)) {
                return Some(d);
            }
            if let Some(&ts) = existing.get(&(c.sender, c.message_id.to_owned())) {
                return Some(Decision::Duplicate(ts));
            }
            match d {
                Decision::Sequenced(_) => None,
                other => Some(other),
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Assignment {
        decisions,
        head: assignment.head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sender: i32, id: &str, mst: i64) -> Candidate<'_> {
        Candidate {
            sender,
            message_id: id,
            max_sequencing_time: mst,
        }
    }

    fn optimistic(batch: &[Candidate<'_>]) -> Assignment {
        assign(100, 0, &HashMap::new(), batch)
    }

    #[test]
    fn nothing_to_resolve_when_everything_was_inserted() {
        let batch = [
            c(1, "a", i64::MAX),
            c(1, "b", i64::MAX),
            c(1, "a", i64::MAX),
        ];
        let a = optimistic(&batch);
        let inserted = HashSet::from([101, 102]);
        assert!(unresolved(&batch, &a, &inserted).is_empty());
        let r = resolve(a.clone(), &batch, &inserted, &HashMap::new()).unwrap();
        assert_eq!(r, a);
    }

    #[test]
    fn a_conflict_becomes_a_duplicate_of_the_existing_row() {
        // (1, "a") conflicted; its repeat in the batch follows it; (1, "b") was inserted.
        let batch = [
            c(1, "a", i64::MAX),
            c(1, "b", i64::MAX),
            c(1, "a", i64::MAX),
        ];
        let a = optimistic(&batch);
        assert_eq!(
            a.decisions,
            vec![
                Decision::Sequenced(101),
                Decision::Sequenced(102),
                Decision::Duplicate(101)
            ]
        );
        let inserted = HashSet::from([102]);
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(1, "a")]);
        let existing = HashMap::from([((1, "a".to_owned()), 42)]);
        let r = resolve(a, &batch, &inserted, &existing).unwrap();
        assert_eq!(
            r.decisions,
            vec![
                Decision::Duplicate(42),
                Decision::Sequenced(102),
                Decision::Duplicate(42)
            ]
        );
        // 101 is a hole; the head stays where it was written.
        assert_eq!(r.head, 102);
    }

    #[test]
    fn an_expired_retry_of_a_sequenced_message_is_a_duplicate() {
        let batch = [c(3, "x", 10), c(3, "y", 10), c(3, "z", i64::MAX)];
        let a = assign(100, 200, &HashMap::new(), &batch);
        assert_eq!(
            a.decisions,
            vec![
                Decision::Expired { would_be: 200 },
                Decision::Expired { would_be: 200 },
                Decision::Sequenced(200)
            ]
        );
        let inserted = HashSet::from([200]);
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(3, "x"), (3, "y")]);
        let existing = HashMap::from([((3, "x".to_owned()), 9)]);
        let r = resolve(a, &batch, &inserted, &existing).unwrap();
        assert_eq!(
            r.decisions,
            vec![
                Decision::Duplicate(9),
                Decision::Expired { would_be: 200 },
                Decision::Sequenced(200)
            ]
        );
        assert_eq!(r.head, 200);
    }

    #[test]
    fn an_expired_item_whose_pair_this_batch_inserted_stays_expired() {
        // Decided on its own, as `assign` does: the later repeat was sequenced.
        let batch = [c(1, "a", 10), c(1, "a", i64::MAX)];
        let a = assign(100, 200, &HashMap::new(), &batch);
        let inserted = HashSet::from([200]);
        assert!(unresolved(&batch, &a, &inserted).is_empty());
        let r = resolve(a.clone(), &batch, &inserted, &HashMap::new()).unwrap();
        assert_eq!(r, a);
    }

    #[test]
    fn a_conflict_whose_row_vanished_cannot_be_resolved() {
        let batch = [c(1, "a", i64::MAX), c(1, "b", 0)];
        let a = optimistic(&batch);
        let inserted = HashSet::new();
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(1, "a"), (1, "b")]);
        assert_eq!(resolve(a, &batch, &inserted, &HashMap::new()), None);
    }

    #[test]
    fn starts_at_db_clock_when_ahead_of_head() {
        let a = assign(
            100,
            500,
            &HashMap::new(),
            &[c(1, "a", i64::MAX), c(1, "b", i64::MAX)],
        );
        assert_eq!(
            a.decisions,
            vec![Decision::Sequenced(500), Decision::Sequenced(501)]
        );
        assert_eq!(a.head, 501);
    }

    #[test]
    fn continues_after_head_when_clock_lags() {
        // The database clock went backwards (or another node's batch ran ahead of it):
        // timestamps must still increase.
        let a = assign(
            1000,
            10,
            &HashMap::new(),
            &[c(1, "a", i64::MAX), c(2, "a", i64::MAX)],
        );
        assert_eq!(
            a.decisions,
            vec![Decision::Sequenced(1001), Decision::Sequenced(1002)]
        );
        assert_eq!(a.head, 1002);
    }

    #[test]
    fn existing_pairs_are_duplicates_and_take_no_timestamp() {
        let existing = HashMap::from([((1, "a".to_owned()), 42)]);
        let a = assign(
            100,
            0,
            &existing,
            &[c(1, "a", i64::MAX), c(1, "b", i64::MAX)],
        );
        assert_eq!(
            a.decisions,
            vec![Decision::Duplicate(42), Decision::Sequenced(101)]
        );
        assert_eq!(a.head, 101);
    }

    #[test]
    fn repeats_within_a_batch_are_duplicates_of_the_first() {
        let a = assign(
            0,
            10,
            &HashMap::new(),
            &[
                c(1, "a", i64::MAX),
                c(2, "a", i64::MAX),
                c(1, "a", i64::MAX),
            ],
        );
        assert_eq!(
            a.decisions,
            vec![
                Decision::Sequenced(10),
                Decision::Sequenced(11),
                Decision::Duplicate(10)
            ]
        );
        assert_eq!(a.head, 11);
    }

    #[test]
    fn expired_items_are_skipped_without_consuming_a_timestamp() {
        let a = assign(
            0,
            10,
            &HashMap::new(),
            &[c(1, "a", 10), c(1, "b", 10), c(1, "c", 11), c(1, "d", 100)],
        );
        assert_eq!(
            a.decisions,
            vec![
                Decision::Sequenced(10),
                Decision::Expired { would_be: 11 },
                Decision::Sequenced(11),
                Decision::Sequenced(12)
            ]
        );
        assert_eq!(a.head, 12);
    }

    #[test]
    fn nothing_sequenced_keeps_the_head() {
        let existing = HashMap::from([((1, "a".to_owned()), 5)]);
        let a = assign(77, 1000, &existing, &[c(1, "a", 0), c(1, "b", 999)]);
        assert_eq!(
            a.decisions,
            vec![Decision::Duplicate(5), Decision::Expired { would_be: 1000 }]
        );
        assert_eq!(a.head, 77);
    }

    #[test]
    fn duplicate_wins_over_expiry() {
        // A retry after its deadline still learns that the first attempt was sequenced.
        let existing = HashMap::from([((3, "x".to_owned()), 9)]);
        let a = assign(100, 200, &existing, &[c(3, "x", 10)]);
        assert_eq!(a.decisions, vec![Decision::Duplicate(9)]);
    }

    #[test]
    fn timestamps_strictly_increase_over_many_batches() {
        let mut head = 0;
        let mut seen = Vec::new();
        for (round, now) in [5, 5, 3, 100, 50].into_iter().enumerate() {
            let ids: Vec<String> = (0..4).map(|i| format!("{round}-{i}")).collect();
            let batch: Vec<_> = ids.iter().map(|id| c(1, id, i64::MAX)).collect();
            let a = assign(head, now, &HashMap::new(), &batch);
            for d in a.decisions {
                match d {
                    Decision::Sequenced(ts) => seen.push(ts),
                    other => panic!("unexpected {other:?}"),
                }
            }
            head = a.head;
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), head);
    }
}
