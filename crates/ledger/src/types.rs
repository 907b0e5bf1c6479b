//! Identifiers (contract, package and template ids) and the types of ledger values.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ordo_core::Hash;
use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// A contract id: the content hash of the creating node (see `interpret`), shown as 64
/// lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContractId(pub Hash);

/// A package id: the SHA-256 of the package file's bytes, as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageId(pub Hash);

macro_rules! hex_id {
    ($t:ident, $what:literal) => {
        impl $t {
            pub fn as_hash(&self) -> &Hash {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.to_hex())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), self.0.to_hex())
            }
        }
        impl FromStr for $t {
            type Err = LedgerError;
            fn from_str(s: &str) -> Result<Self, LedgerError> {
                let lower_hex = s.len() == 64
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                match s.parse::<Hash>() {
                    Ok(h) if lower_hex => Ok(Self(h)),
                    _ => Err(LedgerError::InvalidIdentifier {
                        what: $what,
                        value: s.to_owned(),
                        reason: "expected 64 lower-case hex digits",
                    }),
                }
            }
        }
        impl TryFrom<String> for $t {
            type Error = LedgerError;
            fn try_from(s: String) -> Result<Self, LedgerError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.to_string()
            }
        }
    };
}
hex_id!(ContractId, "contract id");
hex_id!(PackageId, "package id");

impl PackageId {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Hash::of(bytes))
    }
}

/// A template, written `package:Template` (`iou:Iou`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateId {
    pub package_name: String,
    pub template: String,
}

impl TemplateId {
    pub fn new(package_name: &str, template: &str) -> Result<Self, LedgerError> {
        check_package_name(package_name)?;
        check_template_name(template)?;
        Ok(Self {
            package_name: package_name.to_owned(),
            template: template.to_owned(),
        })
    }
}

/// `[a-z][a-z0-9_-]*`, at most 64 bytes.
pub fn check_package_name(name: &str) -> Result<(), LedgerError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    ok.then_some(())
        .ok_or_else(|| LedgerError::InvalidIdentifier {
            what: "package name",
            value: name.to_owned(),
            reason: "use [a-z][a-z0-9_-]*, at most 64 characters",
        })
}

/// `[A-Z][A-Za-z0-9_]*`, at most 64 bytes. Choice names follow the same rule.
pub fn check_template_name(name: &str) -> Result<(), LedgerError> {
    check_upper_ident(name, "template name")
}

pub(crate) fn check_upper_ident(name: &str, what: &'static str) -> Result<(), LedgerError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(())
        .ok_or_else(|| LedgerError::InvalidIdentifier {
            what,
            value: name.to_owned(),
            reason: "use [A-Z][A-Za-z0-9_]*, at most 64 characters",
        })
}

/// Record field names: `[A-Za-z_][A-Za-z0-9_]*`, so that scripts can write `this.field`.
pub(crate) fn check_field_name(name: &str) -> Result<(), LedgerError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(())
        .ok_or_else(|| LedgerError::InvalidIdentifier {
            what: "field name",
            value: name.to_owned(),
            reason: "use [A-Za-z_][A-Za-z0-9_]*, at most 64 characters",
        })
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.package_name, self.template)
    }
}

impl fmt::Debug for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateId({self})")
    }
}

impl FromStr for TemplateId {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, LedgerError> {
        match s.split_once(':') {
            Some((p, t)) => Self::new(p, t),
            None => Err(LedgerError::InvalidIdentifier {
                what: "template id",
                value: s.to_owned(),
                reason: "expected `package:Template`, e.g. `iou:Iou`",
            }),
        }
    }
}

impl TryFrom<String> for TemplateId {
    type Error = LedgerError;
    fn try_from(s: String) -> Result<Self, LedgerError> {
        s.parse()
    }
}

impl From<TemplateId> for String {
    fn from(t: TemplateId) -> String {
        t.to_string()
    }
}

/// The type of a ledger value. No floats: amounts are 28-digit decimals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Type {
    Unit,
    Party,
    Text,
    Int,
    Decimal,
    Bool,
    /// Microseconds since the Unix epoch.
    Time,
    /// Optionally of a named template: `Iou` (same package) or `pkg:Iou`.
    ContractId(Option<String>),
    Optional(Box<Type>),
    List(Box<Type>),
    Record(BTreeMap<String, Type>),
}

impl Type {
    /// Parses the type syntax of package files: `party`, `text`, `int`, `decimal`, `bool`,
    /// `time`, `unit`, `contract_id`, `contract_id<Iou>`, `optional<T>`, `list<T>` and inline
    /// records `{ a: int, b: list<text> }`.
    pub fn parse(s: &str) -> Result<Type, String> {
        let mut p = TypeParser { s, pos: 0 };
        let ty = p.parse_type()?;
        p.skip_ws();
        if p.pos != s.len() {
            return Err(format!(
                "unexpected {:?} after the type in {s:?}",
                &s[p.pos..]
            ));
        }
        Ok(ty)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Unit => f.write_str("unit"),
            Type::Party => f.write_str("party"),
            Type::Text => f.write_str("text"),
            Type::Int => f.write_str("int"),
            Type::Decimal => f.write_str("decimal"),
            Type::Bool => f.write_str("bool"),
            Type::Time => f.write_str("time"),
            Type::ContractId(None) => f.write_str("contract_id"),
            Type::ContractId(Some(t)) => write!(f, "contract_id<{t}>"),
            Type::Optional(t) => write!(f, "optional<{t}>"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Record(fields) => {
                f.write_str("{ ")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {t}")?;
                }
                f.write_str(" }")
            }
        }
    }
}

struct TypeParser<'a> {
    s: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with([' ', '\t', '\n']) {
            self.pos += 1;
        }
    }

    /// A name; `qualified` admits `pkg:Template` (with `-` in the package name).
    fn ident(&mut self, qualified: bool) -> &str {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.s[start..];
        let len = rest
            .find(|c: char| {
                !(c.is_ascii_alphanumeric() || c == '_' || (qualified && (c == ':' || c == '-')))
            })
            .unwrap_or(rest.len());
        self.pos += len;
        &self.s[start..start + len]
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.skip_ws();
        if self.s[self.pos..].starts_with(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{c}` at offset {} in {:?}",
                self.pos, self.s
            ))
        }
    }

    fn peek(&mut self, c: char) -> bool {
        self.skip_ws();
        self.s[self.pos..].starts_with(c)
    }

    fn parse_type(&mut self) -> Result<Type, String> {
        if self.peek('{') {
            return self.parse_record();
        }
        let name = self.ident(false).to_owned();
        let ty = match name.as_str() {
            "unit" => Type::Unit,
            "party" => Type::Party,
            "text" => Type::Text,
            "int" => Type::Int,
            "decimal" => Type::Decimal,
            "bool" => Type::Bool,
            "time" => Type::Time,
            "contract_id" => {
                if self.peek('<') {
                    self.expect('<')?;
                    let t = self.ident(true).to_owned();
                    let (pkg, tpl) = match t.split_once(':') {
                        Some((p, tpl)) => (Some(p), tpl),
                        None => (None, t.as_str()),
                    };
                    if let Some(p) = pkg {
                        check_package_name(p).map_err(|e| e.to_string())?;
                    }
                    check_template_name(tpl).map_err(|e| e.to_string())?;
                    self.expect('>')?;
                    Type::ContractId(Some(t))
                } else {
                    Type::ContractId(None)
                }
            }
            "optional" | "list" => {
                self.expect('<')?;
                let inner = Box::new(self.parse_type()?);
                self.expect('>')?;
                if name == "list" {
                    Type::List(inner)
                } else {
                    Type::Optional(inner)
                }
            }
            "" => return Err(format!("expected a type in {:?}", self.s)),
            other => {
                return Err(format!(
                    "unknown type {other:?}: use party, text, int, decimal, bool, time, unit, \
                     contract_id, contract_id<T>, optional<T>, list<T> or {{ field: T, .. }}"
                ));
            }
        };
        Ok(ty)
    }

    fn parse_record(&mut self) -> Result<Type, String> {
        self.expect('{')?;
        let mut fields = BTreeMap::new();
        while !self.peek('}') {
            let name = self.ident(false).to_owned();
            check_field_name(&name).map_err(|e| e.to_string())?;
            self.expect(':')?;
            let ty = self.parse_type()?;
            if fields.insert(name.clone(), ty).is_some() {
                return Err(format!("duplicate field {name:?} in {:?}", self.s));
            }
            if !self.peek('}') {
                self.expect(',')?;
            }
        }
        self.expect('}')?;
        Ok(Type::Record(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        assert_eq!(Type::parse("party"), Ok(Type::Party));
        assert_eq!(
            Type::parse("list<optional<contract_id<Iou>>>"),
            Ok(Type::List(Box::new(Type::Optional(Box::new(
                Type::ContractId(Some("Iou".into()))
            )))))
        );
        let rec = Type::parse("{ a: int, b: list<text> }").unwrap();
        assert_eq!(rec.to_string(), "{ a: int, b: list<text> }");
        for bad in [
            "float",
            "list<int",
            "list<int>>",
            "{ a int }",
            "contract_id<iou>",
            "",
        ] {
            assert!(Type::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn template_ids_round_trip() {
        let t: TemplateId = "iou:Iou".parse().unwrap();
        assert_eq!(t.package_name, "iou");
        assert_eq!(t.to_string(), "iou:Iou");
        for bad in ["iou", "Iou:Iou", "iou:iou", "iou:", ":Iou", "i o:Iou"] {
            assert!(bad.parse::<TemplateId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contract_ids_are_lower_hex() {
        let h = Hash::of(b"x");
        let cid = ContractId(h);
        assert_eq!(cid.to_string().parse::<ContractId>().unwrap(), cid);
        assert!(
            cid.to_string()
                .to_uppercase()
                .parse::<ContractId>()
                .is_err()
        );
        assert!("abc".parse::<ContractId>().is_err());
    }
}
