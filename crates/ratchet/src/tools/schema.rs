//! A small JSON Schema checker for tool arguments: the subset tools here
//! declare (`type`, `properties`, `required`, `additionalProperties`,
//! `enum`, `items`, `minLength`, `maxLength`). Unknown keywords are ignored,
//! as the JSON Schema spec asks.

use serde_json::Value;

/// Checks `value` against `schema`; the error names the first bad path.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "$")
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

fn check(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    match s.get("type") {
        Some(Value::String(ty)) if !type_matches(ty, v) => {
            return Err(format!("{path}: expected {ty}"));
        }
        Some(Value::Array(tys))
            if !tys
                .iter()
                .any(|t| t.as_str().is_some_and(|t| type_matches(t, v))) =>
        {
            return Err(format!(
                "{path}: expected one of {}",
                Value::Array(tys.clone())
            ));
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        return Err(format!(
            "{path}: must be one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            return Err(format!("{path}: shorter than {min} characters"));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            return Err(format!("{path}: longer than {max} characters"));
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(items, item, &format!("{path}[{i}]"))?;
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = s.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    return Err(format!("{path}: missing required property '{r}'"));
                }
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => check(sub, val, &format!("{path}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}: unexpected property '{k}'"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "expression": {"type": "string", "minLength": 1},
                "mode": {"enum": ["a", "b"]},
                "list": {"type": "array", "items": {"type": "integer"}}
            },
            "required": ["expression"],
            "additionalProperties": false
        });
        assert!(validate(&schema, &json!({"expression": "1+1"})).is_ok());
        assert!(validate(&schema, &json!({"expression": "1", "list": [1, 2]})).is_ok());
        let err = |v: Value| validate(&schema, &v).unwrap_err();
        assert!(err(json!({})).contains("missing required property 'expression'"));
        assert!(err(json!({"expression": 3})).contains("$.expression: expected string"));
        assert!(err(json!({"expression": ""})).contains("shorter than 1"));
        assert!(err(json!({"expression": "x", "mode": "c"})).contains("must be one of"));
        assert!(err(json!({"expression": "x", "extra": 1})).contains("unexpected property"));
        assert!(err(json!({"expression": "x", "list": [1, "2"]})).contains("$.list[1]"));
        assert!(err(json!("str")).contains("expected object"));
    }
}
