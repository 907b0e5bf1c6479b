//! Ledger values and their JSON codec for the APIs.
//!
//! Values are canonical: decimals are normalized (`1.50` is stored as `1.5`), records are
//! ordered maps, so that equal values have equal bytes and so equal contract ids.

use std::collections::BTreeMap;
use std::str::FromStr;

use ordo_core::{PartyId, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::LedgerError;
use crate::types::{ContractId, Type};

/// A ledger value. `Serialize`/`Deserialize` give the self-describing storage form
/// (`{"Party":"alice"}`); the API form, which needs the type to read, is
/// [`Value::from_json`] / [`Value::to_json`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Unit,
    Party(PartyId),
    Text(String),
    Int(i64),
    Decimal(Decimal),
    Bool(bool),
    /// Microseconds since the Unix epoch.
    Time(i64),
    ContractId(ContractId),
    Optional(Option<Box<Value>>),
    List(Vec<Value>),
    Record(BTreeMap<String, Value>),
}

impl Value {
    /// Reads the API's JSON form of a value of type `ty`; errors name the path from `value`.
    pub fn from_json(ty: &Type, json: &Json) -> Result<Value, LedgerError> {
        Self::from_json_at(ty, json, "value")
    }

    /// As [`Value::from_json`], with error paths starting at `path` (e.g. `payload`).
    pub fn from_json_at(ty: &Type, json: &Json, path: &str) -> Result<Value, LedgerError> {
        let wrong = |what: &str| {
            LedgerError::type_error(path, format!("expected {what}, got {}", short(json)))
        };
        Ok(match (ty, json) {
            (Type::Unit, Json::Null) => Value::Unit,
            (Type::Unit, Json::Object(m)) if m.is_empty() => Value::Unit,
            (Type::Unit, _) => return Err(wrong("unit ({} or null)")),
            (Type::Party, Json::String(s)) => Value::Party(party(s, path)?),
            (Type::Party, _) => return Err(wrong("a party id as a string")),
            (Type::Text, Json::String(s)) => Value::Text(s.clone()),
            (Type::Text, _) => return Err(wrong("text as a string")),
            (Type::Int, Json::Number(n)) => {
                Value::Int(n.as_i64().ok_or_else(|| wrong("a 64-bit integer"))?)
            }
            (Type::Int, Json::String(s)) => {
                Value::Int(s.parse::<i64>().map_err(|_| wrong("a 64-bit integer"))?)
            }
            (Type::Int, _) => return Err(wrong("an integer")),
            (Type::Decimal, Json::String(s)) => Value::Decimal(decimal(s, path)?),
            (Type::Decimal, Json::Number(n)) => match n.as_i64() {
                Some(i) => Value::Decimal(Decimal::from(i)),
                None => {
                    return Err(wrong(
                        "decimal as a string (fractional JSON numbers would lose precision)",
                    ));
                }
            },
            (Type::Decimal, _) => return Err(wrong("decimal as a string")),
            (Type::Bool, Json::Bool(b)) => Value::Bool(*b),
            (Type::Bool, _) => return Err(wrong("a boolean")),
            (Type::Time, Json::String(s)) => Value::Time(parse_time(s, path)?),
            (Type::Time, _) => return Err(wrong("time as an RFC 3339 string")),
            (Type::ContractId(_), Json::String(s)) => Value::ContractId(
                ContractId::from_str(s).map_err(|_| wrong("a contract id of 64 hex digits"))?,
            ),
            (Type::ContractId(_), _) => return Err(wrong("a contract id as a string")),
            (Type::Optional(_), Json::Null) => Value::Optional(None),
            (Type::Optional(inner), j) => {
                Value::Optional(Some(Box::new(Self::from_json_at(inner, j, path)?)))
            }
            (Type::List(inner), Json::Array(items)) => Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, j)| Self::from_json_at(inner, j, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            (Type::List(_), _) => return Err(wrong("a list as an array")),
            (Type::Record(fields), Json::Object(obj)) => {
                if let Some(unknown) = obj.keys().find(|k| !fields.contains_key(*k)) {
                    return Err(LedgerError::type_error(
                        &format!("{path}.{unknown}"),
                        "unknown field",
                    ));
                }
                let mut out = BTreeMap::new();
                for (name, fty) in fields {
                    let fpath = format!("{path}.{name}");
                    let v = match (obj.get(name), fty) {
                        (Some(j), _) => Self::from_json_at(fty, j, &fpath)?,
                        (None, Type::Optional(_)) => Value::Optional(None),
                        (None, _) => {
                            return Err(LedgerError::type_error(
                                &fpath,
                                format!("missing field of type {fty}"),
                            ));
                        }
                    };
                    out.insert(name.clone(), v);
                }
                Value::Record(out)
            }
            (Type::Record(_), _) => return Err(wrong("a record as an object")),
        })
    }

    /// The API's JSON form: parties, text, contract ids and decimals as strings, times as
    /// RFC 3339 UTC with microseconds, ints as numbers, optionals as null or the value.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Unit => Json::Object(Default::default()),
            Value::Party(p) => Json::String(p.to_string()),
            Value::Text(s) => Json::String(s.clone()),
            Value::Int(i) => Json::from(*i),
            Value::Decimal(d) => Json::String(d.to_string()),
            Value::Bool(b) => Json::Bool(*b),
            Value::Time(t) => Json::String(Timestamp(*t).to_string()),
            Value::ContractId(c) => Json::String(c.to_string()),
            Value::Optional(None) => Json::Null,
            Value::Optional(Some(v)) => v.to_json(),
            Value::List(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Checks that the value has type `ty` and returns its canonical form; errors name the
    /// path from `path`.
    pub fn conform(&self, ty: &Type, path: &str) -> Result<Value, LedgerError> {
        let wrong =
            || LedgerError::type_error(path, format!("expected {ty}, got {}", self.kind_name()));
        Ok(match (ty, self) {
            (Type::Unit, Value::Unit) => Value::Unit,
            (Type::Party, Value::Party(_))
            | (Type::Text, Value::Text(_))
            | (Type::Int, Value::Int(_))
            | (Type::Bool, Value::Bool(_))
            | (Type::Time, Value::Time(_))
            | (Type::ContractId(_), Value::ContractId(_)) => self.clone(),
            (Type::Decimal, Value::Decimal(d)) => Value::Decimal(d.normalize()),
            (Type::Optional(_), Value::Optional(None)) => Value::Optional(None),
            (Type::Optional(inner), Value::Optional(Some(v))) => {
                Value::Optional(Some(Box::new(v.conform(inner, path)?)))
            }
            (Type::List(inner), Value::List(items)) => Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.conform(inner, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            (Type::Record(fields), Value::Record(vals)) => {
                if let Some(unknown) = vals.keys().find(|k| !fields.contains_key(*k)) {
                    return Err(LedgerError::type_error(
                        &format!("{path}.{unknown}"),
                        "unknown field",
                    ));
                }
                let mut out = BTreeMap::new();
                for (name, fty) in fields {
                    let fpath = format!("{path}.{name}");
                    let v = match (vals.get(name), fty) {
                        (Some(v), _) => v.conform(fty, &fpath)?,
                        (None, Type::Optional(_)) => Value::Optional(None),
                        (None, _) => {
                            return Err(LedgerError::type_error(
                                &fpath,
                                format!("missing field of type {fty}"),
                            ));
                        }
                    };
                    out.insert(name.clone(), v);
                }
                Value::Record(out)
            }
            _ => return Err(wrong()),
        })
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Unit => "unit",
            Value::Party(_) => "party",
            Value::Text(_) => "text",
            Value::Int(_) => "int",
            Value::Decimal(_) => "decimal",
            Value::Bool(_) => "bool",
            Value::Time(_) => "time",
            Value::ContractId(_) => "contract_id",
            Value::Optional(_) => "optional",
            Value::List(_) => "list",
            Value::Record(_) => "record",
        }
    }

    /// A record's field, if this is a record that has it.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(fields) => fields.get(name),
            _ => None,
        }
    }
}

pub(crate) fn party(s: &str, path: &str) -> Result<PartyId, LedgerError> {
    PartyId::new(s).map_err(|_| {
        LedgerError::type_error(
            path,
            format!("invalid party id {s:?}: use 1 to 64 of [A-Za-z0-9_-]"),
        )
    })
}

fn decimal(s: &str, path: &str) -> Result<Decimal, LedgerError> {
    Decimal::from_str_exact(s.trim())
        .map(|d| d.normalize())
        .map_err(|e| {
            LedgerError::type_error(
                path,
                format!("invalid decimal {s:?}: {e} (at most 28 significant digits)"),
            )
        })
}

fn parse_time(s: &str, path: &str) -> Result<i64, LedgerError> {
    let bad = |why: &str| LedgerError::type_error(path, format!("invalid time {s:?}: {why}"));
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            bad(&format!(
                "expected RFC 3339, e.g. 2026-01-02T03:04:05.000006Z ({e})"
            ))
        })?;
    let nanos = t.unix_timestamp_nanos();
    if nanos % 1000 != 0 {
        return Err(bad("more precise than microseconds"));
    }
    i64::try_from(nanos / 1000).map_err(|_| bad("out of range"))
}

/// A short rendering of a JSON value for error messages.
fn short(json: &Json) -> String {
    let s = json.to_string();
    if s.len() > 40 {
        let cut = (0..=40).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn iou_type() -> Type {
        Type::parse("{ issuer: party, amount: decimal, note: optional<text>, at: time, n: int, tags: list<text> }").unwrap()
    }

    #[test]
    fn json_round_trip() {
        let j = json!({"issuer": "bank", "amount": "100.50", "at": "2026-01-02T03:04:05.000006Z", "n": "7", "tags": ["a"]});
        let v = Value::from_json_at(&iou_type(), &j, "payload").unwrap();
        assert_eq!(v.field("note"), Some(&Value::Optional(None)));
        assert_eq!(v.field("n"), Some(&Value::Int(7)));
        assert_eq!(
            v.to_json(),
            json!({"issuer": "bank", "amount": "100.5", "note": null, "at": "2026-01-02T03:04:05.000006Z", "n": 7, "tags": ["a"]})
        );
        let stored = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), v);
    }

    #[test]
    fn json_errors_name_the_path() {
        let ty = iou_type();
        let base = json!({"issuer": "bank", "amount": "1", "at": "2026-01-02T03:04:05Z", "n": 1, "tags": []});
        let cases = [
            (
                "amount",
                json!(true),
                "payload.amount: expected decimal as a string, got true",
            ),
            (
                "amount",
                json!(1.5),
                "payload.amount: expected decimal as a string (fractional JSON numbers would lose precision), got 1.5",
            ),
            (
                "issuer",
                json!("no spaces"),
                "payload.issuer: invalid party id \"no spaces\"",
            ),
            (
                "tags",
                json!(["a", 3]),
                "payload.tags[1]: expected text as a string, got 3",
            ),
            (
                "at",
                json!("yesterday"),
                "payload.at: invalid time \"yesterday\"",
            ),
            ("bogus", json!(1), "payload.bogus: unknown field"),
        ];
        for (field, val, msg) in cases {
            let mut j = base.clone();
            j[field] = val;
            let err = Value::from_json_at(&ty, &j, "payload")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(msg), "{err}");
        }
        let mut j = base.clone();
        j.as_object_mut().unwrap().remove("issuer");
        let err = Value::from_json_at(&ty, &j, "payload").unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload.issuer: missing field of type party"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        // integer JSON numbers are fine for decimals
        let mut j = base;
        j["amount"] = json!(5);
        assert!(Value::from_json_at(&ty, &j, "payload").is_ok());
    }

    #[test]
    fn conform_normalizes_and_checks() {
        let ty = Type::parse("{ a: decimal }").unwrap();
        let v = Value::Record([("a".into(), Value::Decimal(Decimal::new(1500, 3)))].into());
        let c = v.conform(&ty, "p").unwrap();
        assert_eq!(c.to_json(), serde_json::json!({"a": "1.5"}));
        let bad = Value::Record([("a".into(), Value::Int(1))].into());
        assert_eq!(
            bad.conform(&ty, "p").unwrap_err().to_string(),
            "p.a: expected decimal, got int"
        );
    }
}
