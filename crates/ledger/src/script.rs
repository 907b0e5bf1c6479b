//! The sandboxed Rhai engine that runs template expressions and choice bodies, and the
//! conversions between ledger values and Rhai values.
//!
//! Determinism and sandboxing: the engine starts from `Engine::new_raw()` plus the standard
//! library without clock (`no_time`), modules (`no_module`) or floats (`no_float`; float
//! literals parse as decimals); `print`/`debug` are swallowed; `try` and `eval` are disabled so
//! that ledger errors cannot be caught; data sizes and call depth are bounded and a step
//! counter shared by every script of a transaction enforces `Limits::max_operations`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use ordo_core::PartyId;
use rhai::packages::{Package as _, StandardPackage};
use rhai::{AST, Array, CallFnOptions, Dynamic, Engine, Map, Module, Scope, Shared};
use rust_decimal::Decimal;

use crate::LedgerError;
use crate::types::{ContractId, Type};
use crate::value::{Value, party};

/// Every script is wrapped in a function of this name so that `this` can be bound (Rhai only
/// allows `this` inside functions); the wrapper keeps line numbers intact.
const ENTRY: &str = "__ordo_entry";

pub(crate) const MAX_CALL_LEVELS: usize = 16;
const MAX_STRING: usize = 64 * 1024;
const MAX_ARRAY: usize = 10_000;
const MAX_MAP: usize = 1_000;

/// A compiled script with its source (kept for error messages and inspection).
#[derive(Clone, Debug)]
pub struct Script {
    pub source: String,
    ast: AST,
}

impl Script {
    /// Compiles `source`; the error is Rhai's message with line and column.
    pub fn compile(source: &str) -> Result<Script, String> {
        Self::compile_over(source, "arg")
    }

    /// Compiles `source` with its argument named `param` instead of `arg` (a key's
    /// maintainers are a script over `key`).
    pub fn compile_over(source: &str, param: &str) -> Result<Script, String> {
        let wrapped = format!("fn {ENTRY}({param}) {{ {source}\n}}");
        let ast = compile_engine()
            .compile(&wrapped)
            .map_err(|e| e.to_string())?;
        Ok(Script {
            source: source.to_owned(),
            ast,
        })
    }

    /// Runs the script with `this` and `arg` bound.
    pub(crate) fn run(
        &self,
        engine: &Engine,
        this: &Dynamic,
        arg: &Dynamic,
    ) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let mut this = this.clone();
        let options = CallFnOptions::new()
            .eval_ast(false)
            .rewind_scope(true)
            .bind_this_ptr(&mut this);
        engine.call_fn_with_options(options, &mut Scope::new(), &self.ast, ENTRY, (arg.clone(),))
    }
}

fn std_module() -> Shared<Module> {
    static STD: OnceLock<Shared<Module>> = OnceLock::new();
    STD.get_or_init(|| StandardPackage::new().as_shared_module())
        .clone()
}

/// An engine with the sandbox applied and no ledger functions; the interpreter registers
/// `create`, `exercise`, `fetch`, `archive` and `abort` on top.
pub(crate) fn sandboxed_engine() -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(std_module());
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.disable_symbol("try");
    engine.disable_symbol("eval");
    engine.set_fail_on_invalid_map_property(true);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(MAX_STRING);
    engine.set_max_array_size(MAX_ARRAY);
    engine.set_max_map_size(MAX_MAP);
    engine.set_max_variables(1_000);
    engine.set_max_functions(100);
    engine
}

fn compile_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = sandboxed_engine();
        // Register the ledger functions' names so that compile-time checks see them.
        register_stubs(&mut engine);
        engine
    })
}

fn register_stubs(engine: &mut Engine) {
    engine.register_fn("create", |_: &str, _: Map| String::new());
    engine.register_fn("exercise", |_: &str, _: &str, _: Map| Dynamic::UNIT);
    engine.register_fn("fetch", |_: &str| Map::new());
    engine.register_fn("archive", |_: &str| ());
    engine.register_fn("abort", |_: &str| Dynamic::UNIT);
}

/// A ledger value as a Rhai value: parties, text and contract ids as strings, times as
/// microseconds (`INT`), optionals as `()` or the value, records as object maps.
pub fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Unit | Value::Optional(None) => Dynamic::UNIT,
        Value::Party(p) => p.as_str().into(),
        Value::Text(s) => s.as_str().into(),
        Value::Int(i) | Value::Time(i) => Dynamic::from_int(*i),
        Value::Decimal(d) => Dynamic::from_decimal(*d),
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::ContractId(c) => c.to_string().into(),
        Value::Optional(Some(v)) => to_dynamic(v),
        Value::List(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Record(fields) => Dynamic::from_map(
            fields
                .iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect(),
        ),
    }
}

/// A Rhai value as a ledger value of type `ty`, in canonical form; errors name `path`.
pub fn from_dynamic(d: &Dynamic, ty: &Type, path: &str) -> Result<Value, LedgerError> {
    let d = d.clone().flatten();
    let wrong = || LedgerError::type_error(path, format!("expected {ty}, got {}", describe(&d)));
    let string = || d.clone().into_immutable_string().map_err(|_| wrong());
    Ok(match ty {
        Type::Unit if d.is_unit() => Value::Unit,
        Type::Unit => return Err(wrong()),
        Type::Party => Value::Party(party(&string()?, path)?),
        Type::Text => Value::Text(string()?.to_string()),
        Type::Int => Value::Int(d.as_int().map_err(|_| wrong())?),
        Type::Time => Value::Time(d.as_int().map_err(|_| wrong())?),
        Type::Decimal => match (d.as_decimal(), d.as_int()) {
            (Ok(x), _) => Value::Decimal(x.normalize()),
            (_, Ok(i)) => Value::Decimal(Decimal::from(i)),
            _ => return Err(wrong()),
        },
        Type::Bool => Value::Bool(d.as_bool().map_err(|_| wrong())?),
        Type::ContractId(_) => {
            let s = string()?;
            Value::ContractId(s.parse::<ContractId>().map_err(|_| {
                LedgerError::type_error(path, format!("invalid contract id {:?}", s.as_str()))
            })?)
        }
        Type::Optional(_) if d.is_unit() => Value::Optional(None),
        Type::Optional(inner) => Value::Optional(Some(Box::new(from_dynamic(&d, inner, path)?))),
        Type::List(inner) => {
            let items = d.clone().into_array().map_err(|_| wrong())?;
            Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| from_dynamic(x, inner, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(fields) => {
            let map = d.clone().try_cast::<Map>().ok_or_else(wrong)?;
            if let Some(unknown) = map.keys().find(|k| !fields.contains_key(k.as_str())) {
                return Err(LedgerError::type_error(
                    &format!("{path}.{unknown}"),
                    "unknown field",
                ));
            }
            let mut out = BTreeMap::new();
            for (name, fty) in fields {
                let fpath = format!("{path}.{name}");
                let v = match (map.get(name.as_str()), fty) {
                    (Some(x), _) => from_dynamic(x, fty, &fpath)?,
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
    })
}

/// A party or an array of parties (signatories, observers, controllers).
pub(crate) fn parties_from_dynamic(d: &Dynamic) -> Result<BTreeSet<PartyId>, String> {
    let d = d.clone().flatten();
    let one = |x: &Dynamic| -> Result<PartyId, String> {
        let s = x
            .clone()
            .flatten()
            .into_immutable_string()
            .map_err(|_| format!("expected a party, got {}", describe(x)))?;
        PartyId::new(&s).map_err(|_| format!("invalid party id {:?}", s.as_str()))
    };
    if d.is_array() {
        let items: Array = d.clone().into_array().map_err(|e| e.to_string())?;
        items.iter().map(one).collect()
    } else if d.is_unit() {
        Ok(BTreeSet::new())
    } else {
        Ok(BTreeSet::from([one(&d)?]))
    }
}

/// A short description of a Rhai value for error messages.
pub(crate) fn describe(d: &Dynamic) -> String {
    let s = d.to_string();
    let shown = if s.len() > 40 {
        let cut = (0..=40).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    };
    format!(
        "{} {shown}",
        d.type_name().rsplit("::").next().unwrap_or("value")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, this: Dynamic) -> Result<Dynamic, String> {
        let engine = sandboxed_engine();
        Script::compile(src)?
            .run(&engine, &this, &Dynamic::UNIT)
            .map_err(|e| e.to_string())
    }

    fn record(pairs: &[(&str, Value)]) -> Value {
        Value::Record(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn decimal_literals_and_arithmetic() {
        let this = to_dynamic(&record(&[(
            "amount",
            Value::Decimal(Decimal::new(1005, 1)),
        )]));
        assert!(
            run("this.amount > 0.0", this.clone())
                .unwrap()
                .as_bool()
                .unwrap()
        );
        assert!(
            run("this.amount > 0", this.clone())
                .unwrap()
                .as_bool()
                .unwrap()
        );
        let d = run("this.amount - 0.5", this.clone()).unwrap();
        assert_eq!(d.as_decimal().unwrap(), Decimal::from(100));
        let d = run("let x = 0.1 + 0.2; x", this).unwrap();
        assert_eq!(d.as_decimal().unwrap(), Decimal::new(3, 1));
    }

    #[test]
    fn sandbox_rejects_escape_hatches() {
        for src in [
            "try { 1 } catch { 2 }",
            "eval(\"1\")",
            "import \"x\" as y; 1",
            "1.0e0_f32",
        ] {
            assert!(
                Script::compile(src).is_err() || run(src, Dynamic::UNIT).is_err(),
                "{src}"
            );
        }
        assert!(run("timestamp()", Dynamic::UNIT).is_err());
        assert!(
            run("print(\"x\"); debug(1); 7", Dynamic::UNIT)
                .unwrap()
                .as_int()
                == Ok(7)
        );
        let too_long = run("let s = \"x\"; loop { s += s; }", Dynamic::UNIT).unwrap_err();
        assert!(
            too_long.contains("too large") || too_long.contains("Length"),
            "{too_long}"
        );
        let overflow = run("9223372036854775807 + 1", Dynamic::UNIT).unwrap_err();
        assert!(overflow.contains("overflow"), "{overflow}");
    }

    #[test]
    fn values_round_trip_through_dynamic() {
        let ty = Type::parse("{ p: party, n: int, d: decimal, o: optional<text>, l: list<bool> }")
            .unwrap();
        let v = record(&[
            ("p", Value::Party(PartyId::new("alice").unwrap())),
            ("n", Value::Int(3)),
            ("d", Value::Decimal(Decimal::new(25, 1))),
            ("o", Value::Optional(None)),
            ("l", Value::List(vec![Value::Bool(true)])),
        ]);
        assert_eq!(from_dynamic(&to_dynamic(&v), &ty, "x").unwrap(), v);
        let err = from_dynamic(
            &run("#{ p: \"alice\", n: 1, d: true, l: [] }", Dynamic::UNIT).unwrap(),
            &ty,
            "payload",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload.d: expected decimal, got bool true"
        );
        let err = from_dynamic(
            &run("#{ p: \"alice\", n: 1, d: 1, l: [], zz: 1 }", Dynamic::UNIT).unwrap(),
            &ty,
            "payload",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "payload.zz: unknown field");
    }
}
