//! The Anthropic provider end to end: `ratchet turn --model anthropic:…`
//! against a local server speaking the Messages API with documented
//! response shapes. The turn calls the calculator through a `tool_use`
//! block, the result goes back as a `tool_result` block, an overloaded
//! (529) answer is retried inside the model step, and the key reaches no
//! output, store file or error. Agents-file model options are checked at
//! start-up.

mod support;

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use support::http;

const KEY: &str = "sk-ant-api03-integration-7c1e5a9b";

/// Serves the Messages API: 529 once, then a tool_use, then the answer.
async fn messages_server(seen: Arc<Mutex<Vec<Value>>>) -> u16 {
    http::serve(move |req| {
        assert_eq!(req.path, "/v1/messages");
        assert_eq!(req.header("x-api-key"), Some(KEY));
        assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let mut seen = seen.lock().unwrap();
        seen.push(body.clone());
        let reply = match seen.len() {
            1 => {
                return (
                    529,
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                        .to_string(),
                );
            }
            2 => json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
                "content": [
                    {"type": "text", "text": "I'll compute that."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "calculator",
                     "input": {"expression": "17*23"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 120, "output_tokens": 30}
            }),
            _ => json!({
                "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test",
                "content": [{"type": "text", "text": "17*23 is 391."}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 160, "output_tokens": 9}
            }),
        };
        (200, reply.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_calls_a_tool_through_the_messages_api_and_the_key_stays_hidden() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = messages_server(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = support::ratchet_cli(
        dir.path(),
        &["turn", "--session", "a", "--json", "What is 17*23?"],
    )
    .args(["--model", "anthropic:claude-test"])
    .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{port}"))
    .env("ANTHROPIC_API_KEY", KEY)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let turn: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(turn["outcome"]["text"], "17*23 is 391.", "{turn}");
    assert_eq!(turn["usage"]["input_tokens"], 280);
    assert_eq!(turn["usage"]["model_calls"], 2);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "one retried 529, then two model calls");
    assert_eq!(seen[0], seen[1], "the retry sends the same request");
    let first = &seen[1];
    assert_eq!(first["model"], "claude-test");
    assert!(first["system"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "calculator" && t["input_schema"]["type"] == "object"),
        "{first}"
    );
    let second = &seen[2]["messages"];
    let n = second.as_array().unwrap().len();
    assert_eq!(second[n - 2]["role"], "assistant");
    assert_eq!(second[n - 2]["content"][1]["type"], "tool_use");
    assert_eq!(
        second[n - 1],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "391"}
        ]})
    );

    // The key is in no output and no file of the store.
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the key reached a store file"
        );
    }
}

#[test]
fn agents_file_model_options_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let check =
        |toml: &str| support::refused_agents_file(dir.path(), toml, &[("ANTHROPIC_API_KEY", KEY)]);
    let err = check(
        "[[agent]]\nname = \"a\"\nmodel = \"anthropic:claude-test\"\n[agent.model_options]\nresponse_format = { type = \"json_object\" }\n",
    );
    assert!(
        err.contains("'response_format' is for openai: models"),
        "{err}"
    );
    let err = check(
        "[[agent]]\nname = \"a\"\nmodel = \"demo\"\n[agent.model_options]\ntemperature = 0.5\n",
    );
    assert!(err.contains("takes no model_options"), "{err}");
    let err = check(
        "[[agent]]\nname = \"a\"\nmodel = \"anthropic:claude-test\"\n[agent.model_options]\ntemprature = 0.5\n",
    );
    assert!(err.contains("temprature"), "{err}");
}
