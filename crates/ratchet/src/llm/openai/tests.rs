//! Tests of the OpenAI client against a real HTTP/1.1 server on 127.0.0.1,
//! started inside each test (a raw tokio listener that answers one request)
//! and dropped with the test's runtime.

use super::*;
use crate::llm::test_server::serve_once;
use crate::llm::{FinishReason, ToolSpec};
use crate::model::{Message, Part, Role};
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;

fn client(base: &str, key: &str) -> OpenAiClient {
    OpenAiClient::with_api_key(OpenAiConfig::new(base, "gpt-test"), key).unwrap()
}

fn simple_request() -> ModelRequest {
    ModelRequest {
        messages: vec![Message::text("u", Role::User, "hi")],
        tools: vec![],
        iteration: 0,
    }
}

#[tokio::test]
async fn request_carries_model_messages_tools_and_bearer_key_and_tool_call_reply_parses() {
    let key = "sk-test-roundtrip-4b1d9e";
    let reply = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_abc", "type": "function",
                "function": {"name": "calculator", "arguments": "{\"expression\":\"2*3\"}"}}]
        }}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51}
    });
    let (base, server) = serve_once("200 OK", reply.to_string()).await;
    let request = ModelRequest {
        messages: vec![
            Message::text("s", Role::System, "be exact"),
            Message::text("u", Role::User, "What is 1+1?"),
            Message {
                id: "a".into(),
                role: Role::Assistant,
                parts: vec![Part::ToolCall {
                    id: "call_0".into(),
                    name: "calculator".into(),
                    arguments: json!({"expression": "1+1"}),
                }],
            },
            Message {
                id: "t".into(),
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    tool_call_id: "call_0".into(),
                    content: "2".into(),
                    is_error: false,
                }],
            },
        ],
        tools: vec![ToolSpec {
            name: "calculator".into(),
            description: "Evaluates arithmetic".into(),
            parameters: json!({"type": "object", "properties": {"expression": {"type": "string"}}}),
        }],
        iteration: 1,
    };

    let response = client(&base, key).complete(&request).await.unwrap();
    let seen = server.await.unwrap();

    assert_eq!(seen.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(
        seen.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(seen.body["model"], "gpt-test");
    assert_eq!(
        seen.body["messages"],
        json!([
            {"role": "system", "content": "be exact"},
            {"role": "user", "content": "What is 1+1?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0", "type": "function",
                "function": {"name": "calculator", "arguments": "{\"expression\":\"1+1\"}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "2"}
        ])
    );
    assert_eq!(
        seen.body["tools"],
        json!([{"type": "function", "function": {"name": "calculator",
            "description": "Evaluates arithmetic",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}])
    );

    assert_eq!(
        response.parts,
        vec![Part::ToolCall {
            id: "call_abc".into(),
            name: "calculator".into(),
            arguments: json!({"expression": "2*3"}),
        }]
    );
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.usage.input_tokens, 42);
    assert_eq!(response.usage.output_tokens, 9);
    assert_eq!(response.usage.model_calls, 1);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retryable() {
    for status in [
        "500 Internal Server Error",
        "503 Service Unavailable",
        "429 Too Many Requests",
    ] {
        let body = json!({"error": {"message": "try later"}}).to_string();
        let (base, server) = serve_once(status, body).await;
        let err = client(&base, "sk-test-retryable-8c2f")
            .complete(&simple_request())
            .await
            .unwrap_err();
        server.await.unwrap();
        assert!(err.retryable, "{status}: {err}");
        assert!(err.message.contains("try later"), "{err}");
        assert!(err.message.contains(&status[..3]), "{err}");
    }
}

#[tokio::test]
async fn unauthorized_is_terminal_and_its_message_never_contains_the_key() {
    let key = "sk-test-unauthorized-31a7e0";
    // Some servers echo the key they were given; the client must scrub it.
    let body = json!({"error": {"message": format!("Incorrect API key provided: {key}"),
        "type": "invalid_request_error", "code": "invalid_api_key"}});
    let (base, server) = serve_once("401 Unauthorized", body.to_string()).await;
    let err = client(&base, key)
        .complete(&simple_request())
        .await
        .unwrap_err();
    server.await.unwrap();
    assert!(!err.retryable);
    assert!(err.message.contains("401"), "{err}");
    assert!(err.message.contains("Incorrect API key provided"), "{err}");
    assert!(!err.message.contains(key), "{err}");
    assert!(!format!("{err:?}").contains(key));
}

#[tokio::test]
async fn other_client_errors_are_terminal_with_the_servers_message() {
    let body = json!({"error": {"message": "The model `gpt-test` does not exist"}});
    let (base, server) = serve_once("404 Not Found", body.to_string()).await;
    let err = client(&base, "sk-test-notfound-0d4c")
        .complete(&simple_request())
        .await
        .unwrap_err();
    server.await.unwrap();
    assert!(!err.retryable);
    assert!(
        err.message.starts_with("openai:gpt-test: HTTP 404"),
        "{err}"
    );
    assert!(err.message.contains("does not exist"), "{err}");
}

#[tokio::test]
async fn unparseable_success_body_is_a_terminal_error() {
    let (base, server) = serve_once("200 OK", "{\"choices\": 7}".into()).await;
    let err = client(&base, "sk-test-badbody-55e1")
        .complete(&simple_request())
        .await
        .unwrap_err();
    server.await.unwrap();
    assert!(!err.retryable);
    assert!(
        err.message.contains("unexpected chat completion response"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_server_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(&format!("http://{addr}/v1"), "sk-test-refused-9e02")
        .complete(&simple_request())
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(err.message.contains("cannot connect"), "{err}");
    assert!(err.message.to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn slow_server_times_out_retryably() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    // Accepts and never answers; the task ends with the test's runtime.
    let _server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let config = OpenAiConfig::new(base, "gpt-test").with_timeout(Duration::from_millis(300));
    let client = OpenAiClient::with_api_key(config, "sk-test-timeout-a61b").unwrap();
    let err = client.complete(&simple_request()).await.unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
}

#[test]
fn debug_output_never_shows_the_key() {
    let key = "sk-test-debug-c0ffee42";
    let client = client("http://127.0.0.1:9/v1", key);
    let printed = format!("{client:?} {client:#?}");
    assert!(!printed.contains(key), "{printed}");
    assert!(printed.contains("<redacted>"));
    assert_eq!(client.name(), "openai:gpt-test");
}

#[test]
fn missing_key_variable_is_an_error_naming_the_variable() {
    let var = "RATCHET_TEST_KEY_missing_key_variable_is_an_error_naming_the_variable";
    let config = OpenAiConfig::new("http://127.0.0.1:9/v1", "m").with_api_key_env(var);
    let err = OpenAiClient::new(config).unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains(var), "{err}");
}

#[test]
fn empty_or_unsendable_keys_are_rejected_without_echoing_them() {
    let config = OpenAiConfig::new("http://127.0.0.1:9/v1", "m");
    assert!(OpenAiClient::with_api_key(config.clone(), "  ").is_err());
    let err = OpenAiClient::with_api_key(config, "sk-test-bad\nkey-77").unwrap_err();
    assert!(!err.message.contains("sk-test-bad"), "{err}");
}

fn one_tool_request() -> ModelRequest {
    ModelRequest {
        tools: vec![ToolSpec {
            name: "calculator".into(),
            description: "Evaluates arithmetic".into(),
            parameters: json!({"type": "object"}),
        }],
        ..simple_request()
    }
}

fn text_reply() -> String {
    json!({"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]})
        .to_string()
}

#[tokio::test]
async fn request_options_and_extra_headers_are_sent() {
    let (base, server) = serve_once("200 OK", text_reply()).await;
    let params = OpenAiParams {
        temperature: Some(0.2),
        max_tokens: Some(256),
        max_completion_tokens: Some(512),
        tool_choice: Some(json!("required")),
        parallel_tool_calls: Some(false),
        response_format: Some(json!({"type": "json_object"})),
        stream: false,
    };
    let config = OpenAiConfig::new(&base, "gpt-test")
        .with_params(params)
        .with_header("OpenAI-Organization", "org-42");
    let client = OpenAiClient::with_api_key(config, "sk-options-test-77").unwrap();
    client.complete(&one_tool_request()).await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(seen.body["temperature"], json!(0.2));
    assert_eq!(seen.body["max_tokens"], 256);
    assert_eq!(seen.body["max_completion_tokens"], 512);
    assert_eq!(seen.body["tool_choice"], "required");
    assert_eq!(seen.body["parallel_tool_calls"], false);
    assert_eq!(seen.body["response_format"], json!({"type": "json_object"}));
    assert_eq!(seen.header("openai-organization"), Some("org-42"));

    // Without tools, the tool options are not sent (servers refuse them).
    let (base, server) = serve_once("200 OK", text_reply()).await;
    let config = OpenAiConfig::new(&base, "gpt-test").with_params(OpenAiParams {
        tool_choice: Some(json!("auto")),
        parallel_tool_calls: Some(true),
        ..OpenAiParams::default()
    });
    let client = OpenAiClient::with_api_key(config, "sk-options-test-77").unwrap();
    client.complete(&simple_request()).await.unwrap();
    let seen = server.await.unwrap();
    let body = seen.body.as_object().unwrap();
    assert!(!body.contains_key("tool_choice") && !body.contains_key("parallel_tool_calls"));
    assert!(
        !body.contains_key("temperature"),
        "unset options are not sent"
    );
}

#[tokio::test]
async fn azure_deployments_get_their_url_and_api_key_header() {
    let (base, server) = serve_once("200 OK", text_reply()).await;
    let root = base.trim_end_matches("/v1").to_string();
    let config = OpenAiConfig::new(&root, "my-gpt4o").azure("2024-10-21");
    let key = "azure-key-0123456789";
    let client = OpenAiClient::with_api_key(config, key).unwrap();
    client.complete(&simple_request()).await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(
        seen.request_line,
        "POST /openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21 HTTP/1.1"
    );
    assert_eq!(seen.header("api-key"), Some(key));
    assert_eq!(seen.header("authorization"), None);
}

#[test]
fn a_bad_extra_header_is_refused_without_echoing_its_value() {
    let config = OpenAiConfig::new("http://127.0.0.1:9/v1", "m")
        .with_header("X-Gateway", "bad\nvalue-s3cr3t");
    let err = OpenAiClient::with_api_key(config, "sk-header-test-1").unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains("X-Gateway"), "{}", err.message);
    assert!(!err.message.contains("s3cr3t"), "{}", err.message);
}

struct Deltas(std::sync::Mutex<Vec<crate::llm::ModelDelta>>);

impl crate::llm::DeltaSink for Deltas {
    fn delta(&self, _iteration: u32, delta: &crate::llm::ModelDelta) {
        self.0.lock().unwrap().push(delta.clone());
    }
}

#[tokio::test]
async fn a_streamed_answer_is_assembled_and_its_deltas_go_to_the_sink() {
    let key = "sk-stream-test-3e9f1a";
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
        // A server echoing the key mid-stream gets it masked.
        json!({"choices": [{"index": 0, "delta": {"content": format!("lo {key}")}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
    ];
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    let (base, server) = serve_once("200 OK", body).await;
    let config = OpenAiConfig::new(&base, "gpt-test").with_params(OpenAiParams {
        stream: true,
        ..OpenAiParams::default()
    });
    let sink = Arc::new(Deltas(std::sync::Mutex::new(Vec::new())));
    let client = OpenAiClient::with_api_key(config, key)
        .unwrap()
        .with_delta_sink(sink.clone());
    let response = client.complete(&simple_request()).await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["stream_options"], json!({"include_usage": true}));
    let Part::Text { text } = &response.parts[0] else {
        panic!("{:?}", response.parts);
    };
    assert!(text.starts_with("Hello ") && !text.contains(key), "{text}");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage.output_tokens, 2);
    let deltas = sink.0.lock().unwrap().clone();
    assert_eq!(deltas.len(), 2);
    assert_eq!(deltas[0], crate::llm::ModelDelta::Text("Hel".into()));
}

#[tokio::test]
async fn a_stream_cut_before_its_end_is_retryable() {
    let body = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": "par"}}]})
    );
    let (base, server) = serve_once("200 OK", body).await;
    let config = OpenAiConfig::new(&base, "gpt-test").with_params(OpenAiParams {
        stream: true,
        ..OpenAiParams::default()
    });
    let err = OpenAiClient::with_api_key(config, "sk-stream-cut-test-1")
        .unwrap()
        .complete(&simple_request())
        .await
        .unwrap_err();
    server.await.unwrap();
    assert!(err.retryable, "{}", err.message);
}
