//! A request body's top-level JSON object with each member's value kept as
//! its raw text. Pools and job schedules are stored much as the client sent
//! them: their handlers parse only the members they check and write the
//! rest back as it came, instead of building a tree of the whole body
//! (`serde_json::Value` with ordered maps costs 20 to 40 times the body's
//! size; this costs about one more copy of it).

use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use wire::Error;

/// Members in their order; a repeated name keeps its first place and its
/// last value (as `serde_json::Map` does).
#[derive(Debug, Default)]
pub struct RawObject {
    members: Vec<(String, Box<RawValue>)>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawObject, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                let mut index: HashMap<String, usize> = HashMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    match index.get(&name) {
                        Some(&i) => members[i].1 = value,
                        None => {
                            index.insert(name.clone(), members.len());
                            members.push((name, value));
                        }
                    }
                }
                Ok(RawObject { members })
            }
        }
        d.deserialize_map(V)
    }
}

/// A raw value as a string, if it is one.
pub fn as_str(v: &RawValue) -> Option<String> {
    if v.get().starts_with('"') {
        serde_json::from_str(v.get()).ok()
    } else {
        None
    }
}

/// Whether a raw value is an object (not an array a struct would also take).
pub fn is_object(v: &RawValue) -> bool {
    v.get().starts_with('{')
}

impl RawObject {
    /// The members in order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.members.iter().map(|(n, v)| (n.as_str(), &**v))
    }

    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, v)| &**v)
    }

    /// A member that is present and not `null`.
    pub fn given(&self, name: &str) -> Option<&RawValue> {
        self.get(name).filter(|v| v.get() != "null")
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A string member (None when absent or not a string).
    pub fn str(&self, name: &str) -> Option<String> {
        self.get(name).and_then(as_str)
    }

    /// A member parsed as `T` (None when absent or null); a value of
    /// another shape is an invalid property.
    pub fn parse<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.given(name) {
            None => Ok(None),
            Some(v) => wire::validate::parse_member(name, v.get()).map(Some),
        }
    }

    /// Sets a member (in place when present, else last).
    pub fn set(&mut self, name: &str, value: &impl Serialize) {
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.set_raw(name, raw);
        }
    }

    /// Sets a member that is absent.
    pub fn set_default(&mut self, name: &str, value: &impl Serialize) {
        if !self.contains(name) {
            self.set(name, value);
        }
    }

    /// Sets a member to a raw value.
    pub fn set_raw(&mut self, name: &str, raw: Box<RawValue>) {
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some(m) => m.1 = raw,
            None => self.members.push((name.to_string(), raw)),
        }
    }

    /// Takes a member out.
    pub fn take(&mut self, name: &str) -> Option<Box<RawValue>> {
        let i = self.members.iter().position(|(n, _)| n == name)?;
        Some(self.members.remove(i).1)
    }

    pub fn remove(&mut self, name: &str) {
        self.members.retain(|(n, _)| n != name);
    }

    /// The object as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(2 + self.members.iter().map(|(n, v)| n.len() + v.get().len() + 4).sum::<usize>());
        out.push('{');
        for (i, (n, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(n).unwrap_or_default());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_kept_as_sent() {
        // (parse_body refuses repeated names; the type alone keeps the last.)
        assert!(wire::validate::parse_body::<RawObject>(br#"{"id": "p", "id": "q"}"#).is_err());
        let mut o: RawObject = serde_json::from_str(r#"{"id": "p", "n": 3, "big": [1, {"a": "b"}], "id": "q", "x": null}"#).unwrap();
        assert_eq!(o.str("id").as_deref(), Some("q"));
        assert_eq!(o.str("n"), None);
        assert_eq!(o.parse::<i64>("n").unwrap(), Some(3));
        assert!(o.parse::<i64>("big").is_err());
        assert_eq!(o.parse::<i64>("x").unwrap(), None);
        assert!(o.contains("x") && o.given("x").is_none());
        o.set("n", &4);
        o.set("eTag", &"0x1");
        o.set_default("id", &"z");
        o.set_default("state", &"active");
        o.remove("x");
        let text = o.to_json();
        assert_eq!(text, r#"{"id":"q","n":4,"big":[1, {"a": "b"}],"eTag":"0x1","state":"active"}"#);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["big"][1]["a"], "b");
    }

    #[test]
    fn only_objects() {
        for bad in [&b"[1]"[..], b"\"x\"", b"{\"a\": }", b"{\"a\": 1"] {
            assert!(wire::validate::parse_body::<RawObject>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let o: RawObject = wire::validate::parse_body(br#"{"k\"ey": "v\u00e9"}"#).unwrap();
        assert_eq!(o.str("k\"ey").as_deref(), Some("vé"));
        assert_eq!(o.to_json(), r#"{"k\"ey":"v\u00e9"}"#);
    }
}
