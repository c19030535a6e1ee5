//! The checked-in JSON Schemas under `proto/` match the Rust types.
//! Regenerate with `RATCHET_UPDATE_PROTO=1 cargo test --test proto_schemas`.

use ratchet::restate::schemas;
use std::path::Path;

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let update = std::env::var("RATCHET_UPDATE_PROTO").is_ok_and(|v| v == "1");
    let mut drifted = Vec::new();
    for (name, schema) in schemas::all() {
        let path = dir.join(name);
        let expected = schemas::render(&schema);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &expected).unwrap();
            continue;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(expected.as_str()) {
            drifted.push(name);
        }
    }
    assert!(
        drifted.is_empty(),
        "proto/ drifted from the Rust types: {drifted:?}; run RATCHET_UPDATE_PROTO=1 cargo test --test proto_schemas"
    );
}

#[test]
fn the_turn_schema_names_its_required_fields() {
    let all = schemas::all();
    let turn = &all
        .iter()
        .find(|(n, _)| *n == "Session.turn.request.json")
        .unwrap()
        .1;
    assert_eq!(turn["required"], serde_json::json!(["input"]));
    let text = turn.to_string();
    for needle in ["items", "input_id", "trace_turn_id", "image", "text"] {
        assert!(
            text.contains(needle),
            "{needle} missing from the turn schema"
        );
    }
}
