//! The keys of a configuration section, read from its `Deserialize` implementation, so that
//! no hand-kept list can drift from the struct.

use serde::{
    Deserialize,
    de::{self, Visitor},
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
}
