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

/// The deployment manifest a restate-server reads publishes exactly the
/// schemas in `proto/`: what a team generates from the repository is what
/// the running service says it takes and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_publishes_the_checked_in_schemas() {
    use ratchet_testkit::harness::Service;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("m.db").display());
    let bin = Path::new(env!("CARGO_BIN_EXE_ratchet"));
    let service = Service::start(bin, &store, "http://127.0.0.1:1", dir.path(), &[]).unwrap();
    let manifest: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(format!("{}/discover", service.uri()))
        .header("accept", "application/vnd.restate.endpointmanifest.v4+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(proto.join(name)).unwrap()).unwrap()
    };
    let session = manifest["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Session")
        .expect("the Session object");
    let handlers = session["handlers"].as_array().unwrap();
    assert_eq!(handlers.len(), 9);
    for h in handlers {
        let name = h["name"].as_str().unwrap();
        let input = &h["input"];
        assert_eq!(
            input["jsonSchema"],
            read(&format!("Session.{name}.request.json")),
            "{name} input"
        );
        assert_eq!(input["contentType"], "application/json", "{name}");
        let optional = matches!(name, "view" | "cancel" | "drain");
        assert_eq!(input["required"], !optional, "{name}: {input}");
        assert_eq!(
            h["output"]["jsonSchema"],
            read(&format!("Session.{name}.response.json")),
            "{name} output"
        );
    }
}
