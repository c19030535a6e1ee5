//! The `Session` object's request and reply types, besides `TurnResult` and
//! `SessionView`: what `proto/` publishes as JSON Schemas.

use crate::model::{SessionCommand, TurnInput};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Request of `turn`, `submit` and `steer`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnBody {
    /// The input.
    pub input: TurnInput,
}

/// Reply of `submit` and `steer`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubmitReply {
    /// The input id (given, or derived from the invocation).
    pub input_id: String,
    /// Whether the id was already known (with the same content).
    pub duplicate: bool,
    /// FIFO position in the session's inbox.
    pub position: u64,
}

/// Request of `configure`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureBody {
    /// The session command (system prompt, context limit).
    pub command: SessionCommand,
    /// Idempotency id of the command (derived from the invocation if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// Reply of `configure`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConfigureReply {
    /// The command's id.
    pub command_id: String,
    /// Whether the id was already known (with the same command).
    pub duplicate: bool,
    /// FIFO position in the session's inbox: the command applies when the
    /// next input after it is claimed.
    pub position: u64,
}

/// Reply of `cancel`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CancelReply {
    /// Whether a running turn was asked to stop.
    pub cancelled: bool,
    /// The invocation running the turn, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// What happened.
    pub message: String,
}

/// Request of `approve`: a decision on a tool call waiting for approval.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// The waiting tool call (from the `approval_requested` event, or
    /// `view`'s `pending_waits`).
    pub call_id: String,
    /// `approve` or `reject`.
    pub decision: crate::model::Verdict,
    /// A note; a rejection's reaches the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Reply of `approve`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ApproveReply {
    /// The tool call.
    pub call_id: String,
    /// The wait it settled.
    pub wait_id: String,
    /// The decision as recorded.
    pub decision: crate::model::Verdict,
    /// Whether this same decision had been recorded before (the request
    /// was a repeat; nothing changed).
    pub duplicate: bool,
}

/// Request of `complete_tool`: the result of a tool call that answered
/// "pending".
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteToolBody {
    /// The pending tool call (from the `tool_pending` event, or `view`'s
    /// `pending_waits`, which lists every pending wait).
    pub call_id: String,
    /// Its result, as the model will see it.
    pub result: crate::model::ToolCompletion,
}

/// Reply of `complete_tool`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CompleteToolReply {
    /// The tool call.
    pub call_id: String,
    /// The wait it settled.
    pub wait_id: String,
    /// Whether this same result had been recorded before (nothing changed).
    pub duplicate: bool,
}

/// A handler's JSON request. ratchet decodes it itself, so a body that does
/// not decode is `400 invalid_request: …` like every other refusal (not
/// the SDK's own message), and the manifest publishes the same standard
/// schema as `proto/`.
pub struct Request<T>(Result<T, String>);

impl<T> Request<T> {
    /// The decoded request, or the `400 invalid_request` it earns.
    pub fn into_inner(self) -> Result<T, restate_sdk::errors::HandlerError> {
        self.0.map_err(|e| {
            restate_sdk::errors::TerminalError::new_with_code(
                400,
                format!("invalid_request: the body does not decode: {e}"),
            )
            .into()
        })
    }
}

impl<T> From<T> for Request<T> {
    fn from(value: T) -> Self {
        Request(Ok(value))
    }
}

impl<T: serde::de::DeserializeOwned> restate_sdk::serde::Deserialize for Request<T> {
    type Error = std::convert::Infallible;

    fn deserialize(bytes: &mut bytes::Bytes) -> Result<Self, Self::Error> {
        Ok(Request(
            serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        ))
    }
}

impl<T: Serialize> restate_sdk::serde::Serialize for Request<T> {
    type Error = serde_json::Error;

    fn serialize(&self) -> Result<bytes::Bytes, Self::Error> {
        match &self.0 {
            Ok(v) => serde_json::to_vec(v).map(bytes::Bytes::from),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<T: JsonSchema> restate_sdk::serde::PayloadMetadata for Request<T> {
    fn json_schema() -> Option<serde_json::Value> {
        Some(super::schemas::schema::<T>())
    }
}

/// A handler's JSON reply, published with its standard schema.
pub struct Reply<T>(pub T);

impl<T: Serialize> restate_sdk::serde::Serialize for Reply<T> {
    type Error = serde_json::Error;

    fn serialize(&self) -> Result<bytes::Bytes, Self::Error> {
        serde_json::to_vec(&self.0).map(bytes::Bytes::from)
    }
}

impl<T: serde::de::DeserializeOwned> restate_sdk::serde::Deserialize for Reply<T> {
    type Error = serde_json::Error;

    fn deserialize(bytes: &mut bytes::Bytes) -> Result<Self, Self::Error> {
        serde_json::from_slice(bytes).map(Reply)
    }
}

impl<T: JsonSchema> restate_sdk::serde::PayloadMetadata for Reply<T> {
    fn json_schema() -> Option<serde_json::Value> {
        Some(super::schemas::schema::<T>())
    }
}

/// The request of `view`, `cancel` and `drain`: nothing (no body and no
/// content type), or an empty JSON object sent as `application/json` (what
/// a typed client such as `@restatedev/restate-sdk-clients` sends for
/// `view({})`). Restate's ingress refuses `application/json` with an empty
/// body and `{}` without a content type; anything else is
/// `400 invalid_request`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// A [`NoInput`] as received: accepted or refused.
pub struct Empty(Result<(), String>);

impl Empty {
    /// No input, to send.
    pub fn none() -> Self {
        Empty(Ok(()))
    }

    /// `Ok` for no body or `{}`, else the `400 invalid_request` it earns.
    pub fn check(self) -> Result<(), restate_sdk::errors::HandlerError> {
        Request::<()>(self.0).into_inner()
    }
}

impl restate_sdk::serde::Deserialize for Empty {
    type Error = std::convert::Infallible;

    fn deserialize(bytes: &mut bytes::Bytes) -> Result<Self, Self::Error> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Empty(Ok(())));
        }
        let refused = |what: String| format!("this handler takes no input, or {{}}; got {what}");
        let parsed = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(map)) if map.is_empty() => Ok(()),
            Ok(serde_json::Value::Null) => Ok(()),
            Ok(other) => Err(refused(format!("{:.60}", other.to_string()))),
            Err(e) => Err(refused(format!("no JSON: {e}"))),
        };
        Ok(Empty(parsed))
    }
}

impl restate_sdk::serde::Serialize for Empty {
    type Error = std::convert::Infallible;

    fn serialize(&self) -> Result<bytes::Bytes, Self::Error> {
        Ok(bytes::Bytes::new())
    }
}

impl restate_sdk::serde::PayloadMetadata for Empty {
    fn json_schema() -> Option<serde_json::Value> {
        Some(super::schemas::schema::<NoInput>())
    }

    fn input_metadata() -> restate_sdk::serde::InputMetadata {
        restate_sdk::serde::InputMetadata {
            accept_content_type: "application/json",
            is_required: false,
        }
    }
}
