//! The wire contract: JSON Schemas of every `Session` handler's request and
//! response and of session events, generated from the Rust types. They are
//! checked in under `proto/`; a test fails when they drift from the types.
//! The same schemas go into the deployment manifest (see [`super::wire`]).
//!
//! schemars' output is made [`standard`] on the way, so that ajv in strict
//! mode, json-schema-to-typescript and quicktype take it as it is.

use super::{
    ApproveBody, ApproveReply, CancelReply, CompleteToolBody, CompleteToolReply, ConfigureBody,
    ConfigureReply, NoInput, SessionView, SubmitReply, TurnBody,
};
use crate::ErrorCode;
use crate::engine::TurnResult;
use crate::model::StoredEvent;
use schemars::{JsonSchema, schema_for};
use serde_json::{Map, Value, json};

/// The standard schema of `T`.
pub fn schema<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schema_for!(T)).unwrap_or_default();
    standard(&mut v);
    v
}

/// Rewrites a schemars schema into keywords every standard tool knows:
/// - integers carry their bounds instead of a custom `format` (`uint64`);
/// - a `$ref` with sibling constraints (schemars' tagged-union variants)
///   becomes an `allOf` of the reference and the constraints, which code
///   generators read as an intersection instead of dropping the siblings;
/// - an "any JSON" schema (`true`, or one with no type-defining keyword)
///   is an `anyOf` of every JSON type, so generators do not assume an
///   object and strict validators accept it.
pub fn standard(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                // Property names and definitions are maps of schemas; the
                // values of `const`, `enum`, `default` are data.
                match key.as_str() {
                    "const" | "enum" | "default" | "examples" | "required" => {}
                    "properties" | "$defs" | "definitions" | "patternProperties" => {
                        if let Value::Object(schemas) = child {
                            schemas.values_mut().for_each(standard);
                        }
                    }
                    _ => standard(child),
                }
            }
            integer_bounds(map);
            ref_with_siblings(map);
            any_json(map);
        }
        Value::Array(items) => items.iter_mut().for_each(standard),
        Value::Bool(true) => *v = json!({ "anyOf": any_json_types() }),
        _ => {}
    }
}

/// Every JSON type: what an "any JSON value" field is.
const ANY_JSON: [&str; 6] = ["null", "boolean", "number", "string", "array", "object"];

/// One schema per JSON type, for an `anyOf`: strict ajv refuses a `type`
/// array of unrelated types, and code generators read the `anyOf` as the
/// union of all JSON values.
fn any_json_types() -> Value {
    ANY_JSON.iter().map(|t| json!({ "type": t })).collect()
}

fn integer_bounds(map: &mut Map<String, Value>) {
    let Some(format) = map.get("format").and_then(Value::as_str) else {
        return;
    };
    let (min, max): (Value, Value) = match format {
        "uint8" => (0.into(), u8::MAX.into()),
        "uint16" => (0.into(), u16::MAX.into()),
        "uint32" => (0.into(), u32::MAX.into()),
        "uint64" | "uint" => (0.into(), u64::MAX.into()),
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" | "int" => (i64::MIN.into(), i64::MAX.into()),
        "float" | "double" => {
            map.remove("format");
            return;
        }
        _ => return,
    };
    map.remove("format");
    map.entry("minimum").or_insert(min);
    map.entry("maximum").or_insert(max);
}

/// Annotations that may stay beside a `$ref` without changing its meaning.
const ANNOTATIONS: [&str; 4] = ["description", "title", "default", "examples"];

fn ref_with_siblings(map: &mut Map<String, Value>) {
    let Some(target) = map.get("$ref").cloned() else {
        return;
    };
    let constraints: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| *k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if constraints.is_empty() {
        return;
    }
    map.retain(|k, _| ANNOTATIONS.contains(&k.as_str()));
    map.insert(
        "allOf".into(),
        json!([{ "$ref": target }, Value::Object(constraints)]),
    );
}

/// Keywords that say what a value is; a schema with none of them accepts
/// anything.
const TYPING: [&str; 12] = [
    "type",
    "$ref",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "enum",
    "const",
    "properties",
    "items",
    "$defs",
    "if",
];

fn any_json(map: &mut Map<String, Value>) {
    if !TYPING.iter().any(|k| map.contains_key(*k)) && !map.contains_key("$schema") {
        map.insert("anyOf".into(), any_json_types());
    }
}

/// Every schema of the contract, as (file name, schema).
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("Session.turn.request.json", schema::<TurnBody>()),
        ("Session.turn.response.json", schema::<TurnResult>()),
        ("Session.submit.request.json", schema::<TurnBody>()),
        ("Session.submit.response.json", schema::<SubmitReply>()),
        ("Session.steer.request.json", schema::<TurnBody>()),
        ("Session.steer.response.json", schema::<SubmitReply>()),
        (
            "Session.drain.response.json",
            schema::<Option<TurnResult>>(),
        ),
        ("Session.view.response.json", schema::<SessionView>()),
        ("Session.cancel.response.json", schema::<CancelReply>()),
        ("Session.configure.request.json", schema::<ConfigureBody>()),
        (
            "Session.configure.response.json",
            schema::<ConfigureReply>(),
        ),
        ("Session.approve.request.json", schema::<ApproveBody>()),
        ("Session.approve.response.json", schema::<ApproveReply>()),
        (
            "Session.complete_tool.request.json",
            schema::<CompleteToolBody>(),
        ),
        (
            "Session.complete_tool.response.json",
            schema::<CompleteToolReply>(),
        ),
        ("Session.view.request.json", schema::<NoInput>()),
        ("Session.cancel.request.json", schema::<NoInput>()),
        ("Session.drain.request.json", schema::<NoInput>()),
        ("session-event.json", schema::<StoredEvent>()),
        ("error.json", error_reply()),
        ("error-codes.json", error_codes()),
    ]
}

/// The shape of every error reply. Restate's ingress writes the envelope;
/// ratchet writes the message, which starts with one of its codes.
pub fn error_reply() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ErrorReply",
        "description": "An error reply through Restate's ingress. When ratchet refused or failed the call, `message` is `<code>: <text>`, `<code>` one of error-codes.json (its HTTP status is `code`). Refusals Restate makes before ratchet runs (an unknown handler, a wrong content type) carry Restate's own text.",
        "type": "object",
        "properties": {
            "code": {
                "description": "The HTTP status.",
                "type": "integer",
                "minimum": 400,
                "maximum": 599
            },
            "message": {
                "description": "`<code>: <text>` for ratchet's errors.",
                "type": "string"
            },
            "source": {
                "description": "Where Restate saw the error (`invocation`, `ingress`).",
                "type": "string"
            }
        },
        "required": ["code", "message"],
        "$defs": {
            "ErrorCode": {
                "description": "ratchet's error codes: the prefix of `message` before the first `: `.",
                "type": "string",
                "enum": codes
            }
        }
    })
}

/// The table of error codes: each with its HTTP status, whether a retry
/// can help, and what it means.
pub fn error_codes() -> Value {
    let rows: Vec<Value> = ErrorCode::ALL
        .iter()
        .map(|c| {
            json!({
                "code": c.as_str(),
                "http_status": c.http_status(),
                "retryable": c.is_retryable(),
                "description": c.description(),
            })
        })
        .collect();
    json!(rows)
}

/// A schema file's text: pretty JSON and a final newline.
pub fn render(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemars_idioms_become_standard_keywords() {
        let mut v = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "properties": {
                "n": {"type": "integer", "format": "uint64", "minimum": 0},
                "k": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
                "value": {"description": "Any JSON."},
                "loose": true,
                "variant": {"$ref": "#/$defs/X", "description": "d",
                            "properties": {"status": {"const": "stopped"}}, "required": ["status"]},
                "plain": {"$ref": "#/$defs/X", "description": "kept"}
            },
            "$defs": {"X": {"type": "object", "properties": {"default": {"type": "string"}}}}
        });
        standard(&mut v);
        let p = &v["properties"];
        assert_eq!(
            p["n"],
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
        );
        assert_eq!(p["k"]["maximum"], json!(u32::MAX));
        assert!(p["k"].get("format").is_none());
        assert_eq!(p["value"]["anyOf"], any_json_types());
        assert_eq!(p["value"]["anyOf"][5], json!({"type": "object"}));
        assert_eq!(p["loose"], json!({"anyOf": any_json_types()}));
        assert_eq!(
            p["variant"],
            json!({"description": "d", "allOf": [{"$ref": "#/$defs/X"},
                  {"properties": {"status": {"const": "stopped"}}, "required": ["status"]}]})
        );
        assert_eq!(
            p["plain"],
            json!({"$ref": "#/$defs/X", "description": "kept"})
        );
        // A property named like a keyword is a schema, not a keyword.
        assert_eq!(
            v["$defs"]["X"]["properties"]["default"],
            json!({"type": "string"})
        );
        assert!(v.get("type").is_none(), "the root keeps its own keywords");
    }
}
