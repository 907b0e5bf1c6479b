//! Reading a query's answer from the cache a page at a time, with index scans only.
//!
//! The answer is cut into *segments*, each one scan of a primary key in key order: per
//! party of the caller (sorted), per template, and (with conditions) per range of the
//! condition driving it. A segment scans `contract_fields` over its range of the driving
//! field's keys, or, without conditions, `contract_parties` over the party's contracts;
//! further conditions are checked per contract through `contract_fields_of_contract`.
//! A page resumes after a [`Cursor`] (segment, key, row id) and reads at most one row more
//! than it answers, so its cost is the page's size, however large the answer: a party with
//! 100,000 contracts is served in pages, never all in memory.
//!
//! A contract that several of the caller's parties see, or that two shards store, is
//! answered once: in the segment of the first of those parties.

use std::ops::Bound;
use std::path::Path;

use ordo_ledger_client::Contract;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::CacheError;
use crate::filter::{Condition, Filter, Range, Test};

/// Where a page ended: the next one starts after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    segment: usize,
    key: String,
    id: i64,
}

impl Cursor {
    /// The cursor as an opaque page token, bound to `scope` (the query and parties it is
    /// of).
    pub fn token(&self, scope: &str) -> String {
        let text = serde_json::json!([scope, self.segment, self.key, self.id]).to_string();
        hex::encode(text)
    }

    /// The cursor of `token`; why it is no token of `scope`.
    pub fn from_token(token: &str, scope: &str) -> Result<Self, String> {
        let bad = || "not a page token this gateway gave".to_owned();
        let bytes = hex::decode(token).map_err(|_| bad())?;
        let (given, segment, key, id): (String, usize, String, i64) =
            serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if given != scope {
            return Err(
                "the page token is of another query (or another token's parties): send the \
                 query of the page it came with"
                    .into(),
            );
        }
        Ok(Self { segment, key, id })
    }
}

/// Contracts of an answer, and where the next page starts (none: this was the last).
#[derive(Debug)]
pub struct Page {
    pub contracts: Vec<Contract>,
    pub next: Option<Cursor>,
}

/// One read transaction over the file: its pages are of one state of the cache.
pub struct Snapshot {
    tx: Transaction<'static, Sqlite>,
    file: std::path::PathBuf,
}

/// One index scan of an answer.
struct Segment<'a> {
    /// Index into the caller's parties (sorted).
    party: usize,
    template: Option<&'a str>,
    conditions: &'a [Condition],
    /// The condition whose index rows are scanned, and the range of its keys.
    driver: Option<(usize, &'a Range)>,
}

impl Snapshot {
    pub(super) fn new(tx: Transaction<'static, Sqlite>, file: std::path::PathBuf) -> Self {
        Self { tx, file }
    }

    /// Up to `size` (at least 1) contracts that `parties` see and `filter` matches,
    /// after `from`.
    pub async fn page(
        &mut self,
        parties: &[String],
        filter: &Filter,
        from: Option<&Cursor>,
        size: usize,
    ) -> Result<Page, CacheError> {
        let mut parties = parties.to_vec();
        parties.sort();
        parties.dedup();
        let segments = segments(&parties, filter);
        let size = size.max(1);
        let mut rows: Vec<(Cursor, String)> = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            if from.is_some_and(|c| i < c.segment) {
                continue;
            }
            let want = size + 1 - rows.len();
            if want == 0 {
                break;
            }
            let after = from.filter(|c| c.segment == i);
            let mut q = scan(segment, &parties, after, want);
            let found = q
                .build()
                .fetch_all(&mut *self.tx)
                .await
                .map_err(|e| CacheError::sqlite(&self.file, e))?;
            for row in found {
                let read = |name| row.try_get::<String, _>(name);
                let cursor = Cursor {
                    segment: i,
                    key: read("k").map_err(|e| CacheError::sqlite(&self.file, e))?,
                    id: row
                        .try_get("id")
                        .map_err(|e| CacheError::sqlite(&self.file, e))?,
                };
                let text = read("contract").map_err(|e| CacheError::sqlite(&self.file, e))?;
                rows.push((cursor, text));
            }
        }
        let next = (rows.len() > size).then(|| {
            rows.truncate(size);
            rows.last().map(|(c, _)| c.clone())
        });
        let contracts = rows
            .iter()
            .map(|(_, text)| contract(text, &self.file))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            contracts,
            next: next.flatten(),
        })
    }
}

pub(super) fn contract(text: &str, file: &Path) -> Result<Contract, CacheError> {
    serde_json::from_str(text).map_err(|e| CacheError::File {
        file: file.to_owned(),
        reason: format!("a stored contract does not parse: {e}"),
    })
}

/// The segments of an answer, in the order pages go through them.
fn segments<'a>(parties: &[String], filter: &'a Filter) -> Vec<Segment<'a>> {
    let mut out = Vec::new();
    for party in 0..parties.len() {
        match filter {
            Filter::Any(templates) if templates.is_empty() => out.push(Segment {
                party,
                template: None,
                conditions: &[],
                driver: None,
            }),
            Filter::Any(templates) => out.extend(templates.iter().map(|t| Segment {
                party,
                template: Some(t),
                conditions: &[],
                driver: None,
            })),
            Filter::Conditions(by_template) => {
                for (template, conditions) in by_template {
                    let keyed = |c: &&Condition| matches!(c.test, Test::Key { .. });
                    // A condition no key meets: nothing of the template matches.
                    if conditions
                        .iter()
                        .any(|c| matches!(&c.test, Test::Key { ranges, .. } if ranges.is_empty()))
                    {
                        continue;
                    }
                    let segment = |driver| Segment {
                        party,
                        template: Some(template),
                        conditions,
                        driver,
                    };
                    match conditions.iter().position(|c| keyed(&c)) {
                        Some(i) => {
                            if let Test::Key { ranges, .. } = &conditions[i].test {
                                out.extend(ranges.iter().map(|r| segment(Some((i, r)))));
                            }
                        }
                        None => out.push(segment(None)),
                    }
                }
            }
        }
    }
    out
}

/// `AND column >= lower AND column < upper`, as the range's bounds say.
fn push_range(q: &mut QueryBuilder<Sqlite>, column: &str, range: &Range) {
    match &range.lower {
        Bound::Included(l) => q.push(format!(" AND {column} >= ")).push_bind(l.clone()),
        Bound::Excluded(l) => q.push(format!(" AND {column} > ")).push_bind(l.clone()),
        Bound::Unbounded => q,
    };
    match &range.upper {
        Bound::Included(u) => q.push(format!(" AND {column} <= ")).push_bind(u.clone()),
        Bound::Excluded(u) => q.push(format!(" AND {column} < ")).push_bind(u.clone()),
        Bound::Unbounded => q,
    };
}

/// The statement scanning `segment` after `after`, for at most `limit` rows of
/// `(k, id, contract)` in `(k, id)` order.
fn scan(
    segment: &Segment<'_>,
    parties: &[String],
    after: Option<&Cursor>,
    limit: usize,
) -> QueryBuilder<Sqlite> {
    let party = parties[segment.party].clone();
    let mut q = QueryBuilder::new("");
    let (position, order) = match (segment.driver, segment.template) {
        (Some((i, range)), Some(template)) => {
            let Test::Key { kind, .. } = &segment.conditions[i].test else {
                unreachable!("a driving condition has keys")
            };
            q.push(
                "SELECT f.key AS k, c.id AS id, c.contract AS contract FROM contract_fields f \
                 JOIN contracts c ON c.id = f.id WHERE f.party = ",
            )
            .push_bind(party)
            .push(" AND f.template_id = ")
            .push_bind(template.to_owned())
            .push(" AND f.field = ")
            .push_bind(segment.conditions[i].field.clone())
            .push(" AND f.kind = ")
            .push_bind(*kind);
            push_range(&mut q, "f.key", range);
            ("(f.key, f.id)", "f.key, f.id")
        }
        (_, template) => {
            q.push(
                "SELECT p.template_id AS k, c.id AS id, c.contract AS contract \
                 FROM contract_parties p JOIN contracts c ON c.id = p.id WHERE p.party = ",
            )
            .push_bind(party);
            if let Some(t) = template {
                q.push(" AND p.template_id = ").push_bind(t.to_owned());
            }
            ("(p.template_id, p.id)", "p.template_id, p.id")
        }
    };
    if let Some(c) = after {
        q.push(format!(" AND {position} > ("))
            .push_bind(c.key.clone())
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    for (i, condition) in segment.conditions.iter().enumerate() {
        if segment.driver.is_some_and(|(d, _)| d == i) {
            continue;
        }
        match &condition.test {
            Test::Key { kind, ranges } => {
                q.push(
                    " AND EXISTS (SELECT 1 FROM contract_fields g WHERE g.id = c.id AND g.field = ",
                )
                .push_bind(condition.field.clone())
                .push(" AND g.kind = ")
                .push_bind(*kind)
                .push(" AND (");
                for (j, range) in ranges.iter().enumerate() {
                    q.push(if j == 0 { "(1" } else { " OR (1" });
                    push_range(&mut q, "g.key", range);
                    q.push(")");
                }
                q.push("))");
            }
            Test::Json(value) => {
                q.push(" AND (c.contract -> ")
                    .push_bind(format!("$.payload.\"{}\"", condition.field))
                    .push(") = json(")
                    .push_bind(value.to_string())
                    .push(")");
            }
        }
    }
    // Seen by an earlier party of the caller's (on this shard or another): answered there.
    if segment.party > 0 {
        q.push(
            " AND NOT EXISTS (SELECT 1 FROM contracts c2 JOIN contract_parties p2 \
             ON p2.id = c2.id WHERE c2.contract_id = c.contract_id \
             AND p2.template_id = c.template_id AND p2.party IN (",
        );
        let mut list = q.separated(", ");
        for p in &parties[..segment.party] {
            list.push_bind(p.clone());
        }
        q.push("))");
    }
    q.push(format!(" ORDER BY {order} LIMIT "))
        .push_bind(limit as i64);
    q
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use ordo_ledger::Type;
    use ordo_ledger_client::Event;
    use serde_json::{Value, json};

    use super::*;
    use crate::cache::Store;
    use crate::filter::Fields;

    fn iou(id: usize, witnesses: &[&str], amount: &str, currency: &str) -> Contract {
        Contract {
            contract_id: format!("c{id:03}"),
            template_id: "iou:Iou".into(),
            package_id: "p".into(),
            payload: json!({"issuer": "bank", "owner": witnesses[0], "currency": currency,
                            "amount": amount, "tags": [currency]}),
            signatories: vec!["bank".into()],
            observers: vec![],
            key: None,
            witnesses: witnesses.iter().map(|w| (*w).to_owned()).collect(),
            offset: id as i64,
            created_at: 0,
        }
    }

    fn filter(query: Value) -> Filter {
        let fields: Fields = [
            ("issuer", Type::Party),
            ("owner", Type::Party),
            ("currency", Type::Text),
            ("amount", Type::Decimal),
            ("tags", Type::List(Box::new(Type::Text))),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_owned(), t))
        .collect();
        let types = BTreeMap::from([("iou:Iou".to_owned(), Arc::new(fields))]);
        Filter::compile(&[], query.as_object().expect("object"), &types)
            .unwrap_or_else(|e| panic!("{}", e.message))
    }

    /// Every page of the answer, `size` at a time, through page tokens.
    async fn pages(store: &Store, parties: &[&str], f: &Filter, size: usize) -> Vec<String> {
        let parties: Vec<String> = parties.iter().map(|p| (*p).to_owned()).collect();
        let mut out = Vec::new();
        let mut from: Option<Cursor> = None;
        loop {
            let mut snapshot = store.snapshot().await.unwrap();
            let page = snapshot
                .page(&parties, f, from.as_ref(), size)
                .await
                .unwrap();
            assert!(page.contracts.len() <= size);
            out.extend(page.contracts.into_iter().map(|c| c.contract_id));
            match page.next {
                Some(next) => {
                    let token = next.token("s");
                    from = Some(Cursor::from_token(&token, "s").unwrap());
                    assert!(Cursor::from_token(&token, "other").is_err());
                }
                None => return out,
            }
        }
    }

    #[tokio::test]
    async fn conditions_are_index_scans_answered_in_pages_each_contract_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("cache.sqlite")).await.unwrap();
        let currencies = ["USD", "EUR", "CHF"];
        // Amounts 0.5, 1, 1.5, …, 30 (as the ledger writes them), alice's; every fifth
        // also seen by carol; and one of bob's on shard-2 that alice's c001 also is.
        let contracts: Vec<Contract> = (1..=60)
            .map(|i| {
                let amount = format!("{}", i as f64 / 2.0);
                let witnesses: &[&str] = if i % 5 == 0 {
                    &["alice", "carol"]
                } else {
                    &["alice"]
                };
                iou(i, witnesses, &amount, currencies[i % 3])
            })
            .collect();
        store
            .replace_shard("shard-1", 60, &contracts)
            .await
            .unwrap();
        let copy = Contract {
            witnesses: vec!["bob".into()],
            ..contracts[0].clone()
        };
        store
            .apply("shard-2", 3, &[Event::Created(copy)])
            .await
            .unwrap();

        let expected = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
            (1..=60)
                .filter(|i| pred(*i))
                .map(|i| format!("c{i:03}"))
                .collect()
        };
        let range = filter(json!({"amount": {"%gte": "10.0", "%lt": 20}}));
        for size in [1, 3, 7, 100] {
            let mut got = pages(&store, &["alice"], &range, size).await;
            got.sort();
            assert_eq!(
                got,
                expected(&|i| (20..40).contains(&i)),
                "page size {size}"
            );
        }
        let both = filter(json!({"amount": {"%gt": "25"}, "currency": {"%in": ["EUR", "USD"]}}));
        let mut got = pages(&store, &["alice", "carol"], &both, 4).await;
        got.sort();
        assert_eq!(got, expected(&|i| i > 50 && i % 3 != 2));
        // Equality on a decimal compares values; on a list, the JSON.
        let eq = filter(json!({"amount": "7.50", "tags": ["USD"]}));
        assert_eq!(pages(&store, &["alice"], &eq, 10).await, ["c015"]);
        // c001 is alice's on shard-1 and bob's on shard-2: answered once; carol's
        // contracts are alice's too.
        let all = pages(&store, &["carol", "bob", "alice"], &Filter::Any(vec![]), 7).await;
        assert_eq!(all.len(), 60);
        let none = filter(json!({"amount": {"%gt": "5", "%lte": "4"}}));
        assert!(pages(&store, &["alice"], &none, 10).await.is_empty());
        // Archived contracts leave the index.
        store
            .apply(
                "shard-1",
                61,
                &[Event::Archived(ordo_ledger_client::Archived {
                    contract_id: "c020".into(),
                    template_id: "iou:Iou".into(),
                    witnesses: vec![],
                })],
            )
            .await
            .unwrap();
        let mut got = pages(&store, &["alice"], &range, 5).await;
        got.sort();
        assert_eq!(got, expected(&|i| (21..40).contains(&i)));

        // The scan is the primary key's, in its order: no sort of the answer.
        let parties = vec!["alice".to_owned()];
        let segs = segments(&parties, &both);
        let q = scan(&segs[0], &parties, None, 10);
        let sql = format!("EXPLAIN QUERY PLAN {}", q.sql().as_str());
        let mut explain = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in ["alice", "iou:Iou", "amount", "n"] {
            explain = explain.bind(value);
        }
        let plan: Vec<String> = explain
            .bind(crate::cache::index::numeric_key("25").unwrap())
            .bind("currency")
            .bind("t")
            .bind("EUR")
            .bind("EUR")
            .bind("USD")
            .bind("USD")
            .bind(10i64)
            .fetch_all(&store.pool_for_tests())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains("SEARCH f USING PRIMARY KEY"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        store.close().await;
    }
}
