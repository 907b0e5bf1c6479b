//! The query language of `/v1/query` and `/v1/stream/query` (Daml JSON API v1's): per
//! payload field, a value it must equal, or an object of operators — `%lt`, `%lte`, `%gt`,
//! `%gte` on ints, decimals, times and text, `%in` (a list of values) on any scalar field.
//!
//! A query is compiled against the queried templates' field types into a [`Filter`]:
//! per template, [`Condition`]s on the index keys of `cache::index` (a decimal compares
//! as a number, `"100.0"` equals `"100"`; a time as a time, whatever its offset), so that
//! the cache answers it with range scans of its index and a stream matches a contract with
//! the very same keys. Everything wrong with a query is a 400 naming the field.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use ordo_ledger::{Type, Value as LedgerValue};
use serde_json::{Map, Value};

use crate::cache::index::{self, NUMBER, TEXT};
use crate::error::ApiError;

/// A template's payload fields and their types.
pub type Fields = BTreeMap<String, Type>;

/// The earliest and latest times a comparison takes (Daml's range, 0001-01-01 to
/// 9999-12-31): within it the ledger's fixed-width form sorts as time does.
const MIN_TIME: i64 = -62_135_596_800_000_000;
const MAX_TIME: i64 = 253_402_300_799_999_999;

/// A compiled query: which contracts of which templates match.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// No conditions: every contract of these templates (empty: of every template).
    Any(Vec<String>),
    /// Per template, the conditions its contracts meet; templates lacking a queried field
    /// are not here (none of their contracts match).
    Conditions(BTreeMap<String, Vec<Condition>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub field: String,
    pub test: Test,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// The field has a key of `kind` in one of `ranges` (sorted, disjoint; none: no
    /// contract matches).
    Key {
        kind: &'static str,
        ranges: Vec<Range>,
    },
    /// The field's JSON equals this canonical JSON (records, lists, null).
    Json(Value),
}

/// Keys between two bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub lower: Bound<String>,
    pub upper: Bound<String>,
}

impl Range {
    fn point(key: String) -> Self {
        Self {
            lower: Bound::Included(key.clone()),
            upper: Bound::Included(key),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        let above = match &self.lower {
            Bound::Included(l) => key >= l.as_str(),
            Bound::Excluded(l) => key > l.as_str(),
            Bound::Unbounded => true,
        };
        let below = match &self.upper {
            Bound::Included(u) => key <= u.as_str(),
            Bound::Excluded(u) => key < u.as_str(),
            Bound::Unbounded => true,
        };
        above && below
    }

    fn is_empty(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        }
    }
}

impl Filter {
    /// Compiles `query` over `templates` (empty: every template in `types`), with `types`
    /// holding the field types of at least those templates.
    pub fn compile(
        templates: &[String],
        query: &Map<String, Value>,
        types: &BTreeMap<String, Arc<Fields>>,
    ) -> Result<Self, ApiError> {
        let mut templates: Vec<String> = templates.to_vec();
        templates.sort();
        templates.dedup();
        if query.is_empty() {
            return Ok(Filter::Any(templates));
        }
        let scope: Vec<(&String, &Arc<Fields>)> = if templates.is_empty() {
            types.iter().collect()
        } else {
            templates
                .iter()
                .filter_map(|t| types.get(t).map(|f| (t, f)))
                .collect()
        };
        let mut out: BTreeMap<String, Vec<Condition>> = scope
            .iter()
            .map(|(t, _)| ((*t).clone(), Vec::new()))
            .collect();
        for (field, value) in query {
            let mut known = false;
            for (template, fields) in &scope {
                let Some(ty) = fields.get(field) else {
                    out.remove(*template);
                    continue;
                };
                known = true;
                let test = test(ty, value).map_err(|why| {
                    ApiError::bad_request(format!(
                        "invalid field `query.{field}` ({ty} in {template}): {why}"
                    ))
                })?;
                if let Some(conditions) = out.get_mut(*template) {
                    conditions.push(Condition {
                        field: field.clone(),
                        test,
                    });
                }
            }
            if !known {
                let names: Vec<&str> = scope.iter().map(|(t, _)| t.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown field `query.{field}`: no queried template has it ({})",
                    if names.is_empty() {
                        "no template is known".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        }
        Ok(Filter::Conditions(out))
    }

    /// Whether a contract of `template` with `payload` matches (as the cache's index
    /// would say).
    pub fn matches(&self, template: &str, payload: &Value) -> bool {
        match self {
            Filter::Any(templates) => {
                templates.is_empty() || templates.iter().any(|t| t == template)
            }
            Filter::Conditions(by_template) => by_template
                .get(template)
                .is_some_and(|conditions| conditions.iter().all(|c| c.matches(payload))),
        }
    }
}

impl Condition {
    fn matches(&self, payload: &Value) -> bool {
        let value = payload.get(&self.field).unwrap_or(&Value::Null);
        match &self.test {
            Test::Json(expected) => value == expected,
            Test::Key { kind, ranges } => index::field_keys(value)
                .iter()
                .any(|(k, key)| k == kind && ranges.iter().any(|r| r.contains(key))),
        }
    }
}

const OPERATORS: &str = "%lt, %lte, %gt, %gte or %in";

/// The test a query value makes of a field of type `ty`.
fn test(ty: &Type, value: &Value) -> Result<Test, String> {
    let inner = match ty {
        Type::Optional(inner) => inner.as_ref(),
        other => other,
    };
    match value {
        Value::Object(ops) if ops.keys().any(|k| k.starts_with('%')) => {
            if let Some(plain) = ops.keys().find(|k| !k.starts_with('%')) {
                return Err(format!(
                    "an object of operators ({OPERATORS}) cannot also hold `{plain}`"
                ));
            }
            operators(inner, ops)
        }
        Value::Null if matches!(ty, Type::Optional(_)) => Ok(Test::Json(Value::Null)),
        _ => match key(inner, value) {
            Some(found) => {
                let (kind, key) = found?;
                Ok(Test::Key {
                    kind,
                    ranges: vec![Range::point(key)],
                })
            }
            // Records, lists, unit: equal to the value as the ledger writes it.
            None => LedgerValue::from_json(ty, value)
                .map(|v| Test::Json(v.to_json()))
                .map_err(|e| e.to_string()),
        },
    }
}

fn operators(ty: &Type, ops: &Map<String, Value>) -> Result<Test, String> {
    if let Some(unknown) = ops
        .keys()
        .find(|op| !["%lt", "%lte", "%gt", "%gte", "%in"].contains(&op.as_str()))
    {
        return Err(format!("unknown operator `{unknown}`: use {OPERATORS}"));
    }
    if let Some(list) = ops.get("%in") {
        if ops.len() > 1 {
            return Err("`%in` cannot be combined with other operators".into());
        }
        let Value::Array(items) = list else {
            return Err(format!("`%in` takes a list of values, got {list}"));
        };
        let mut kind = TEXT;
        let mut keys = Vec::new();
        for item in items {
            let (k, key) = key(ty, item)
                .ok_or_else(|| format!("`%in` applies to scalar fields, not a {ty}"))??;
            kind = k;
            keys.push(key);
        }
        keys.sort();
        keys.dedup();
        return Ok(Test::Key {
            kind,
            ranges: keys.into_iter().map(Range::point).collect(),
        });
    }
    if !matches!(ty, Type::Int | Type::Decimal | Type::Time | Type::Text) {
        let op = ops.keys().next().map(String::as_str).unwrap_or("%lt");
        return Err(format!(
            "`{op}` compares ints, decimals, times and text, not a {ty}"
        ));
    }
    let mut range = Range {
        lower: Bound::Unbounded,
        upper: Bound::Unbounded,
    };
    let mut kind = TEXT;
    for (op, operand) in ops {
        let (k, key) = key(ty, operand).ok_or("unreachable: a scalar type")??;
        kind = k;
        let (bound, slot, other) = match op.as_str() {
            "%gt" => (Bound::Excluded(key), &mut range.lower, "%gte"),
            "%gte" => (Bound::Included(key), &mut range.lower, "%gt"),
            "%lt" => (Bound::Excluded(key), &mut range.upper, "%lte"),
            _ => (Bound::Included(key), &mut range.upper, "%lt"),
        };
        if *slot != Bound::Unbounded {
            return Err(format!("give `{op}` or `{other}`, not both"));
        }
        *slot = bound;
    }
    let ranges = if range.is_empty() {
        vec![]
    } else {
        vec![range]
    };
    Ok(Test::Key { kind, ranges })
}

/// The index key of `value` as a field of scalar type `ty` (checked as the ledger checks
/// values); `None` for a type that has no key (records, lists, unit, optionals inside).
fn key(ty: &Type, value: &Value) -> Option<Result<(&'static str, String), String>> {
    let typed = || LedgerValue::from_json(ty, value).map_err(|e| e.to_string());
    let keyed = match ty {
        Type::Party | Type::Text | Type::ContractId(_) | Type::Bool => typed().map(|v| {
            let text = match v.to_json() {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (TEXT, text)
        }),
        Type::Int | Type::Decimal => typed().and_then(|v| {
            let text = match v.to_json() {
                Value::String(s) => s,
                other => other.to_string(),
            };
            index::numeric_key(&text)
                .map(|k| (NUMBER, k))
                .ok_or_else(|| format!("{text} is out of range"))
        }),
        Type::Time => typed().and_then(|v| match v {
            LedgerValue::Time(t) if (MIN_TIME..=MAX_TIME).contains(&t) => match v.to_json() {
                Value::String(s) => Ok((TEXT, s)),
                other => Err(format!("unexpected time {other}")),
            },
            _ => Err(format!(
                "{value} is outside the times a query compares (years 0001 to 9999)"
            )),
        }),
        _ => return None,
    };
    Some(keyed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn types() -> BTreeMap<String, Arc<Fields>> {
        let iou: Fields = [
            ("issuer", Type::Party),
            ("owner", Type::Party),
            ("currency", Type::Text),
            ("amount", Type::Decimal),
            ("count", Type::Int),
            ("due", Type::Time),
            ("paid", Type::Bool),
            ("note", Type::Optional(Box::new(Type::Text))),
            ("tags", Type::List(Box::new(Type::Text))),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_owned(), t))
        .collect();
        let other: Fields = [("amount".to_owned(), Type::Text)].into_iter().collect();
        BTreeMap::from([
            ("iou:Iou".to_owned(), Arc::new(iou)),
            ("x:Other".to_owned(), Arc::new(other)),
        ])
    }

    fn compile(templates: &[&str], query: Value) -> Result<Filter, String> {
        let templates: Vec<String> = templates.iter().map(|t| (*t).to_owned()).collect();
        Filter::compile(&templates, query.as_object().expect("an object"), &types()).map_err(|e| {
            assert_eq!(e.code, "INVALID_ARGUMENT", "{}", e.message);
            e.message
        })
    }

    fn iou(amount: &str) -> Value {
        json!({"issuer": "bank", "owner": "alice", "currency": "USD", "amount": amount,
               "count": 3, "due": "2026-01-02T03:04:05.000000Z", "paid": false,
               "note": null, "tags": ["a"]})
    }

    #[test]
    fn comparisons_match_by_value() {
        let f = compile(
            &["iou:Iou"],
            json!({"amount": {"%gte": "100.0", "%lt": 200}}),
        )
        .unwrap();
        for (amount, hit) in [
            ("99.99", false),
            ("100", true),
            ("150.5", true),
            ("200", false),
        ] {
            assert_eq!(f.matches("iou:Iou", &iou(amount)), hit, "{amount}");
        }
        assert!(!f.matches("x:Other", &iou("150")));
        let eq = compile(&["iou:Iou"], json!({"amount": "150.50"})).unwrap();
        assert!(eq.matches("iou:Iou", &iou("150.5")));
        let due = compile(
            &["iou:Iou"],
            json!({"due": {"%gt": "2026-01-02T04:04:04+01:00"}, "count": {"%lte": "3"}}),
        )
        .unwrap();
        assert!(due.matches("iou:Iou", &iou("1")));
        let text = compile(
            &["iou:Iou"],
            json!({"currency": {"%gte": "EUR", "%lt": "USD"}}),
        );
        assert!(!text.unwrap().matches("iou:Iou", &iou("1")));
        let within = compile(
            &["iou:Iou"],
            json!({"currency": {"%in": ["USD", "EUR", "USD"]}}),
        )
        .unwrap();
        assert!(within.matches("iou:Iou", &iou("1")));
        let Filter::Conditions(c) = &within else {
            panic!("{within:?}")
        };
        assert!(matches!(&c["iou:Iou"][0].test, Test::Key { ranges, .. } if ranges.len() == 2));
        let parties = compile(&[], json!({"owner": {"%in": ["alice"]}, "paid": false})).unwrap();
        assert!(parties.matches("iou:Iou", &iou("1")));
        let json = compile(&["iou:Iou"], json!({"tags": ["a"], "note": null})).unwrap();
        assert!(json.matches("iou:Iou", &iou("1")));
        let empty = compile(&["iou:Iou"], json!({"amount": {"%gt": "5", "%lt": "5"}})).unwrap();
        assert!(!empty.matches("iou:Iou", &iou("5")));
    }

    #[test]
    fn templates_without_the_field_drop_out_and_types_are_per_template() {
        let f = compile(&[], json!({"count": 3})).unwrap();
        let Filter::Conditions(c) = &f else {
            panic!("{f:?}")
        };
        assert_eq!(c.keys().collect::<Vec<_>>(), ["iou:Iou"]);
        // `amount` is a decimal in one template and text in the other.
        let f = compile(&[], json!({"amount": {"%gte": "9"}})).unwrap();
        assert!(f.matches("iou:Iou", &iou("10")));
        assert!(!f.matches("x:Other", &json!({"amount": "10"})));
        assert!(f.matches("x:Other", &json!({"amount": "90"})));
        assert_eq!(
            compile(&["iou:Iou"], json!({})).unwrap(),
            Filter::Any(vec!["iou:Iou".into()])
        );
    }

    #[test]
    fn bad_queries_name_the_field_and_what_is_wrong() {
        for (query, needle) in [
            (json!({"amount": {"%gtx": "1"}}), "unknown operator `%gtx`"),
            (json!({"owner": {"%gte": "alice"}}), "not a party"),
            (json!({"paid": {"%lt": true}}), "not a bool"),
            (json!({"amount": {"%gte": "ten"}}), "invalid decimal"),
            (json!({"amount": {"%gte": true}}), "query.amount"),
            (json!({"count": {"%lt": "1.5"}}), "query.count"),
            (json!({"due": {"%lt": "yesterday"}}), "RFC 3339"),
            (
                json!({"due": {"%lt": "0000-01-01T00:00:00Z"}}),
                "years 0001 to 9999",
            ),
            (json!({"nope": 1}), "unknown field `query.nope`"),
            (json!({"currency": {"%in": "USD"}}), "takes a list"),
            (
                json!({"currency": {"%in": ["USD"], "%lt": "X"}}),
                "cannot be combined",
            ),
            (json!({"amount": {"%gt": "1", "%gte": "2"}}), "not both"),
            (
                json!({"amount": {"%gt": "1", "x": "2"}}),
                "cannot also hold `x`",
            ),
            (json!({"tags": {"%in": [["a"]]}}), "scalar fields"),
            (json!({"owner": "not a party!"}), "invalid party"),
        ] {
            let e = compile(&["iou:Iou"], query.clone()).unwrap_err();
            assert!(e.contains(needle), "{query}: {e}");
        }
    }
}
