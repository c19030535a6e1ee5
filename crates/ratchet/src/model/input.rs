//! What a caller hands a session: turn inputs and session commands.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One item of a turn input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputItem {
    /// Text from the user.
    Text {
        /// The text.
        text: String,
    },
    /// An image reference (`https://`, `http://` or `data:image/...`).
    Image {
        /// Where the image is.
        uri: String,
        /// Its media type, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
    },
}

/// The input of one turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnInput {
    /// The items, in order.
    pub items: Vec<InputItem>,
    /// Caller-chosen id; enqueueing the same id twice is a no-op.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_id: Option<String>,
    /// Caller-chosen turn id for tracing; derived from the input id otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_turn_id: Option<String>,
}

impl TurnInput {
    /// An input of one text item.
    pub fn text(text: impl Into<String>) -> Self {
        TurnInput {
            items: vec![InputItem::Text { text: text.into() }],
            input_id: None,
            trace_turn_id: None,
        }
    }

    /// The same input with an input id.
    pub fn with_input_id(mut self, id: impl Into<String>) -> Self {
        self.input_id = Some(id.into());
        self
    }
}

/// A command that changes session settings; applied by the next turn's claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionCommand {
    /// Replace the session's system prompt.
    SetSystemPrompt {
        /// The new prompt.
        prompt: String,
    },
    /// Keep at most this many history messages in the model's context.
    SetContextLimit {
        /// Message budget.
        max_messages: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn turn_input_json_round_trips() {
        let i = TurnInput {
            items: vec![
                InputItem::Text { text: "hi".into() },
                InputItem::Image {
                    uri: "data:image/png;base64,AA==".into(),
                    media_type: Some("image/png".into()),
                },
            ],
            input_id: Some("in-1".into()),
            trace_turn_id: None,
        };
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(
            v,
            json!({"items":[{"type":"text","text":"hi"},
                {"type":"image","uri":"data:image/png;base64,AA==","media_type":"image/png"}],
                "input_id":"in-1"})
        );
        assert_eq!(serde_json::from_value::<TurnInput>(v).unwrap(), i);
    }

    #[test]
    fn turn_input_rejects_missing_items_and_unknown_fields() {
        assert!(serde_json::from_value::<TurnInput>(json!({"input_id":"x"})).is_err());
        assert!(serde_json::from_value::<TurnInput>(json!({"items":[],"bogus":1})).is_err());
    }

    #[test]
    fn session_command_json_round_trips() {
        let c = SessionCommand::SetSystemPrompt {
            prompt: "be brief".into(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({"command":"set_system_prompt","prompt":"be brief"})
        );
        assert_eq!(serde_json::from_value::<SessionCommand>(v).unwrap(), c);
    }
}
