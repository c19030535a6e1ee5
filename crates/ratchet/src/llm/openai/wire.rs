//! The Chat Completions wire format: our messages and tools to a request
//! body, and a response body back to a [`ModelResponse`]. Pure functions,
//! no IO, so the mapping is tested without a server.

use super::OpenAiParams;
use crate::llm::{FinishReason, ModelRequest, ModelResponse, ToolSpec};
use crate::model::{Message, Part, Role, Usage};
use serde::Deserialize;
use serde_json::{Value, json};

/// The JSON body of a `POST /chat/completions` for this request.
pub(super) fn request_body(model: &str, params: &OpenAiParams, request: &ModelRequest) -> Value {
    let messages: Vec<Value> = request.messages.iter().flat_map(wire_messages).collect();
    let mut body = json!({ "model": model, "messages": messages });
    let has_tools = !request.tools.is_empty();
    if has_tools {
        body["tools"] = request.tools.iter().map(wire_tool).collect();
    }
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            body[key] = v;
        }
    };
    set("temperature", params.temperature.map(Value::from));
    set("max_tokens", params.max_tokens.map(Value::from));
    set(
        "max_completion_tokens",
        params.max_completion_tokens.map(Value::from),
    );
    set("response_format", params.response_format.clone());
    if params.stream {
        set("stream", Some(Value::Bool(true)));
        set("stream_options", Some(json!({"include_usage": true})));
    }
    if has_tools {
        set("tool_choice", params.tool_choice.clone());
        set(
            "parallel_tool_calls",
            params.parallel_tool_calls.map(Value::from),
        );
    }
    body
}

/// One of our messages as zero or more wire messages: a tool message holds
/// one wire message per result, an event message none.
fn wire_messages(m: &Message) -> Vec<Value> {
    match m.role {
        Role::System => vec![json!({ "role": "system", "content": m.text_content() })],
        Role::User => vec![json!({ "role": "user", "content": user_content(m) })],
        Role::Assistant => vec![assistant_message(m)],
        Role::Tool => m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolResult {
                    tool_call_id,
                    content,
                    ..
                } => Some(json!({
                    "role": "tool",
                    "tool_call_id": tool_call_id,
                    "content": content,
                })),
                _ => None,
            })
            .collect(),
        // Runtime notices are for the record, not for the model.
        Role::Event => vec![],
    }
}

/// A plain string, or a content array when the message carries images.
fn user_content(m: &Message) -> Value {
    let has_image = m.parts.iter().any(|p| matches!(p, Part::Image { .. }));
    if !has_image {
        return Value::String(m.text_content());
    }
    m.parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text } => Some(json!({ "type": "text", "text": text })),
            Part::Image { uri, .. } => {
                Some(json!({ "type": "image_url", "image_url": { "url": uri } }))
            }
            _ => None,
        })
        .collect()
}

fn assistant_message(m: &Message) -> Value {
    let text = m.text_content();
    let calls: Vec<Value> = m
        .tool_calls()
        .map(|(id, name, arguments)| {
            json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": arguments_string(arguments) },
            })
        })
        .collect();
    if calls.is_empty() {
        return json!({ "role": "assistant", "content": text });
    }
    // Next to tool calls, empty content goes as "": OpenAI takes `null`,
    // "" or no content at all, but llama-cpp-python refuses `null` (its
    // schema: an optional string) and its chat templates read `content`,
    // so a missing one fails too (both a 500, measured with
    // scripts/real-model.sh).
    json!({ "role": "assistant", "content": text, "tool_calls": calls })
}

/// Arguments go on the wire as a JSON string. A string value is arguments
/// we could not parse when they came back, so it is sent as it arrived.
fn arguments_string(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn wire_tool(t: &ToolSpec) -> Value {
    json!({
        "type": "function",
        "function": {
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
        },
    })
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    /// Sent by some compatible servers (DeepSeek, vLLM) for reasoning models.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Parses a successful response body; the error says what was wrong.
pub(super) fn parse_response(body: &[u8]) -> Result<ModelResponse, String> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| format!("unexpected chat completion response: {e}"))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or("chat completion response has no choices")?;
    let message = choice.message;

    let mut parts = Vec::new();
    if let Some(text) = message.reasoning_content.filter(|t| !t.is_empty()) {
        parts.push(Part::Reasoning { text });
    }
    if let Some(text) = message.content.filter(|t| !t.is_empty()) {
        parts.push(Part::Text { text });
    }
    let calls = message.tool_calls.unwrap_or_default();
    let has_calls = !calls.is_empty();
    for call in calls {
        parts.push(Part::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: parse_arguments(call.function.arguments),
        });
    }

    let usage = completion.usage.map_or(
        Usage {
            model_calls: 1,
            ..Usage::default()
        },
        |u| Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            model_calls: 1,
        },
    );
    Ok(ModelResponse {
        parts,
        usage,
        finish_reason: finish_reason(choice.finish_reason.as_deref(), has_calls),
        directive: None,
    })
}

/// Arguments arrive as a JSON string; one that does not parse is kept as
/// the raw string so the tool (or the record) can show what the model said.
pub(super) fn parse_arguments(raw: Value) -> Value {
    match raw {
        Value::String(s) if s.trim().is_empty() => json!({}),
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Value::Null => json!({}),
        other => other,
    }
}

pub(super) fn finish_reason(reason: Option<&str>, has_calls: bool) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_wire_roles_skipping_events_and_reasoning() {
        let request = ModelRequest {
            messages: vec![
                Message::text("s", Role::System, "sys"),
                Message {
                    id: "u".into(),
                    role: Role::User,
                    parts: vec![
                        Part::Text {
                            text: "look".into(),
                        },
                        Part::Image {
                            uri: "data:image/png;base64,AAA".into(),
                            media_type: Some("image/png".into()),
                        },
                    ],
                },
                Message::text("e", Role::Event, "input rejected"),
                Message {
                    id: "a".into(),
                    role: Role::Assistant,
                    parts: vec![
                        Part::Reasoning {
                            text: "secret thoughts".into(),
                        },
                        Part::ToolCall {
                            id: "call_0".into(),
                            name: "calc".into(),
                            arguments: json!({"x": 1}),
                        },
                        Part::ToolCall {
                            id: "call_1".into(),
                            name: "calc".into(),
                            arguments: json!("{not json"),
                        },
                    ],
                },
                Message {
                    id: "t".into(),
                    role: Role::Tool,
                    parts: vec![
                        Part::ToolResult {
                            tool_call_id: "call_0".into(),
                            content: "1".into(),
                            is_error: false,
                        },
                        Part::ToolResult {
                            tool_call_id: "call_1".into(),
                            content: "bad".into(),
                            is_error: true,
                        },
                    ],
                },
                Message::text("a2", Role::Assistant, "done"),
            ],
            tools: vec![],
            iteration: 1,
        };
        let body = request_body("m", &OpenAiParams::default(), &request);
        assert_eq!(
            body,
            json!({"model": "m", "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}
                ]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "calc", "arguments": "{\"x\":1}"}},
                    {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": "{not json"}}
                ]},
                {"role": "tool", "tool_call_id": "call_0", "content": "1"},
                {"role": "tool", "tool_call_id": "call_1", "content": "bad"},
                {"role": "assistant", "content": "done"}
            ]})
        );
        assert!(!body.to_string().contains("secret thoughts"));
    }

    #[test]
    fn response_with_text_tool_calls_and_usage_parses() {
        let body = json!({
            "choices": [{"message": {"role": "assistant", "content": "thinking aloud",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{\"e\":\"1+1\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "calc", "arguments": "{oops"}}
                ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        });
        let r = parse_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            r.parts,
            vec![
                Part::Text {
                    text: "thinking aloud".into()
                },
                Part::ToolCall {
                    id: "c1".into(),
                    name: "calc".into(),
                    arguments: json!({"e": "1+1"})
                },
                Part::ToolCall {
                    id: "c2".into(),
                    name: "calc".into(),
                    arguments: json!("{oops")
                },
            ]
        );
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 5,
                model_calls: 1
            }
        );
    }

    #[test]
    fn finish_reasons_map_and_missing_choices_is_an_error() {
        let one = |reason: &str| {
            let body = json!({"choices": [{"message": {"content": "x"}, "finish_reason": reason}]});
            parse_response(body.to_string().as_bytes())
                .unwrap()
                .finish_reason
        };
        assert_eq!(one("stop"), FinishReason::Stop);
        assert_eq!(one("length"), FinishReason::Length);
        assert_eq!(one("content_filter"), FinishReason::ContentFilter);
        assert!(parse_response(br#"{"choices": []}"#).is_err());
        assert!(parse_response(b"<html>").is_err());
    }
}
