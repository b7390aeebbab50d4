//! JSON read strictly, for every request body ([`super::Body`] parses through it): an object
//! that gives a key twice is refused (serde_json keeps the last value, so `{"qty":1,"qty":2}`
//! would buy 2 while a proxy or log reading the first value saw 1), and a number written with
//! a zero fraction (`15.0`) is the integer it denotes, as JSON Schema (and so `openapi.json`)
//! reads it.
//!
//! Owns only the reading of the JSON text; never decides what a field means. serde_json's
//! nesting limit (128) still applies: every nested value is read through the same
//! `deserialize_any`.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest magnitude up to which every integer is exactly an `f64` (2^53): a number with
/// a zero fraction beyond it may not be the integer its text says, so it stays a float (and a
/// field that wants an integer refuses it).
const EXACT_INTEGER_F64: f64 = 9_007_199_254_740_992.0;

/// A JSON value with no repeated key in any of its objects.
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrictValue, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_bool<E: Error>(self, b: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(b)))
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(n.into())))
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(n.into())))
    }

    fn visit_f64<E: Error>(self, f: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(
            number_of_f64(f).ok_or_else(|| E::custom("a number must be finite"))?,
        )))
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(s.to_string())))
    }

    fn visit_string<E: Error>(self, s: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "the key `{}` is given twice; give each key once",
                    super::super::error::short(&key)
                )));
            }
            let StrictValue(v) = map.next_value()?;
            fields.insert(key, v);
        }
        Ok(StrictValue(Value::Object(fields)))
    }
}

/// `f` as a JSON number: an integer when it has no fraction and is exactly representable,
/// else the float (None for NaN and infinities, which JSON text cannot hold anyway).
fn number_of_f64(f: f64) -> Option<Number> {
    if f.fract() == 0.0 && f.abs() <= EXACT_INTEGER_F64 {
        // Exact: |f| <= 2^53, no fraction. `-0.0` is 0.
        return Some(if f >= 0.0 {
            Number::from(f as u64)
        } else {
            Number::from(f as i64)
        });
    }
    Number::from_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Value, String> {
        serde_json::from_str::<StrictValue>(text)
            .map(|StrictValue(v)| v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        let e = read(r#"{"qty":1,"qty":2}"#).unwrap_err();
        assert!(e.contains("`qty` is given twice"), "{e}");
        let e = read(r#"{"a":[{"side":"sell","side":"buy"}]}"#).unwrap_err();
        assert!(e.contains("`side` is given twice"), "{e}");
        assert_eq!(
            read(r#"{"a":{"x":1},"b":{"x":2}}"#).unwrap(),
            serde_json::json!({"a": {"x": 1}, "b": {"x": 2}})
        );
    }

    #[test]
    fn a_number_with_a_zero_fraction_is_an_integer() {
        assert_eq!(read("15787.0").unwrap(), serde_json::json!(15787));
        assert_eq!(read("-3.0").unwrap(), serde_json::json!(-3));
        assert_eq!(read("-0.0").unwrap(), serde_json::json!(0));
        assert_eq!(read("1e3").unwrap(), serde_json::json!(1000));
        assert!(read("2.5").unwrap().is_f64());
        // Past 2^53 the text may not be the integer it looks like: it stays a float.
        assert!(read("1e300").unwrap().is_f64());
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"s":"x","n":null,"b":true,"a":[1,-2,"y"],"o":{}}"#;
        assert_eq!(
            read(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn nesting_is_still_limited() {
        let deep = "[".repeat(1_000) + &"]".repeat(1_000);
        assert!(read(&deep).unwrap_err().contains("recursion limit"));
    }
}
