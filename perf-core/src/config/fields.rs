//! The keys of a configuration section, read from its `Deserialize` implementation, so that
//! no hand-kept list can drift from the struct; and its values by key, read from its
//! serialized form, so that two configurations can be compared key by key.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, MapAccess, SeqAccess, Visitor},
    forward_to_deserialize_any,
};

/// The serialized field names of `T`, a struct deriving `Deserialize` without `flatten`.
/// Empty for anything else.
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The deserializer always errs, after noting the names the struct asked for.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs have field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names noted"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Each key of `config`'s serialized form (a map, as a struct with `flatten` serializes)
/// with its value; `None` if it does not serialize as one. Read back from MessagePack, the
/// cache's own encoding.
pub(crate) fn values<T: Serialize>(config: &T) -> Option<BTreeMap<String, Value>> {
    let bytes = rmp_serde::to_vec_named(config).ok()?;
    rmp_serde::from_slice(&bytes).ok()
}

/// A serialized value, as far as comparing two needs.
#[derive(Debug, PartialEq)]
pub(crate) enum Value {
    Unit,
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Unit)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Unit)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Signed(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Unsigned(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::Text(value.to_owned()))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(value.to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)] // only its shape is read
    struct Sample {
        plain: u64,
        #[serde(rename = "renamed_key")]
        renamed: bool,
    }

    #[test]
    fn names_are_the_serialized_ones() {
        assert_eq!(field_names::<Sample>(), ["plain", "renamed_key"]);
        assert!(field_names::<u64>().is_empty());
    }

    #[derive(Serialize)]
    struct Values {
        count: u64,
        ratio: f64,
        limit: Option<u64>,
        name: &'static str,
        list: Vec<i32>,
    }

    #[test]
    fn values_are_read_back_by_key() {
        let sample = Values {
            count: 3,
            ratio: 0.5,
            limit: None,
            name: "x",
            list: vec![-1, 2],
        };
        let values = values(&sample).expect("a map");
        assert_eq!(values["count"], Value::Unsigned(3));
        assert_eq!(values["ratio"], Value::Float(0.5));
        assert_eq!(values["limit"], Value::Unit);
        assert_eq!(values["name"], Value::Text("x".into()));
        assert_eq!(
            values["list"],
            Value::List(vec![Value::Signed(-1), Value::Unsigned(2)])
        );
        assert!(super::values(&7u64).is_none(), "not a map");
    }
}
