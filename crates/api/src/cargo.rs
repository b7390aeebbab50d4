//! Goods and their counts on the wire (`{"ore": 10, "food": 2}`): a JSON object whose keys keep
//! the order the server gave them (the rules' order of goods), so an answer read and written
//! again is the same text.
//!
//! Owns only the shape; never checks that a key is a good (the server does, on requests).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Good name to units, in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CargoMap(pub Vec<(String, u32)>);

impl CargoMap {
    /// The units of `good` (0 if absent).
    pub fn get(&self, good: &str) -> u32 {
        self.0
            .iter()
            .find(|(g, _)| g == good)
            .map_or(0, |(_, units)| *units)
    }

    /// (good, units) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(g, u)| (g.as_str(), *u))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: Into<String>> FromIterator<(S, u32)> for CargoMap {
    fn from_iter<I: IntoIterator<Item = (S, u32)>>(iter: I) -> CargoMap {
        CargoMap(iter.into_iter().map(|(g, u)| (g.into(), u)).collect())
    }
}

impl Serialize for CargoMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (good, units) in &self.0 {
            m.serialize_entry(good, units)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for CargoMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CargoMap, D::Error> {
        struct CargoVisitor;
        impl<'de> Visitor<'de> for CargoVisitor {
            type Value = CargoMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of good names to units")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CargoMap, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, u32>()? {
                    out.push(entry);
                }
                Ok(CargoMap(out))
            }
        }
        d.deserialize_map(CargoVisitor)
    }
}
