//! The wire contract: JSON Schemas of every `Session` handler's request and
//! response and of session events, generated from the Rust types. They are
//! checked in under `proto/`; a test fails when they drift from the types.

use super::{CancelReply, ConfigureBody, ConfigureReply, SessionView, SubmitReply, TurnBody};
use crate::engine::TurnResult;
use crate::model::StoredEvent;
use schemars::{JsonSchema, schema_for};

fn schema<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schema_for!(T)).unwrap_or_default()
}

/// Every schema of the contract, as (file name, schema).
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("Session.turn.request.json", schema::<TurnBody>()),
        ("Session.turn.response.json", schema::<TurnResult>()),
        ("Session.submit.request.json", schema::<TurnBody>()),
        ("Session.submit.response.json", schema::<SubmitReply>()),
        (
            "Session.drain.response.json",
            schema::<Option<TurnResult>>(),
        ),
        ("Session.view.response.json", schema::<SessionView>()),
        ("Session.cancel.response.json", schema::<CancelReply>()),
        ("Session.configure.request.json", schema::<ConfigureBody>()),
        (
            "Session.configure.response.json",
            schema::<ConfigureReply>(),
        ),
        ("session-event.json", schema::<StoredEvent>()),
    ]
}

/// A schema file's text: pretty JSON and a final newline.
pub fn render(schema: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}
