//! Ephemeral live output of running turns: a streaming model's deltas and
//! the reset a retried attempt starts with. None of it is journaled or
//! stored (the model step records the assembled answer): it goes to
//! whoever follows the session's event stream ([`crate::observe`]) at that
//! moment, as `model_delta` and `model_attempt_reset` events without an SSE
//! id, and a replayed turn, whose model steps come from the journal, sends
//! none.
//!
//! The model step runs each provider call inside [`in_call`], which tags it
//! with the session, turn, step and attempt; [`LiveDeltas`] is the
//! [`DeltaSink`] that reads that tag and publishes each delta on this
//! process's bus. Publishing costs nothing while nobody follows.

use crate::llm::{DeltaSink, ModelDelta};
use serde::Serialize;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::OnceLock;
use tokio::sync::broadcast;

/// Live events a slow follower may fall behind by before it misses some.
const BUS: usize = 4096;

/// Which model call a piece of live output belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveCall {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// The model step (`model:{i}`, or a frame's).
    pub step: String,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// One piece of live output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveEvent {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// The model step.
    pub step: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// `model_delta` or `model_attempt_reset`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The delta (`model_delta`): `{"text": ..}`, `{"reasoning": ..}` or
    /// `{"tool_call": {"index", "id", "name", "arguments"}}`.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub delta: Value,
}

tokio::task_local! {
    static CALL: LiveCall;
}

fn bus() -> &'static broadcast::Sender<LiveEvent> {
    static SENDER: OnceLock<broadcast::Sender<LiveEvent>> = OnceLock::new();
    SENDER.get_or_init(|| broadcast::channel(BUS).0)
}

/// Follows every session's live output in this process.
pub fn subscribe() -> broadcast::Receiver<LiveEvent> {
    bus().subscribe()
}

fn publish(call: &LiveCall, kind: &'static str, delta: Value) {
    let bus = bus();
    if bus.receiver_count() == 0 {
        return;
    }
    let _ = bus.send(LiveEvent {
        session_id: call.session_id.clone(),
        turn_id: call.turn_id.clone(),
        step: call.step.clone(),
        attempt: call.attempt,
        kind,
        delta,
    });
}

/// Runs one provider call tagged as `call`; an attempt after the first
/// first publishes `model_attempt_reset`, so a follower drops the partial
/// text of the one before.
pub async fn in_call<F: Future>(call: LiveCall, f: F) -> F::Output {
    if call.attempt > 1 {
        publish(&call, "model_attempt_reset", Value::Null);
    }
    CALL.scope(call, f).await
}

/// The [`DeltaSink`] that publishes a tagged call's deltas on the bus
/// (a delta outside [`in_call`] goes nowhere).
pub struct LiveDeltas;

impl DeltaSink for LiveDeltas {
    fn delta(&self, _iteration: u32, delta: &ModelDelta) {
        let value = match delta {
            ModelDelta::Text(t) => json!({ "text": t }),
            ModelDelta::Reasoning(t) => json!({ "reasoning": t }),
            ModelDelta::ToolCall {
                index,
                id,
                name,
                arguments,
            } => json!({ "tool_call": {
                "index": index, "id": id, "name": name, "arguments": arguments
            }}),
        };
        let _ = CALL.try_with(|call| publish(call, "model_delta", value));
    }
}
