//! What one stream tells its client, decided from what it told it before (pure): the
//! snapshot's matching contracts, each transaction's matching creates and the archives of
//! contracts it sent (or, resumed, could hold). A stream matches one query, several
//! (multiplexed: each event names the queries it matches, `matchedQueries`), or contract
//! keys (`/v1/stream/fetch`).

use std::collections::{BTreeMap, HashMap, HashSet};

use ordo_ledger_client::{ActiveContracts, Archived, Contract, Event, Transaction};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{ArchivedView, ContractView, EventView};
use crate::filter::Filter;

/// `{"events": [...], "offset": {shard: offset}}`: contracts of the snapshot, or what one
/// transaction did.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Events {
    events: Vec<StreamEvent>,
    offset: BTreeMap<String, i64>,
}

/// One event of a stream: `{"created": …}` or `{"archived": …}`, and with several queries
/// the indices of those the contract matches (`"matchedQueries": [0, 2]`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamEvent {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    event: EventView,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_queries: Option<Vec<usize>>,
}

/// What a stream sends: contracts a query's filter matches, or those with a key.
#[derive(Debug)]
pub(super) enum Matcher {
    Query(Filter),
    /// A template and a key of it, in canonical form.
    Key {
        template: String,
        key: serde_json::Value,
    },
}

impl Matcher {
    fn matches(&self, c: &Contract) -> bool {
        match self {
            Self::Query(f) => f.matches(&c.template_id, &c.payload),
            Self::Key { template, key } => {
                c.template_id == *template && c.key.as_ref() == Some(key)
            }
        }
    }
}

/// A stream's matchers; `multiplexed` when the client sent a list (its events then carry
/// `matchedQueries`).
#[derive(Debug)]
pub(super) struct Queries {
    pub(super) matchers: Vec<Matcher>,
    pub(super) multiplexed: bool,
}

impl From<Filter> for Queries {
    fn from(filter: Filter) -> Self {
        Self {
            matchers: vec![Matcher::Query(filter)],
            multiplexed: false,
        }
    }
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
    queries: Queries,
    /// Per followed shard, the offset of the latest transaction read (or the snapshot's).
    offsets: BTreeMap<String, i64>,
    /// Contracts sent as created and not yet as archived, with the queries they matched:
    /// a contract on two of the caller's shards comes from each, and is sent once.
    sent: HashMap<String, Vec<usize>>,
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
        queries: impl Into<Queries>,
        shards: Vec<(String, ActiveContracts)>,
    ) -> (Self, Vec<StreamEvent>) {
        let mut view = Self::new(queries.into(), BTreeMap::new(), false);
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
        queries: impl Into<Queries>,
        given: &BTreeMap<String, i64>,
        followed: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let offsets = followed
            .into_iter()
            .map(|shard| (shard.clone(), given.get(shard).copied().unwrap_or(0)))
            .collect();
        Self::new(queries.into(), offsets, true)
    }

    fn new(queries: Queries, offsets: BTreeMap<String, i64>, resumed: bool) -> Self {
        Self {
            queries,
            offsets,
            sent: HashMap::new(),
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

    pub(super) fn events(&self, events: Vec<StreamEvent>) -> Events {
        Events {
            events,
            offset: self.offsets.clone(),
        }
    }

    /// What `tx`, read from `shard`, tells the client: nothing when none of its events is
    /// for it.
    pub(super) fn transaction(&mut self, shard: &str, tx: &Transaction) -> Option<Events> {
        self.offsets.insert(shard.to_owned(), tx.offset);
        let events: Vec<StreamEvent> = tx
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Created(c) => self.created(c),
                Event::Archived(a) => self.archived(a),
            })
            .collect();
        (!events.is_empty()).then(|| self.events(events))
    }

    fn event(&self, event: EventView, matched: Option<Vec<usize>>) -> StreamEvent {
        StreamEvent {
            event,
            matched_queries: matched.filter(|_| self.queries.multiplexed),
        }
    }

    fn created(&mut self, c: &Contract) -> Option<StreamEvent> {
        let matched: Vec<usize> = (self.queries.matchers.iter().enumerate())
            .filter(|(_, m)| m.matches(c))
            .map(|(i, _)| i)
            .collect();
        if matched.is_empty() {
            if self.resumed {
                self.withheld.insert(c.contract_id.clone());
            }
            return None;
        }
        if self.sent.contains_key(&c.contract_id) {
            return None;
        }
        self.sent.insert(c.contract_id.clone(), matched.clone());
        Some(self.event(EventView::Created(ContractView::from(c)), Some(matched)))
    }

    fn archived(&mut self, a: &Archived) -> Option<StreamEvent> {
        let matched = self.sent.remove(&a.contract_id);
        let send = matched.is_some() || (self.resumed && !self.withheld.remove(&a.contract_id));
        send.then(|| self.event(EventView::Archived(ArchivedView::from(a)), matched))
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
            .map(|e| match &e.event {
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

    /// Owned by `owner`, as a compiled query.
    fn owned_by(owner: &str) -> Matcher {
        let fields = crate::filter::Fields::from([("owner".to_owned(), ordo_ledger::Type::Party)]);
        let types = BTreeMap::from([("iou:Iou".to_owned(), std::sync::Arc::new(fields))]);
        let query = json!({ "owner": owner });
        Matcher::Query(
            Filter::compile(&[], query.as_object().expect("an object"), &types)
                .unwrap_or_else(|e| panic!("{}", e.message)),
        )
    }

    #[test]
    fn multiplexed_queries_name_the_queries_each_event_matches() {
        let everything = Matcher::Query(Filter::Any(Vec::new()));
        let queries = Queries {
            matchers: vec![owned_by("alice"), owned_by("bob"), everything],
            multiplexed: true,
        };
        let acs = ActiveContracts {
            offset: 3,
            contracts: vec![contract("c1", "alice"), contract("c2", "carol")],
        };
        let (mut view, events) = View::snapshot(queries, vec![("shard-1".into(), acs)]);
        let matched: Vec<_> = events.iter().map(|e| e.matched_queries.clone()).collect();
        assert_eq!(matched, [Some(vec![0, 2]), Some(vec![2])]);
        let sent = view
            .transaction(
                "shard-1",
                &tx(
                    4,
                    vec![Event::Created(contract("c3", "bob")), archived("c1")],
                ),
            )
            .expect("events");
        let json = serde_json::to_value(&sent).unwrap();
        assert_eq!(json["events"][0]["matchedQueries"], json!([1, 2]));
        assert_eq!(json["events"][0]["created"]["contractId"], "c3");
        // An archive names the queries its contract matched.
        assert_eq!(json["events"][1]["archived"]["contractId"], "c1");
        assert_eq!(json["events"][1]["matchedQueries"], json!([0, 2]));
        // One query: no matchedQueries.
        let (_, single) = View::snapshot(
            alice(),
            vec![(
                "shard-1".into(),
                ActiveContracts {
                    offset: 1,
                    contracts: vec![contract("c1", "alice")],
                },
            )],
        );
        let json = serde_json::to_value(&single[0]).unwrap();
        assert!(json.get("matchedQueries").is_none(), "{json}");
    }

    #[test]
    fn a_key_matcher_sends_the_contract_with_that_key_only() {
        let keyed = |id: &str, name: &str| Contract {
            key: Some(json!({ "authority": "reg", "name": name })),
            template_id: "registry:Name".into(),
            ..contract(id, "alice")
        };
        let key = json!({ "authority": "reg", "name": "ann" });
        let queries = Queries {
            matchers: vec![Matcher::Key {
                template: "registry:Name".into(),
                key,
            }],
            multiplexed: true,
        };
        let acs = ActiveContracts {
            offset: 1,
            contracts: vec![
                keyed("n1", "ann"),
                keyed("n2", "bo"),
                contract("c1", "alice"),
            ],
        };
        let (mut view, events) = View::snapshot(queries, vec![("shard-1".into(), acs)]);
        assert_eq!(ids(&view.events(events)), ["+n1"]);
        let t = tx(2, vec![archived("n1"), Event::Created(keyed("n3", "ann"))]);
        assert_eq!(
            ids(&view.transaction("shard-1", &t).expect("events")),
            ["-n1", "+n3"]
        );
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
