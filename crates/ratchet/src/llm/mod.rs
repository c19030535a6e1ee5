//! Model providers: the [`ModelProvider`] trait and its implementations —
//! a scripted provider (deterministic, from a JSON file), the offline `demo`
//! model, an OpenAI-compatible Chat Completions client and an Anthropic
//! Messages API client.

#[cfg(feature = "anthropic")]
mod anthropic;
pub mod delta;
mod demo;
#[cfg(any(feature = "openai", feature = "anthropic"))]
mod http;
#[cfg(feature = "openai")]
mod openai;
mod scripted;
#[cfg(test)]
mod test_server;

#[cfg(feature = "anthropic")]
pub use anthropic::{AnthropicClient, AnthropicConfig};
pub use delta::{DeltaSink, ModelDelta, SharedDeltaSink};
pub use demo::DemoModel;
#[cfg(feature = "openai")]
pub use openai::{OpenAiClient, OpenAiConfig, OpenAiParams};
pub use scripted::{
    Script, ScriptEntry, ScriptError, ScriptFailure, ScriptSwitchFrame, ScriptToolCall,
    ScriptUsage, ScriptedProvider,
};

use crate::model::{Message, Part, Usage};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A tool as the model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolSpec {
    /// Tool name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// One model call's input: the context and the tools on offer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The messages, system prompt first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Which iteration of the effect loop this is (0 for the first call).
    pub iteration: u32,
}

/// Why the model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A complete answer.
    Stop,
    /// It asks for tools.
    ToolCalls,
    /// It ran out of tokens.
    Length,
    /// A content filter stopped it.
    ContentFilter,
}

/// Something the model asks of the runtime beyond text and tool calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelDirective {
    /// End the turn with a structured value.
    FinalValue {
        /// The value.
        value: serde_json::Value,
    },
    /// Hand over to an agent frame that runs `task` as the next turn.
    SwitchFrame {
        /// The frame.
        frame_id: String,
        /// Its task.
        task: String,
    },
    /// End the turn reporting an error as the model's answer.
    SubmitError {
        /// The error.
        message: String,
    },
}

/// One model call's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelResponse {
    /// Text, reasoning and tool-call parts, in order.
    pub parts: Vec<Part>,
    /// Tokens used.
    pub usage: Usage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// An instruction to the runtime, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directive: Option<ModelDirective>,
}

/// A provider failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, JsonSchema)]
#[error("{message}")]
pub struct ProviderError {
    /// Whether trying again may help (timeouts, 429, 5xx).
    pub retryable: bool,
    /// What went wrong (never contains credentials).
    pub message: String,
}

impl ProviderError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        ProviderError {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure not worth retrying.
    pub fn terminal(message: impl Into<String>) -> Self {
        ProviderError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// A language model the effect loop can call.
#[async_trait]
pub trait ModelProvider: Send + Sync {
    /// A name for logs and records (e.g. `demo`, `openai:gpt-4o-mini`).
    fn name(&self) -> String;

    /// Runs one completion.
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError>;
}
