//! Messages and their parts: the history a session accumulates.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who a message is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The person (or program) driving the session.
    User,
    /// The model.
    Assistant,
    /// A tool's result, answering an assistant tool call.
    Tool,
    /// A runtime notice recorded in history (e.g. rejected input).
    Event,
}

/// One piece of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A reference to an image (a URL or `data:` URI); the bytes are not stored.
    Image {
        /// Where the image is.
        uri: String,
        /// Its media type, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
    },
    /// The model asks for a tool to run.
    ToolCall {
        /// Call id, unique within the turn.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as JSON.
        arguments: serde_json::Value,
    },
    /// A tool's answer to a call.
    ToolResult {
        /// The call answered.
        tool_call_id: String,
        /// The result text.
        content: String,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// Model reasoning kept for the record.
    Reasoning {
        /// The reasoning text.
        text: String,
    },
}

/// A message in a session's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// Deterministic id derived from the turn id and an ordinal.
    pub id: String,
    /// Who it is from.
    pub role: Role,
    /// Its parts, in order.
    pub parts: Vec<Part>,
}

impl Message {
    /// A message made of one text part.
    pub fn text(id: impl Into<String>, role: Role, text: impl Into<String>) -> Self {
        Message {
            id: id.into(),
            role,
            parts: vec![Part::Text { text: text.into() }],
        }
    }

    /// All text parts joined by newlines.
    pub fn text_content(&self) -> String {
        let texts: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }

    /// The tool calls this message makes.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &serde_json::Value)> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some((id.as_str(), name.as_str(), arguments)),
            _ => None,
        })
    }

    /// The tool call ids this message answers.
    pub fn tool_result_ids(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolResult { tool_call_id, .. } => Some(tool_call_id.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_json_form_is_stable_and_round_trips() {
        let m = Message {
            id: "t:msg:1".into(),
            role: Role::Assistant,
            parts: vec![
                Part::Reasoning { text: "r".into() },
                Part::Text { text: "hi".into() },
                Part::ToolCall {
                    id: "call_0".into(),
                    name: "calculator".into(),
                    arguments: json!({"expression": "1+1"}),
                },
                Part::ToolResult {
                    tool_call_id: "call_0".into(),
                    content: "2".into(),
                    is_error: false,
                },
                Part::Image {
                    uri: "https://x/y.png".into(),
                    media_type: None,
                },
            ],
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            json!({"id":"t:msg:1","role":"assistant","parts":[
                {"type":"reasoning","text":"r"},
                {"type":"text","text":"hi"},
                {"type":"tool_call","id":"call_0","name":"calculator","arguments":{"expression":"1+1"}},
                {"type":"tool_result","tool_call_id":"call_0","content":"2","is_error":false},
                {"type":"image","uri":"https://x/y.png"}
            ]})
        );
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.tool_calls().count(), 1);
        assert_eq!(back.tool_result_ids().collect::<Vec<_>>(), vec!["call_0"]);
    }

    #[test]
    fn unknown_part_type_is_rejected() {
        let r = serde_json::from_value::<Part>(json!({"type":"video","uri":"x"}));
        assert!(r.is_err());
    }
}
