//! Steering: user messages that join the running turn. A steer is an inbox
//! entry (`InboxPayload::Steer`, enqueued by the `steer` handler or `ratchet
//! submit --steer`). Each model step reads the session's pending steers
//! inside its own body, after the ones this turn already took, and records
//! them in its record: the model sees them as user messages after the tool
//! results before that call, and replay serves the same ones. They stay
//! pending until the turn's commit completes them with its own input, so a
//! turn that never commits (killed, settled) leaves them to run later as
//! ordinary inputs, in their FIFO place. A steer no model call takes (it
//! came during the last one, or no turn ran) runs as an ordinary input.

use super::TurnCx;
use super::prepare::user_message;
use crate::journal::StepError;
use crate::model::Message;
use serde::{Deserialize, Serialize};

/// Most steers one model call takes; the rest wait for the next call.
pub const MAX_STEERS_PER_CALL: usize = 8;

/// A steering message a model call took, as its step records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Steered {
    /// The steer's inbox id; the turn's commit completes it.
    pub input_id: String,
    /// Its FIFO position: the next call reads only steers after it.
    pub seq: u64,
    /// The user message the model saw (deterministic id).
    pub message: Message,
}

/// Reads the steers pending after `after_seq`, inside a model step's body,
/// as user messages numbered from `first_ordinal` of the turn's messages.
/// Their inputs together stay within one input's size limit (always at
/// least one), so a step record holding them fits where an input fits.
pub async fn take(
    cx: &TurnCx<'_>,
    after_seq: u64,
    first_ordinal: usize,
) -> Result<Vec<Steered>, StepError> {
    let rt = cx.rt;
    let pending = rt
        .store
        .pending_steers(cx.session, after_seq, MAX_STEERS_PER_CALL)
        .await
        .map_err(super::step_err)?;
    let mut taken = Vec::new();
    let mut bytes = 0;
    for entry in pending {
        let Some(input) = entry.payload.input() else {
            continue;
        };
        bytes += serde_json::to_vec(input).map(|v| v.len()).unwrap_or(0);
        if !taken.is_empty() && bytes > rt.config.max_input_bytes {
            break;
        }
        let id = cx.turn.derive("msg", first_ordinal + taken.len());
        taken.push(Steered {
            message: user_message(id, input),
            input_id: entry.id,
            seq: entry.seq,
        });
    }
    Ok(taken)
}
