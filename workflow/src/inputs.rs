//! The one encoding of a workflow's inputs into its record's `map<string,string>`.
//!
//! Each kind's inputs are a typed struct implementing [`KindInputs`]; the record holds one entry
//! per field, keyed by the field's name, its value as JSON, except that a string is written as
//! itself when it does not read as JSON (so `primary=n1`, not `primary="n1"`: operators see
//! these entries as `key=value`). Decoding gives [`InputsError`], naming the kind and the
//! field, for a value of the wrong type; it never falls back to a default.
//!
//! Records written by the previous release still decode: a value that is not JSON reads as a
//! plain string ([`FieldValue`]), a list field given a comma-separated string reads it with
//! [`legacy_comma_list`], a and a kind whose old entries had
//! other keys or compound strings rewrites them first ([`KindInputs::read_legacy`]).

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A kind's inputs, stored in the workflow record's `inputs` map.
pub trait KindInputs: Serialize + DeserializeOwned {
    /// The kind (or family of kinds) named in errors.
    const KIND: &'static str;

    /// Rewrites entries the previous release wrote under other keys (default: none).
    fn read_legacy(_m: &mut BTreeMap<String, String>) {}

    /// The record's entries for these inputs.
    fn encode(&self) -> BTreeMap<String, String> {
        match serde_json::to_value(self) {
            Ok(Value::Object(fields)) => fields
                .into_iter()
                .map(|(k, v)| (k, entry_value(v)))
                .collect(),
            // Only a struct with a map keyed by non-strings gets here: written so that its
            // decode fails with the reason instead of reading defaults.
            Ok(other) => BTreeMap::from([(NOT_ENCODED.into(), other.to_string())]),
            Err(e) => BTreeMap::from([(NOT_ENCODED.into(), e.to_string())]),
        }
    }

    /// The inputs the record's entries hold.
    fn decode(m: &HashMap<String, String>) -> Result<Self, InputsError> {
        let mut entries: BTreeMap<String, String> =
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(reason) = entries.get(NOT_ENCODED) {
            return Err(InputsError {
                kind: Self::KIND,
                field: NOT_ENCODED.into(),
                reason: reason.clone(),
            });
        }
        Self::read_legacy(&mut entries);
        Self::deserialize(Record(entries)).map_err(|e| InputsError {
            kind: Self::KIND,
            field: e.field.unwrap_or_default(),
            reason: e.reason,
        })
    }
}

/// The entry written in place of inputs that could not be encoded.
const NOT_ENCODED: &str = "inputs-not-encoded";

/// Why a workflow's inputs cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {kind} workflow's input {field:?} cannot be read: {reason}")]
pub struct InputsError {
    pub kind: &'static str,
    pub field: String,
    pub reason: String,
}

/// A field's value as the record holds it.
pub(crate) fn entry_value(v: Value) -> String {
    match v {
        Value::String(s) if serde_json::from_str::<Value>(&s).is_err() => s,
        other => other.to_string(),
    }
}

/// The comma-separated list the previous release wrote for a list field (`"n1,n2"`; empty:
/// none).
pub fn legacy_comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Replaces the entry under `key`, when the previous release wrote it in a form that is not
/// JSON, with what `read` (that field's legacy reader) makes of it.
pub(crate) fn upgrade_entry(
    m: &mut BTreeMap<String, String>,
    key: &str,
    read: impl Fn(&str) -> Value,
) {
    if let Some(v) = m.get_mut(key)
        && serde_json::from_str::<Value>(v).is_err()
    {
        *v = entry_value(read(v));
    }
}

/// The decoder's error: the field it is about, once known.
#[derive(Debug)]
struct DeError {
    field: Option<String>,
    reason: String,
}

impl DeError {
    fn at(mut self, field: &str) -> Self {
        self.field.get_or_insert_with(|| field.to_string());
        self
    }
}

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self {
            field: None,
            reason: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            field: Some(field.to_string()),
            reason: "missing".into(),
        }
    }
}

fn json_error(e: serde_json::Error) -> DeError {
    de::Error::custom(e)
}

/// The whole record: a map of field name to [`FieldValue`].
struct Record(BTreeMap<String, String>);

impl<'de> Deserializer<'de> for Record {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Fields {
            entries: self.0.into_iter(),
            value: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Fields {
    entries: std::collections::btree_map::IntoIter<String, String>,
    value: Option<(String, String)>,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(k.clone().into_deserializer())?;
        self.value = Some((k, v));
        Ok(Some(key))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let (key, raw) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(FieldValue(&raw)).map_err(|e| e.at(&key))
    }
}

/// One entry's value: JSON, or (written as itself, or by the previous release) a plain string.
struct FieldValue<'a>(&'a str);

impl FieldValue<'_> {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(self.0).ok()
    }

    /// The value as JSON, a value that is not JSON being a string.
    fn value(&self) -> Value {
        self.json()
            .unwrap_or_else(|| Value::String(self.0.to_string()))
    }
}

impl<'de> Deserializer<'de> for FieldValue<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.value().deserialize_any(visitor).map_err(json_error)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.json() {
            Some(Value::String(s)) => visitor.visit_string(s),
            // The previous release wrote every string as itself, "443" or "true" included.
            _ => visitor.visit_str(self.0),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.json() {
            Some(v @ Value::Array(_)) => v.deserialize_seq(visitor).map_err(json_error),
            _ => visitor.visit_seq(de::value::SeqDeserializer::new(
                legacy_comma_list(self.0).into_iter(),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0 == "null" {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.value()
            .deserialize_enum(name, variants, visitor)
            .map_err(json_error)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

/// A protobuf message field, as its encoding in base64 (`#[serde(with = ...)]`).
pub mod proto_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<M: prost::Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(m.encode_to_vec()))
    }

    pub fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<M, D::Error> {
        let text = String::deserialize(d)?;
        let raw = STANDARD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("not base64: {e}")))?;
        M::decode(raw.as_slice()).map_err(|e| D::Error::custom(format!("not the message: {e}")))
    }
}

#[cfg(test)]
mod tests;
