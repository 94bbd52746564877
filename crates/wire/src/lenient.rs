//! Numbers sent as strings, read as the service's JSON reader reads them.
//!
//! The service takes `"targetDedicatedNodes": "2"` (the `az batch` CLI
//! sends its numeric arguments so) as the number 2, wherever a property is
//! an integer or a number. [`Lenient`] wraps a serde deserializer: where
//! the type being read asks for a number and the JSON has a string that
//! reads as one, the number is handed on; everything else (and every
//! nested value, to any depth) goes through as it came. So every typed
//! read of a request body gets this in one place, without a rule per
//! property.
//!
//! A document kept much as sent (a pool, a schedule's `jobSpecification`)
//! is also read typed; [`adopt_numbers`] then writes the numbers the
//! typed read found back into the kept text's tree, so the stored document
//! holds numbers, not the strings the client sent.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use std::cell::Cell;
use std::fmt;

thread_local! {
    static COERCED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (a deserialization on this thread) and tells whether it read a
/// number from a string anywhere.
pub fn tracking<R>(f: impl FnOnce() -> R) -> (R, bool) {
    let before = COERCED.with(|c| c.replace(false));
    let r = f();
    let coerced = COERCED.with(|c| c.replace(before));
    (r, coerced)
}

/// A deserializer that reads numeric strings where numbers are expected.
pub struct Lenient<D>(pub D);

/// The number a string stands for, as the service reads it: an integer, or
/// a finite decimal number; no surrounding blanks.
fn number_of(s: &str) -> Option<Number> {
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = s.parse::<i64>() {
            return Some(Number::I(n));
        }
        if let Ok(n) = s.trim_start_matches('+').parse::<u64>() {
            return Some(Number::U(n));
        }
    }
    let valid = digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.');
    match s.parse::<f64>() {
        Ok(f) if valid && f.is_finite() => Some(Number::F(f)),
        _ => None,
    }
}

enum Number {
    I(i64),
    U(u64),
    F(f64),
}

/// The visitor of a number: takes a numeric string too.
struct Num<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Num<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.0.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        self.0.visit_i64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.0.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.0.visit_f64(v)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<V::Value, E> {
        match number_of(s) {
            Some(n) => {
                COERCED.with(|c| c.set(true));
                match n {
                    Number::I(n) => self.0.visit_i64(n),
                    Number::U(n) => self.0.visit_u64(n),
                    Number::F(n) => self.0.visit_f64(n),
                }
            }
            None => self.0.visit_str(s),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Seq(a))
    }
    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map(a))
    }
}

/// A visitor whose nested values are read leniently too.
struct Wrap<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.0.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        self.0.visit_i64(v)
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<V::Value, E> {
        self.0.visit_i128(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.0.visit_u64(v)
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<V::Value, E> {
        self.0.visit_u128(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.0.visit_f64(v)
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<V::Value, E> {
        self.0.visit_char(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_str(v)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.0.visit_borrowed_str(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.0.visit_string(v)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.0.visit_bytes(v)
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.0.visit_borrowed_bytes(v)
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.0.visit_byte_buf(v)
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Lenient(d))
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Lenient(d))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Seq(a))
    }
    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Map(a))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Enum(a))
    }
}

/// A seed whose value is read leniently.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Lenient(d))
    }
}

struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0.variant_seed(seed).map(|(v, a)| (v, Variant(a)))
    }
}

struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(v))
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], v: V) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap(v))
    }
}

macro_rules! numbers {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_any(Num(v))
        }
    )*};
}

macro_rules! wrapped {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$m(Wrap(v))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Lenient<D> {
    type Error = D::Error;
    numbers!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64
    );
    wrapped!(
        deserialize_any,
        deserialize_bool,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );
    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap(v))
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap(v))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap(v))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, name: &'static str, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrap(v))
    }
    fn deserialize_struct<V: Visitor<'de>>(self, name: &'static str, fields: &'static [&'static str], v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Wrap(v))
    }
    fn deserialize_enum<V: Visitor<'de>>(self, name: &'static str, variants: &'static [&'static str], v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap(v))
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Writes the numbers of `typed` (a typed read of `raw`, serialized) over
/// the strings at the same places in `raw`. Returns whether anything changed.
pub fn adopt_numbers(raw: &mut serde_json::Value, typed: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (raw, typed) {
        (r @ Value::String(_), Value::Number(n)) => {
            *r = Value::Number(n.clone());
            true
        }
        (Value::Object(r), Value::Object(t)) => {
            let mut changed = false;
            for (k, tv) in t {
                if let Some(rv) = r.get_mut(k) {
                    changed |= adopt_numbers(rv, tv);
                }
            }
            changed
        }
        (Value::Array(r), Value::Array(t)) => {
            let mut changed = false;
            for (rv, tv) in r.iter_mut().zip(t) {
                changed |= adopt_numbers(rv, tv);
            }
            changed
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        count: Option<u32>,
        ratio: Option<f64>,
        name: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        priority: Option<i32>,
        items: Vec<Inner>,
        nested: Option<Inner>,
        flag: Option<bool>,
    }

    fn read<T: for<'de> Deserialize<'de>>(text: &str) -> (Result<T, serde_json::Error>, bool) {
        tracking(|| T::deserialize(Lenient(&mut serde_json::Deserializer::from_str(text))))
    }

    #[test]
    fn numeric_strings_are_numbers_at_any_depth() {
        let (o, coerced) = read::<Outer>(
            r#"{"priority": "-5", "items": [{"count": "3", "ratio": "0.5", "name": "7"}], "nested": {"count": 4}, "flag": true}"#,
        );
        let o = o.unwrap();
        assert!(coerced);
        assert_eq!(o.priority, Some(-5));
        assert_eq!(o.items[0], Inner { count: Some(3), ratio: Some(0.5), name: Some("7".into()) });
        assert_eq!(o.nested.unwrap().count, Some(4));
        let (o, coerced) = read::<Outer>(r#"{"priority": 1, "items": []}"#);
        assert_eq!(o.unwrap().priority, Some(1));
        assert!(!coerced, "nothing was a string");
    }

    #[test]
    fn what_is_not_a_number_stays_an_error() {
        for bad in [
            r#"{"priority": "five", "items": []}"#,
            r#"{"priority": " 5", "items": []}"#,
            r#"{"priority": "", "items": []}"#,
            r#"{"priority": "5.5", "items": []}"#,
            r#"{"priority": "99999999999", "items": []}"#,
            r#"{"priority": "NaN", "items": []}"#,
            r#"{"priority": 1, "items": [{"count": "-1"}]}"#,
            r#"{"priority": 1, "items": [], "flag": "true"}"#,
            r#"{"priority": 1, "items": [{"ratio": "inf"}]}"#,
        ] {
            assert!(read::<Outer>(bad).0.is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_adopted_into_the_kept_tree() {
        let mut raw = serde_json::json!({"a": "2", "b": {"c": ["3", "x"], "keep": "4"}, "s": "5"});
        let typed = serde_json::json!({"a": 2, "b": {"c": [3, "x"]}, "s": "5"});
        assert!(adopt_numbers(&mut raw, &typed));
        assert_eq!(raw, serde_json::json!({"a": 2, "b": {"c": [3, "x"], "keep": "4"}, "s": "5"}));
        assert!(!adopt_numbers(&mut raw, &typed));
    }
}
