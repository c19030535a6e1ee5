//! Tests of the Anthropic client against a real HTTP/1.1 server on
//! 127.0.0.1 answering with bodies shaped as the Messages API documents.

use super::*;
use crate::llm::test_server::serve_once;
use crate::model::{Message, Part, Role};
use serde_json::json;

fn request() -> ModelRequest {
    ModelRequest {
        messages: vec![
            Message::text("s", Role::System, "be brief"),
            Message::text("u", Role::User, "hi"),
        ],
        tools: vec![],
        iteration: 0,
    }
}

fn client(base: &str, key: &str) -> AnthropicClient {
    AnthropicClient::with_api_key(AnthropicConfig::new(base, "claude-test"), key).unwrap()
}

fn error_body(kind: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

#[tokio::test]
async fn a_request_carries_the_key_version_and_body_and_the_answer_parses() {
    let key = "sk-ant-test-5f2a9c71";
    let reply = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2}
    });
    let (base, server) = serve_once("200 OK", reply.to_string()).await;
    let root = base.trim_end_matches("/v1").to_string();
    let response = client(&root, key).complete(&request()).await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(seen.request_line, "POST /v1/messages HTTP/1.1");
    assert_eq!(seen.header("x-api-key"), Some(key));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.body["system"], "be brief");
    assert_eq!(seen.body["max_tokens"], 4096);
    assert_eq!(
        response.parts,
        vec![Part::Text {
            text: "Hello.".into()
        }]
    );
    assert_eq!(response.usage.input_tokens, 9);
}

#[tokio::test]
async fn overloaded_rate_limited_and_server_errors_are_retryable() {
    for (status, kind) in [
        ("529 Overloaded", "overloaded_error"),
        ("429 Too Many Requests", "rate_limit_error"),
        ("500 Internal Server Error", "api_error"),
    ] {
        let (base, server) = serve_once(status, error_body(kind, "try later")).await;
        let err = client(&base, "sk-ant-retry-test-1")
            .complete(&request())
            .await
            .unwrap_err();
        server.await.unwrap();
        assert!(err.retryable, "{status}: {}", err.message);
        assert!(err.message.contains("try later"), "{}", err.message);
    }
}

#[tokio::test]
async fn client_errors_are_terminal_and_never_show_the_key() {
    let key = "sk-ant-echoed-key-8e3b";
    // A server that echoes the key in its error must not leak it.
    let body = error_body("authentication_error", &format!("invalid x-api-key {key}"));
    let (base, server) = serve_once("401 Unauthorized", body).await;
    let err = client(&base, key).complete(&request()).await.unwrap_err();
    server.await.unwrap();
    assert!(!err.retryable);
    assert!(err.message.contains("401"), "{}", err.message);
    assert!(!err.message.contains(key), "{}", err.message);

    let (base, server) = serve_once(
        "400 Bad Request",
        error_body("invalid_request_error", "max_tokens: must be positive"),
    )
    .await;
    let err = client(&base, key).complete(&request()).await.unwrap_err();
    server.await.unwrap();
    assert!(
        !err.retryable && err.message.contains("max_tokens"),
        "{}",
        err.message
    );
}

#[test]
fn a_missing_key_names_the_variable_and_debug_hides_the_key() {
    let var = "RATCHET_TEST_ANTHROPIC_KEY_UNSET";
    let config = AnthropicConfig::new("http://127.0.0.1:9", "m").with_api_key_env(var);
    let err = AnthropicClient::new(config).unwrap_err();
    assert!(err.message.contains(var), "{}", err.message);
    let c = client("http://127.0.0.1:9", "sk-ant-debug-test-42");
    assert!(!format!("{c:?}").contains("sk-ant-debug-test-42"));
}
