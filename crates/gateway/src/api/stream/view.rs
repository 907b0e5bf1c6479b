//! What one stream tells its client, decided from what it told it before (pure): the
//! snapshot's matching contracts, each transaction's matching creates and the archives of
//! contracts it sent (or, resumed, could hold).

use std::collections::{BTreeMap, HashSet};

use ordo_ledger_client::{ActiveContracts, Archived, Contract, Event, Transaction};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{ArchivedView, ContractView, EventView};
use crate::filter::Filter;

/// `{"events": [...], "offset": {shard: offset}}`: contracts of the snapshot, or what one
/// transaction did.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Events {
    events: Vec<EventView>,
    offset: BTreeMap<String, i64>,
}

/// `{"live": true, "offset": {shard: offset}}`: the snapshot is complete; what follows is
/// live.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Live {
    live: bool,
    offset: BTreeMap<String, i64>,
}

/// What one stream has told its client, and so what it tells next.
#[derive(Debug)]
pub(super) struct View {
    filter: Filter,
    /// Per followed shard, the offset of the latest transaction read (or the snapshot's).
    offsets: BTreeMap<String, i64>,
    /// Contracts sent as created and not yet as archived: a contract on two of the
    /// caller's shards comes from each, and is sent once.
    sent: HashSet<String>,
    /// Resumed from offsets: the client may hold contracts created before them, so their
    /// archives are sent (it ignores those of contracts it does not hold).
    resumed: bool,
    /// (Resumed only.) Contracts seen created that did not match: their archives are not
    /// sent.
    withheld: HashSet<String>,
}

impl View {
    /// A view starting from each shard's active contracts: the matching ones to send.
    pub(super) fn snapshot(
        filter: Filter,
        shards: Vec<(String, ActiveContracts)>,
    ) -> (Self, Vec<EventView>) {
        let mut view = Self::new(filter, BTreeMap::new(), false);
        let mut events = Vec::new();
        for (shard, acs) in shards {
            view.offsets.insert(shard, acs.offset);
            events.extend(acs.contracts.iter().filter_map(|c| view.created(c)));
        }
        (view, events)
    }

    /// A view resuming after `given` offsets; `followed` shards missing from them start
    /// at their beginning.
    pub(super) fn resume<'a>(
        filter: Filter,
        given: &BTreeMap<String, i64>,
        followed: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let offsets = followed
            .into_iter()
            .map(|shard| (shard.clone(), given.get(shard).copied().unwrap_or(0)))
            .collect();
        Self::new(filter, offsets, true)
    }

    fn new(filter: Filter, offsets: BTreeMap<String, i64>, resumed: bool) -> Self {
        Self {
            filter,
            offsets,
            sent: HashSet::new(),
            resumed,
            withheld: HashSet::new(),
        }
    }

    pub(super) fn offset(&self, shard: &str) -> i64 {
        self.offsets.get(shard).copied().unwrap_or(0)
    }

    pub(super) fn live(&self) -> Live {
        Live {
            live: true,
            offset: self.offsets.clone(),
        }
    }

    pub(super) fn events(&self, events: Vec<EventView>) -> Events {
        Events {
            events,
            offset: self.offsets.clone(),
        }
    }

    /// What `tx`, read from `shard`, tells the client: nothing when none of its events is
    /// for it.
    pub(super) fn transaction(&mut self, shard: &str, tx: &Transaction) -> Option<Events> {
        self.offsets.insert(shard.to_owned(), tx.offset);
        let events: Vec<EventView> = tx
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Created(c) => self.created(c),
                Event::Archived(a) => self.archived(a),
            })
            .collect();
        (!events.is_empty()).then(|| self.events(events))
    }

    fn created(&mut self, c: &Contract) -> Option<EventView> {
        if !self.filter.matches(&c.template_id, &c.payload) {
            if self.resumed {
                self.withheld.insert(c.contract_id.clone());
            }
            return None;
        }
        self.sent
            .insert(c.contract_id.clone())
            .then(|| EventView::Created(ContractView::from(c)))
    }

    fn archived(&mut self, a: &Archived) -> Option<EventView> {
        let send = self.sent.remove(&a.contract_id)
            || (self.resumed && !self.withheld.remove(&a.contract_id));
        send.then(|| EventView::Archived(ArchivedView::from(a)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shards() -> Vec<String> {
        vec!["shard-1".into(), "shard-2".into()]
    }

    fn contract(id: &str, owner: &str) -> Contract {
        Contract {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            package_id: "p".into(),
            payload: json!({"owner": owner}),
            signatories: vec!["bank".into()],
            observers: vec![owner.into()],
            key: None,
            witnesses: vec![],
            offset: 1,
            created_at: 0,
        }
    }

    fn archived(id: &str) -> Event {
        Event::Archived(Archived {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            witnesses: vec![],
        })
    }

    fn tx(offset: i64, events: Vec<Event>) -> Transaction {
        Transaction {
            update_id: format!("u{offset}"),
            command_id: String::new(),
            workflow_id: String::new(),
            offset,
            effective_at: 0,
            events,
        }
    }

    fn ids(events: &Events) -> Vec<String> {
        events
            .events
            .iter()
            .map(|e| match e {
                EventView::Created(c) => format!("+{}", c.contract_id),
                EventView::Archived(a) => format!("-{}", a.contract_id),
            })
            .collect()
    }

    /// Owned by alice: the filter `{"owner": "alice"}` compiles to.
    fn alice() -> Filter {
        let fields = crate::filter::Fields::from([("owner".to_owned(), ordo_ledger::Type::Party)]);
        let types = BTreeMap::from([("iou:Iou".to_owned(), std::sync::Arc::new(fields))]);
        let query = json!({"owner": "alice"});
        Filter::compile(&[], query.as_object().expect("an object"), &types)
            .unwrap_or_else(|e| panic!("{}", e.message))
    }

    #[test]
    fn a_snapshot_sends_matching_contracts_once_and_their_archives() {
        let acs = |offset, contracts| ActiveContracts { offset, contracts };
        let (mut view, events) = View::snapshot(
            alice(),
            vec![
                (
                    "shard-1".into(),
                    acs(5, vec![contract("c1", "alice"), contract("c2", "bob")]),
                ),
                // c1 again, from the other shard hosting the caller's parties.
                ("shard-2".into(), acs(9, vec![contract("c1", "alice")])),
            ],
        );
        let live = view.live();
        assert_eq!(ids(&view.events(events)), ["+c1"]);
        assert_eq!(
            live.offset,
            BTreeMap::from([("shard-1".into(), 5), ("shard-2".into(), 9)])
        );
        // c2 did not match: its archive is not sent; nor is a create that does not match.
        let t = tx(
            6,
            vec![
                archived("c2"),
                Event::Created(contract("c3", "bob")),
                archived("c1"),
                Event::Created(contract("c4", "alice")),
            ],
        );
        let sent = view.transaction("shard-1", &t).expect("events");
        assert_eq!(ids(&sent), ["-c1", "+c4"]);
        assert_eq!(
            sent.offset,
            BTreeMap::from([("shard-1".into(), 6), ("shard-2".into(), 9)])
        );
        // The same transaction seen from shard-2: nothing new, but the offset moves.
        assert!(
            view.transaction("shard-2", &tx(10, t.events.clone()))
                .is_none()
        );
        assert_eq!(view.offset("shard-2"), 10);
    }

    #[test]
    fn a_resumed_view_sends_archives_of_contracts_it_did_not_see_created() {
        let given = BTreeMap::from([("shard-2".into(), 17)]);
        let followed = shards();
        let mut view = View::resume(alice(), &given, &followed);
        assert_eq!(
            view.live().offset,
            BTreeMap::from([("shard-1".into(), 0), ("shard-2".into(), 17)])
        );
        let t = tx(
            18,
            vec![
                Event::Created(contract("c5", "bob")),
                // Created before the resumed offset: the client may hold it.
                archived("c0"),
            ],
        );
        assert_eq!(
            ids(&view.transaction("shard-2", &t).expect("events")),
            ["-c0"]
        );
        // c5 was seen not to match: its archive is not sent.
        assert!(
            view.transaction("shard-2", &tx(19, vec![archived("c5")]))
                .is_none()
        );
        assert_eq!(view.offset("shard-2"), 19);
    }
}
