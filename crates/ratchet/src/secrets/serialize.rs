//! [`Redacted`]: serializes a value with every string passed through
//! [`redact`] on its way out, so a step's output is scrubbed while it is
//! written, with no `serde_json::Value` tree built to walk.
//!
//! It wraps any serde serializer: each string (map keys included) is
//! redacted, and each nested value is serialized through the same wrapper.
//! Everything else passes through unchanged.

use super::redact;
use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// `value`, serialized with every string it holds redacted.
pub struct Redacted<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for Redacted<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Redacting(serializer))
    }
}

/// The wrapper around a serializer, and around each of its compound states.
struct Redacting<S>(S);

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        })*
    };
}

/// The methods that open a compound value: its state is wrapped too, so
/// its elements are serialized through [`Redacted`].
macro_rules! compound {
    ($($method:ident($($arg:ident: $ty:ty),* $(,)?) -> $state:ident),* $(,)?) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<Self::$state, S::Error> {
            self.0.$method($($arg),*).map(Redacting)
        })*
    };
}

impl<S: Serializer> Serializer for Redacting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Redacting<S::SerializeSeq>;
    type SerializeTuple = Redacting<S::SerializeTuple>;
    type SerializeTupleStruct = Redacting<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Redacting<S::SerializeTupleVariant>;
    type SerializeMap = Redacting<S::SerializeMap>;
    type SerializeStruct = Redacting<S::SerializeStruct>;
    type SerializeStructVariant = Redacting<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.0.serialize_str(&redact(v))
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Redacted(v))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Redacted(v))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Redacted(v))
    }

    compound!(
        serialize_seq(len: Option<usize>) -> SerializeSeq,
        serialize_tuple(len: usize) -> SerializeTuple,
        serialize_tuple_struct(name: &'static str, len: usize) -> SerializeTupleStruct,
        serialize_tuple_variant(
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize,
        ) -> SerializeTupleVariant,
        serialize_map(len: Option<usize>) -> SerializeMap,
        serialize_struct(name: &'static str, len: usize) -> SerializeStruct,
        serialize_struct_variant(
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize,
        ) -> SerializeStructVariant,
    );

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound states whose elements are plain values.
macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl<S: $trait> $trait for Redacting<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
                self.0.$method(&Redacted(v))
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// The compound states whose fields have static names.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl<S: $trait> $trait for Redacting<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), S::Error> {
                self.0.serialize_field(key, &Redacted(v))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

impl<S: SerializeMap> SerializeMap for Redacting<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Redacted(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Redacted(v))
    }

    fn serialize_entry<K, V>(&mut self, key: &K, v: &V) -> Result<(), S::Error>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        self.0.serialize_entry(&Redacted(key), &Redacted(v))
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MASK, redact_value, register};
    use super::*;
    use serde::Serialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    enum Kind {
        Plain,
        Note(String),
        Pair(String, u32),
        Call {
            name: String,
            args: serde_json::Value,
        },
    }

    #[derive(Serialize)]
    struct Output {
        text: String,
        maybe: Option<String>,
        kinds: Vec<Kind>,
        tags: BTreeMap<String, String>,
        tuple: (String, i64),
        big: u128,
        bytes: Vec<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<String>,
    }

    fn sample(secret: &str) -> Output {
        Output {
            text: format!("the key is {secret}, keep it"),
            maybe: Some(format!("url postgres://app:Unl1sted9@db/x and {secret}")),
            kinds: vec![
                Kind::Plain,
                Kind::Note(secret.to_string()),
                Kind::Pair(format!("Bearer tok-{secret}"), 7),
                Kind::Call {
                    name: "fetch".into(),
                    args: json!({"q": [secret, 1, null], "deep": {"k": secret}}),
                },
            ],
            tags: BTreeMap::from([("plain".into(), format!("x{secret}x"))]),
            tuple: (secret.to_string(), -3),
            big: u128::from(u64::MAX),
            bytes: vec![1, 2, 3],
            skipped: None,
        }
    }

    #[test]
    fn redacts_every_string_as_the_value_walk_does() {
        let secret = "sk-ser-9f8e7d6c5b";
        register("TEST_SER_KEY", secret).unwrap();
        let out = sample(secret);
        let mut walked = serde_json::to_value(&out).unwrap();
        redact_value(&mut walked);
        let written = serde_json::to_string(&Redacted(&out)).unwrap();
        assert!(!written.contains("9f8e7d6c5b"), "{written}");
        assert!(!written.contains("Unl1sted9"), "{written}");
        assert!(written.contains(MASK), "{written}");
        let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(parsed, walked);
        // Only strings change: numbers, bytes and shape are as written.
        assert_eq!(parsed["big"], json!(u64::MAX));
        assert_eq!(parsed["bytes"], json!([1, 2, 3]));
        assert_eq!(parsed["kinds"][0], json!("Plain"));
        assert!(parsed.get("skipped").is_none());
    }

    #[test]
    fn map_keys_and_escaped_secrets_are_redacted_too() {
        let secret = r#"pw"with\quote9"#;
        register("TEST_SER_QUOTED", secret).unwrap();
        let map = BTreeMap::from([(format!("k {secret}"), secret.to_string())]);
        let written = serde_json::to_string(&Redacted(&map)).unwrap();
        assert!(!written.contains("quote9"), "{written}");
        let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(parsed, json!({ format!("k {MASK}"): MASK }));
    }

    #[test]
    fn text_without_secrets_is_written_unchanged() {
        let out = vec![
            Kind::Note("plain words".into()),
            Kind::Call {
                name: "f".into(),
                args: json!({"a": [1, "b", {"c": 2.5}], "d": true}),
            },
        ];
        assert_eq!(
            serde_json::to_string(&Redacted(&out)).unwrap(),
            serde_json::to_string(&out).unwrap()
        );
    }
}
