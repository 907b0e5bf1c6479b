//! Messages of one processing batch sent together: a participant's responses and the
//! mediator's verdicts go as the envelopes of as few submissions as fit, one sequenced
//! event and one delivery per recipient for many requests.

/// The most bytes of messages in one submission (a single larger message goes alone): a
/// sequencer's `max_request_bytes` must allow it (1 MiB by default).
pub const GROUP_BYTES: usize = 64 * 1024;

/// `items` in order, cut into groups of at most [`GROUP_BYTES`] by `bytes`; an item larger
/// than that is a group of its own.
pub fn by_bytes<T>(items: impl IntoIterator<Item = T>, bytes: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut groups: Vec<(Vec<T>, usize)> = Vec::new();
    for item in items {
        let size = bytes(&item);
        match groups.last_mut() {
            Some((group, total)) if *total + size <= GROUP_BYTES => {
                *total += size;
                group.push(item);
            }
            _ => groups.push((vec![item], size)),
        }
    }
    groups.into_iter().map(|(group, _)| group).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_in_order_up_to_the_bound_and_a_large_item_alone() {
        let half = GROUP_BYTES / 2;
        let sizes = [half, half, 1, GROUP_BYTES + 1, 10, 20];
        let groups = by_bytes(sizes.iter().enumerate(), |(_, s)| **s);
        let ids: Vec<Vec<usize>> = groups
            .iter()
            .map(|g| g.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(ids, [vec![0, 1], vec![2], vec![3], vec![4, 5]]);
        assert!(by_bytes(Vec::<usize>::new(), |s| *s).is_empty());
    }
}
