//! The keys a contract's payload fields are indexed by in the cache (`contract_fields`),
//! so that `/v1/query` conditions (`%lt`, `%gte`, `%in`, equality) are range scans of an
//! SQLite index, not a filter over every contract of the party.
//!
//! The keys are computed from the payload's JSON alone, without the template's field
//! types (the feeds write without knowing them); a query, which knows the field's type,
//! picks which kind of key to compare:
//!
//! - [`TEXT`]: a string as it is (text, parties, contract ids, and times, which the ledger
//!   writes in one fixed-width form, `2026-01-02T03:04:05.000006Z`, whose byte order is
//!   time order for the years 0001–9999), and a boolean as `true` / `false`;
//! - [`NUMBER`]: an integer, or a string that is a plain decimal number (`-12.5`), as the
//!   order-preserving text of [`numeric_key`], so that decimals of any precision (the
//!   ledger's 28 significant digits) compare exactly, by SQLite's byte order.
//!
//! Records, lists and nulls get no key: equality on them is checked on the stored JSON.

use serde_json::Value;

/// The kind of a key (`contract_fields.kind`).
pub const TEXT: &str = "t";
/// The pseudo-field a contract's key is indexed under (as [`TEXT`], its canonical JSON):
/// no template field is named so, so no query reaches it; `/v1/fetch` by key does.
pub const KEY_FIELD: &str = "@key";
pub const NUMBER: &str = "n";

/// The exponents (of the first significant digit) a numeric key can hold; any ledger
/// value is well inside (decimals have at most 28 digits, ints 19).
const MAX_EXPONENT: i64 = 4999;

/// The index keys of one field's value: `(kind, key)` pairs.
pub fn field_keys(value: &Value) -> Vec<(&'static str, String)> {
    match value {
        Value::String(s) => {
            let mut keys = vec![(TEXT, s.clone())];
            if let Some(n) = numeric_key(s) {
                keys.push((NUMBER, n));
            }
            keys
        }
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| numeric_key(&i.to_string()))
            .map(|k| vec![(NUMBER, k)])
            .unwrap_or_default(),
        Value::Bool(b) => vec![(TEXT, b.to_string())],
        Value::Null | Value::Array(_) | Value::Object(_) => Vec::new(),
    }
}

/// A text whose byte order is the numeric order of plain decimal numbers (`-0.5`, `12`,
/// `3.140`), exactly, whatever their number of digits; `None` for anything else (signs
/// other than a leading `-`, exponents, empty parts like `.5` or `5.`).
///
/// With the number written as `0.d₁d₂…dₙ × 10^e` (`d₁` ≠ 0, `dₙ` ≠ 0): zero is `1`; a
/// positive number `2`, then `e` as four digits (offset by 5000), then its digits; a
/// negative number `0`, then `9999 - (e + 5000)`, then each digit's complement (9 - d),
/// then `~` (above every digit, so that of two negatives sharing leading digits the
/// longer, larger in magnitude, sorts first).
pub fn numeric_key(s: &str) -> Option<String> {
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    let frac = frac.unwrap_or("");
    let int = int.trim_start_matches('0');
    let (exponent, significant) = if int.is_empty() {
        let stripped = frac.trim_start_matches('0');
        (-((frac.len() - stripped.len()) as i64), stripped.to_owned())
    } else {
        (int.len() as i64, format!("{int}{frac}"))
    };
    match significant.trim_end_matches('0') {
        "" => Some("1".to_owned()),
        digits => encode(negative, exponent, digits),
    }
}

fn encode(negative: bool, exponent: i64, significant: &str) -> Option<String> {
    if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&exponent) {
        return None;
    }
    let biased = exponent + MAX_EXPONENT + 1;
    Some(if negative {
        let complement: String = significant
            .bytes()
            .map(|d| char::from(b'9' - (d - b'0')))
            .collect();
        format!("0{:04}{complement}~", 9999 - biased)
    } else {
        format!("2{biased:04}{significant}")
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_sort_by_value() {
        let sorted = [
            "-1000", "-999.99", "-12.5", "-12.49", "-12", "-1.23", "-1.2", "-0.5", "-0.05", "0",
            "0.05", "0.5", "1.2", "1.23", "12", "12.49", "12.5", "999.99", "1000",
        ];
        let keys: Vec<String> = sorted.iter().map(|s| numeric_key(s).unwrap()).collect();
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        // Equal values, written differently, have one key.
        for same in [["100", "100.000"], ["0.5", "000.50"], ["0", "-0.00"]] {
            assert_eq!(numeric_key(same[0]), numeric_key(same[1]), "{same:?}");
        }
    }

    #[test]
    fn only_plain_decimals_are_numbers() {
        for bad in [
            "", "-", ".5", "5.", "1e5", "+1", "1.2.3", "12a", " 1", "1,5", "٣",
        ] {
            assert_eq!(numeric_key(bad), None, "{bad:?}");
        }
        let huge = format!("1{}", "0".repeat(6000));
        assert_eq!(numeric_key(&huge), None);
    }

    #[test]
    fn field_values_get_text_and_number_keys() {
        let kinds = |v| {
            field_keys(&v)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(json!("alice")), [TEXT]);
        assert_eq!(kinds(json!("100.5")), [TEXT, NUMBER]);
        assert_eq!(kinds(json!(7)), [NUMBER]);
        assert_eq!(field_keys(&json!(true)), [(TEXT, "true".to_owned())]);
        assert!(kinds(json!(null)).is_empty());
        assert!(kinds(json!({"a": 1})).is_empty());
        assert!(kinds(json!([1])).is_empty());
        assert_eq!(field_keys(&json!(7))[0].1, numeric_key("7").unwrap());
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        // Up to 28 significant digits, up to 28 after the point, either sign.
        (any::<i128>(), 0u32..=28).prop_map(|(m, scale)| {
            let m = m % 10i128.pow(28);
            Decimal::from_i128_with_scale(m, scale)
        })
    }

    proptest! {
        #[test]
        fn the_key_order_is_the_decimal_order(a in decimal(), b in decimal()) {
            let (ka, kb) = (
                numeric_key(&a.to_string()).unwrap(),
                numeric_key(&b.to_string()).unwrap(),
            );
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b), "{} {} {} {}", a, b, ka, kb);
            // The ledger's normalized form has the same key.
            prop_assert_eq!(numeric_key(&a.normalize().to_string()).unwrap(), ka);
        }

        #[test]
        fn integers_keep_their_order(a in any::<i64>(), b in any::<i64>()) {
            let (ka, kb) = (
                numeric_key(&a.to_string()).unwrap(),
                numeric_key(&b.to_string()).unwrap(),
            );
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }
    }
}
