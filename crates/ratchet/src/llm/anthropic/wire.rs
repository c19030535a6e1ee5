//! The Messages API wire format: our messages and tools to a request body,
//! and a response body back to a [`ModelResponse`]. Pure functions, no IO.
//!
//! The API takes the system prompt apart from the messages, wants roles to
//! alternate (consecutive messages of one role are merged into one), and
//! carries tool results as `tool_result` blocks of a user message.

use super::AnthropicConfig;
use crate::llm::{FinishReason, ModelRequest, ModelResponse};
use crate::model::{Message, Part, Role, Usage};
use serde::Deserialize;
use serde_json::{Value, json};

/// The JSON body of a `POST /v1/messages` for this request.
pub(super) fn request_body(config: &AnthropicConfig, request: &ModelRequest) -> Value {
    let system: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(Message::text_content)
        .filter(|t| !t.is_empty())
        .collect();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &request.messages {
        let (role, blocks) = match m.role {
            Role::User => ("user", user_blocks(m)),
            Role::Tool => ("user", tool_result_blocks(m)),
            Role::Assistant => ("assistant", assistant_blocks(m)),
            Role::System | Role::Event => continue,
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    let mut body = json!({
        "model": config.model,
        "max_tokens": config.max_tokens,
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = Value::String(system.join("\n\n"));
    }
    if let Some(t) = config.temperature {
        body["temperature"] = json!(t);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.parameters,
                })
            })
            .collect();
        if let Some(choice) = &config.tool_choice {
            body["tool_choice"] = choice.clone();
        }
    }
    body
}

fn user_blocks(m: &Message) -> Vec<Value> {
    m.parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text } if !text.is_empty() => Some(json!({"type": "text", "text": text})),
            Part::Image { uri, media_type } => Some(image_block(uri, media_type.as_deref())),
            _ => None,
        })
        .collect()
}

/// A `data:` URI goes as base64 source, anything else as a URL source.
fn image_block(uri: &str, media_type: Option<&str>) -> Value {
    if let Some(rest) = uri.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(";base64,")
    {
        let media = media_type.unwrap_or(meta);
        return json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": uri}})
}

fn tool_result_blocks(m: &Message) -> Vec<Value> {
    m.parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolResult {
                tool_call_id,
                content,
                is_error,
            } => {
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": tool_call_id,
                    "content": content,
                });
                if *is_error {
                    block["is_error"] = json!(true);
                }
                Some(block)
            }
            _ => None,
        })
        .collect()
}

/// Text and tool calls; reasoning is not sent back (the API would want its
/// signature, which is not kept).
fn assistant_blocks(m: &Message) -> Vec<Value> {
    m.parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text } if !text.is_empty() => Some(json!({"type": "text", "text": text})),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                // `input` must be an object; arguments we could not parse
                // when they came back are sent under one key.
                let input = match arguments {
                    Value::Object(_) => arguments.clone(),
                    other => json!({ "raw": other }),
                };
                Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
            }
            _ => None,
        })
        .collect()
}

#[derive(Deserialize)]
struct WireMessage {
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Parses a successful response body; the error says what was wrong.
pub(super) fn parse_response(body: &[u8]) -> Result<ModelResponse, String> {
    let message: WireMessage =
        serde_json::from_slice(body).map_err(|e| format!("unexpected messages response: {e}"))?;
    let mut parts = Vec::new();
    for block in message.content {
        let text = |k: &str| block[k].as_str().unwrap_or_default().to_string();
        match block["type"].as_str() {
            Some("text") => parts.push(Part::Text { text: text("text") }),
            Some("thinking") => parts.push(Part::Reasoning {
                text: text("thinking"),
            }),
            Some("tool_use") => parts.push(Part::ToolCall {
                id: text("id"),
                name: text("name"),
                arguments: block.get("input").cloned().unwrap_or_else(|| json!({})),
            }),
            // Redacted thinking, server tool blocks: nothing the turn uses.
            _ => {}
        }
    }
    let has_calls = parts.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    let usage = message.usage.map_or(Usage::default(), |u| Usage {
        input_tokens: u.input_tokens
            + u.cache_creation_input_tokens.unwrap_or(0)
            + u.cache_read_input_tokens.unwrap_or(0),
        output_tokens: u.output_tokens,
        model_calls: 1,
    });
    let finish_reason = match message.stop_reason.as_deref() {
        Some("max_tokens") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        Some("tool_use") => FinishReason::ToolCalls,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    };
    Ok(ModelResponse {
        parts,
        usage: Usage {
            model_calls: 1,
            ..usage
        },
        finish_reason,
        directive: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolSpec;

    fn msg(role: Role, parts: Vec<Part>) -> Message {
        Message {
            id: "m".into(),
            role,
            parts,
        }
    }

    #[test]
    fn system_is_apart_roles_alternate_and_tool_results_are_user_blocks() {
        let request = ModelRequest {
            messages: vec![
                Message::text("s", Role::System, "be exact"),
                Message::text("u", Role::User, "What is 1+1?"),
                msg(
                    Role::Assistant,
                    vec![
                        Part::Reasoning { text: "hm".into() },
                        Part::ToolCall {
                            id: "toolu_1".into(),
                            name: "calculator".into(),
                            arguments: json!({"expression": "1+1"}),
                        },
                    ],
                ),
                msg(
                    Role::Tool,
                    vec![Part::ToolResult {
                        tool_call_id: "toolu_1".into(),
                        content: "2".into(),
                        is_error: false,
                    }],
                ),
                // A steer right after the results: one user message.
                Message::text("st", Role::User, "in words"),
                Message::text("e", Role::Event, "runtime notice"),
            ],
            tools: vec![ToolSpec {
                name: "calculator".into(),
                description: "Evaluates arithmetic".into(),
                parameters: json!({"type": "object"}),
            }],
            iteration: 1,
        };
        let mut config = AnthropicConfig::new("http://x", "claude-test");
        config.temperature = Some(0.0);
        config.tool_choice = Some(json!({"type": "auto"}));
        let body = request_body(&config, &request);
        assert_eq!(
            body,
            json!({
                "model": "claude-test",
                "max_tokens": 4096,
                "system": "be exact",
                "temperature": 0.0,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "What is 1+1?"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {"expression": "1+1"}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"},
                        {"type": "text", "text": "in words"}
                    ]}
                ],
                "tools": [{"name": "calculator", "description": "Evaluates arithmetic",
                           "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "auto"}
            })
        );
    }

    #[test]
    fn images_errors_and_unparsed_arguments_map_to_blocks() {
        let request = ModelRequest {
            messages: vec![
                msg(
                    Role::User,
                    vec![
                        Part::Image {
                            uri: "data:image/png;base64,iVBORw0K".into(),
                            media_type: None,
                        },
                        Part::Image {
                            uri: "https://example.com/a.jpg".into(),
                            media_type: None,
                        },
                    ],
                ),
                msg(
                    Role::Assistant,
                    vec![Part::ToolCall {
                        id: "t".into(),
                        name: "x".into(),
                        arguments: json!("{not json"),
                    }],
                ),
                msg(
                    Role::Tool,
                    vec![Part::ToolResult {
                        tool_call_id: "t".into(),
                        content: "boom".into(),
                        is_error: true,
                    }],
                ),
            ],
            tools: vec![],
            iteration: 0,
        };
        let body = request_body(&AnthropicConfig::new("http://x", "m"), &request);
        let m = &body["messages"];
        assert_eq!(
            m[0]["content"][0]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0K"})
        );
        assert_eq!(
            m[0]["content"][1]["source"],
            json!({"type": "url", "url": "https://example.com/a.jpg"})
        );
        assert_eq!(m[1]["content"][0]["input"], json!({"raw": "{not json"}));
        assert_eq!(m[2]["content"][0]["is_error"], true);
        assert!(body.get("tools").is_none() && body.get("system").is_none());
    }

    #[test]
    fn a_tool_use_response_parses_with_usage_and_stop_reason() {
        let body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [
                {"type": "thinking", "thinking": "need the tool", "signature": "sig"},
                {"type": "text", "text": "Let me compute."},
                {"type": "tool_use", "id": "toolu_01", "name": "calculator", "input": {"expression": "6*7"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 12,
                      "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7}
        });
        let r = parse_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            r.parts,
            vec![
                Part::Reasoning {
                    text: "need the tool".into()
                },
                Part::Text {
                    text: "Let me compute.".into()
                },
                Part::ToolCall {
                    id: "toolu_01".into(),
                    name: "calculator".into(),
                    arguments: json!({"expression": "6*7"}),
                },
            ]
        );
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (42, 12));
        assert_eq!(r.usage.model_calls, 1);
    }

    #[test]
    fn stop_reasons_map_and_a_bad_body_is_an_error() {
        let reason = |r: &str| {
            let body = json!({"content": [{"type": "text", "text": "x"}], "stop_reason": r});
            parse_response(body.to_string().as_bytes())
                .unwrap()
                .finish_reason
        };
        assert_eq!(reason("end_turn"), FinishReason::Stop);
        assert_eq!(reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(reason("max_tokens"), FinishReason::Length);
        assert_eq!(reason("refusal"), FinishReason::ContentFilter);
        assert!(parse_response(b"{\"choices\": []}").is_err());
    }
}
