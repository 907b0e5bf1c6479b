//! Deciding the order: which submissions of a group-commit batch get which timestamp.
//!
//! A batch is sequenced by one SQL statement (`store::commit_batch`) that takes the head
//! lock, reserves one timestamp per submission from `base = max(head + 1, now)` on, and
//! inserts, by position, the submissions whose timestamp is within their max sequencing
//! time, skipping `(sender, message_id)` pairs that already exist. The rules live here, as
//! pure functions the statement mirrors: [`assign`] decides by position, [`unresolved`]
//! names the pairs the insert skipped, and [`resolve`] turns them into duplicates once
//! their stored timestamps are known.

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
    /// Sequenced earlier, but the row was pruned before its timestamp could be read.
    Pruned,
}

/// The decisions for a batch, in input order, and the new head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub decisions: Vec<Decision>,
    /// The last assigned timestamp, or the old head when nothing was sequenced.
    pub head: i64,
}

/// Assigns the batch's reserved timestamps by position: submission `i` gets `base + i`,
/// or is expired when that is after its max sequencing time (its timestamp stays unused: a
/// hole, which is fine, timestamps only have to increase). The head moves to the last
/// reserved timestamp. A pair repeated in the batch, or already in the table, is found by
/// the insert's `ON CONFLICT` and settled by [`unresolved`] and [`resolve`].
pub fn assign(base: i64, batch: &[Candidate<'_>]) -> Assignment {
    let decisions = batch
        .iter()
        .zip(0i64..)
        .map(|(c, i)| {
            let ts = base.saturating_add(i);
            if ts > c.max_sequencing_time {
                Decision::Expired { would_be: ts }
            } else {
                Decision::Sequenced(ts)
            }
        })
        .collect();
    Assignment {
        decisions,
        head: base.saturating_add(batch.len() as i64 - 1),
    }
}

/// The first timestamp of a batch: after the head, and not before the database clock.
pub fn base(head: i64, db_now: i64) -> i64 {
    head.saturating_add(1).max(db_now)
}

/// After the insert (`assign`, then `INSERT ... ON CONFLICT DO NOTHING` in position
/// order): the `(sender, message_id)` pairs whose stored timestamp the
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
            Decision::Duplicate(_) | Decision::Pruned => false,
        })
        .map(|(c, _)| (c.sender, c.message_id))
        .filter(|pair| seen.insert(*pair))
        .collect()
}

/// Merges the looked-up timestamps of the [`unresolved`] pairs into the decisions: every
/// candidate whose pair is in `existing` becomes `Duplicate(existing)` — a conflicting
/// `Sequenced` one (its assigned timestamp becomes a hole), an in-batch repeat of it, and
/// an `Expired` one. A candidate decided `Sequenced` that was neither inserted nor found
/// (the conflicting row vanished meanwhile: pruned) becomes `Pruned`.
pub fn resolve(
    assignment: Assignment,
    batch: &[Candidate<'_>],
    inserted: &HashSet<i64>,
    existing: &HashMap<(i32, String), i64>,
) -> Assignment {
    let decisions = batch
        .iter()
        .zip(assignment.decisions)
        .map(|(c, d)| {
            if matches!(d, Decision::Sequenced(ts) if inserted.contains(&ts)) {
                return d;
            }
            if let Some(&ts) = existing.get(&(c.sender, c.message_id.to_owned())) {
                return Decision::Duplicate(ts);
            }
            match d {
                Decision::Sequenced(_) => Decision::Pruned,
                other => other,
            }
        })
        .collect();
    Assignment {
        decisions,
        head: assignment.head,
    }
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

    #[test]
    fn nothing_to_resolve_when_everything_was_inserted() {
        let batch = [c(1, "a", i64::MAX), c(1, "b", i64::MAX)];
        let a = assign(101, &batch);
        let inserted = HashSet::from([101, 102]);
        assert!(unresolved(&batch, &a, &inserted).is_empty());
        let r = resolve(a.clone(), &batch, &inserted, &HashMap::new());
        assert_eq!(r, a);
        assert_eq!(
            r.decisions,
            vec![Decision::Sequenced(101), Decision::Sequenced(102)]
        );
        assert_eq!(r.head, 102);
    }

    #[test]
    fn a_conflict_becomes_a_duplicate_of_the_existing_row() {
        // (1, "a") conflicted with an earlier row; its repeat in the batch follows it;
        // (1, "b") was inserted.
        let batch = [
            c(1, "a", i64::MAX),
            c(1, "b", i64::MAX),
            c(1, "a", i64::MAX),
        ];
        let a = assign(101, &batch);
        let inserted = HashSet::from([102]);
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(1, "a")]);
        let existing = HashMap::from([((1, "a".to_owned()), 42)]);
        let r = resolve(a, &batch, &inserted, &existing);
        assert_eq!(
            r.decisions,
            vec![
                Decision::Duplicate(42),
                Decision::Sequenced(102),
                Decision::Duplicate(42)
            ]
        );
        // 101 and 103 are holes; the head is the last reserved timestamp.
        assert_eq!(r.head, 103);
    }

    #[test]
    fn a_repeat_within_the_batch_is_a_duplicate_of_the_first() {
        let batch = [
            c(1, "a", i64::MAX),
            c(2, "a", i64::MAX),
            c(1, "a", i64::MAX),
        ];
        let a = assign(10, &batch);
        // The insert runs in position order, so the first occurrence is the one written.
        let inserted = HashSet::from([10, 11]);
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(1, "a")]);
        let existing = HashMap::from([((1, "a".to_owned()), 10)]);
        let r = resolve(a, &batch, &inserted, &existing);
        assert_eq!(
            r.decisions,
            vec![
                Decision::Sequenced(10),
                Decision::Sequenced(11),
                Decision::Duplicate(10)
            ]
        );
    }

    #[test]
    fn an_expired_retry_of_a_sequenced_message_is_a_duplicate() {
        let batch = [c(3, "x", 10), c(3, "y", 10), c(3, "z", i64::MAX)];
        let a = assign(200, &batch);
        assert_eq!(
            a.decisions,
            vec![
                Decision::Expired { would_be: 200 },
                Decision::Expired { would_be: 201 },
                Decision::Sequenced(202)
            ]
        );
        let inserted = HashSet::from([202]);
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(3, "x"), (3, "y")]);
        let existing = HashMap::from([((3, "x".to_owned()), 9)]);
        let r = resolve(a, &batch, &inserted, &existing);
        assert_eq!(
            r.decisions,
            vec![
                Decision::Duplicate(9),
                Decision::Expired { would_be: 201 },
                Decision::Sequenced(202)
            ]
        );
    }

    #[test]
    fn an_expired_item_whose_pair_this_batch_inserted_stays_expired() {
        let batch = [c(1, "a", 10), c(1, "a", i64::MAX)];
        let a = assign(200, &batch);
        let inserted = HashSet::from([201]);
        assert!(unresolved(&batch, &a, &inserted).is_empty());
        let r = resolve(a.clone(), &batch, &inserted, &HashMap::new());
        assert_eq!(r, a);
    }

    #[test]
    fn a_conflict_whose_row_vanished_is_pruned() {
        let batch = [c(1, "a", i64::MAX), c(1, "b", 0), c(1, "c", i64::MAX)];
        let a = assign(101, &batch);
        let inserted = HashSet::from([103]);
        assert_eq!(unresolved(&batch, &a, &inserted), vec![(1, "a"), (1, "b")]);
        let r = resolve(a, &batch, &inserted, &HashMap::new());
        assert_eq!(
            r.decisions,
            vec![
                Decision::Pruned,
                Decision::Expired { would_be: 102 },
                Decision::Sequenced(103)
            ]
        );
    }

    #[test]
    fn the_base_follows_the_clock_but_never_goes_back() {
        assert_eq!(base(100, 500), 500);
        // The database clock went backwards (or another node's batch ran ahead of it):
        // timestamps must still increase.
        assert_eq!(base(1000, 10), 1001);
    }

    #[test]
    fn timestamps_strictly_increase_over_many_batches() {
        let mut head = 0;
        let mut seen = Vec::new();
        for (round, now) in [5, 5, 3, 100, 50].into_iter().enumerate() {
            let ids: Vec<String> = (0..4).map(|i| format!("{round}-{i}")).collect();
            let batch: Vec<_> = ids.iter().map(|id| c(1, id, i64::MAX)).collect();
            let a = assign(base(head, now), &batch);
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
