//! Phase 2, prepare: validate and normalize the input into the turn's user
//! message, let plugins veto it, and plan the model context (system prompt,
//! how much history to keep). Bad input is not a runtime error: the verdict
//! records it and the turn commits `Stopped(InvalidInput)`.

use super::claim::ClaimRecord;
use super::context::plan_context_start;
use super::{TurnCx, input_hash, step_err};
use crate::journal::{JournalError, StepName};
use crate::model::{InputItem, Message, Part, Role, StopReason, TurnInput};
use serde::{Deserialize, Serialize};

/// Whether the turn goes on to the effect loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The input is good.
    Accepted,
    /// The turn stops here.
    Rejected {
        /// `InvalidInput` or `PluginAbort`.
        reason: StopReason,
        /// Why.
        message: String,
    },
}

/// What the prepare step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareRecord {
    /// The turn's user message, as older builds recorded it; this build
    /// derives it from the claimed input (see [`PrepareRecord::user_message_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_message: Option<Message>,
    /// The verdict.
    pub verdict: Verdict,
    /// The system prompt for every model call of the turn.
    pub system_prompt: String,
    /// First message kept in context, counted in the tail of at most
    /// `context_limit` history messages the turn reads.
    pub context_start: usize,
}

impl PrepareRecord {
    /// The turn's user message when the input was accepted: a pure function
    /// of the turn id and the claimed input, so it is not journaled again.
    pub fn user_message_for(
        &self,
        turn: &crate::model::TurnId,
        input: &TurnInput,
    ) -> Option<Message> {
        match self.verdict {
            Verdict::Accepted => Some(
                self.user_message
                    .clone()
                    .unwrap_or_else(|| user_message(turn.derive("msg", 0), input)),
            ),
            Verdict::Rejected { .. } => None,
        }
    }
}

/// Checks an input; the error says what is wrong with it.
pub fn validate_input(input: &TurnInput, max_bytes: usize) -> Result<(), String> {
    let size = serde_json::to_vec(input)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(format!(
            "input is {size} bytes, over the limit of {max_bytes}"
        ));
    }
    if input.items.is_empty() {
        return Err("input has no items".into());
    }
    let mut has_content = false;
    for item in &input.items {
        match item {
            InputItem::Text { text } => has_content |= !text.trim().is_empty(),
            InputItem::Image { uri, .. } => {
                resolve_image(uri)?;
                has_content = true;
            }
        }
    }
    if !has_content {
        return Err("input is empty".into());
    }
    Ok(())
}

/// An image reference resolves when it is an http(s) URL with a host or a
/// well-formed `data:image/...;base64,` URI.
fn resolve_image(uri: &str) -> Result<(), String> {
    if let Some(rest) = uri.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(format!(
                "image reference '{}' is a data URI without data",
                short(uri)
            ));
        };
        if !meta.starts_with("image/") || !meta.ends_with(";base64") || data.is_empty() {
            return Err(format!(
                "image reference '{}' is not a base64 image data URI",
                short(uri)
            ));
        }
        return Ok(());
    }
    for scheme in ["https://", "http://"] {
        if let Some(rest) = uri.strip_prefix(scheme) {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return Err(format!("image reference '{}' has no host", short(uri)));
            }
            return Ok(());
        }
    }
    Err(format!(
        "image reference '{}' does not resolve: use an http(s) URL or a data:image URI",
        short(uri)
    ))
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// The user message an accepted input becomes.
pub fn user_message(id: String, input: &TurnInput) -> Message {
    let parts = input
        .items
        .iter()
        .map(|item| match item {
            InputItem::Text { text } => Part::Text { text: text.clone() },
            InputItem::Image { uri, media_type } => Part::Image {
                uri: uri.clone(),
                media_type: media_type.clone(),
            },
        })
        .collect();
    Message {
        id,
        role: Role::User,
        parts,
    }
}

/// Runs the prepare step.
pub async fn run(cx: &TurnCx<'_>, claim: &ClaimRecord) -> Result<PrepareRecord, JournalError> {
    let rt = cx.rt;
    let hash = input_hash(&("prepare", &claim.input, &claim.settings, claim.base_version))?;
    cx.step(StepName::Prepare, &hash, async move {
        let mut system_prompt = claim
            .settings
            .system_prompt
            .clone()
            .unwrap_or_else(|| rt.config.default_system_prompt.clone());
        let turn = cx.turn_info(&claim.settings);
        for p in rt.plugins.iter() {
            if let Some(extra) = p.system_prompt(&turn) {
                system_prompt = format!("{system_prompt}\n\n{extra}");
            }
        }
        let limit = claim
            .settings
            .context_limit
            .unwrap_or(rt.config.max_context_messages) as usize;
        // Only the tail the context can hold is read: a turn's cost does not
        // grow with the session's history.
        let history = cx
            .history
            .at(rt.store.as_ref(), cx.session, claim.base_version, limit)
            .await
            .map_err(step_err)?;
        let context_start = plan_context_start(&history, limit);
        let rejected = |reason, message: String| PrepareRecord {
            user_message: None,
            verdict: Verdict::Rejected { reason, message },
            system_prompt: system_prompt.clone(),
            context_start,
        };
        if let Err(message) = validate_input(&claim.input, rt.config.max_input_bytes) {
            return Ok(rejected(StopReason::InvalidInput, message));
        }
        for p in rt.plugins.iter() {
            if let Err(message) = p.prepare(&turn, &claim.input).await {
                return Ok(rejected(
                    StopReason::PluginAbort,
                    format!("plugin '{}' aborted the turn: {message}", p.name()),
                ));
            }
        }
        Ok(PrepareRecord {
            user_message: None,
            verdict: Verdict::Accepted,
            system_prompt,
            context_start,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> TurnInput {
        TurnInput::text(t)
    }

    fn image(uri: &str) -> TurnInput {
        TurnInput {
            items: vec![InputItem::Image {
                uri: uri.into(),
                media_type: None,
            }],
            input_id: None,
            trace_turn_id: None,
        }
    }

    #[test]
    fn input_validation_names_what_is_wrong() {
        assert!(validate_input(&text("hi"), 1000).is_ok());
        assert!(
            validate_input(&text("   "), 1000)
                .unwrap_err()
                .contains("empty")
        );
        let none = TurnInput {
            items: vec![],
            input_id: None,
            trace_turn_id: None,
        };
        assert!(
            validate_input(&none, 1000)
                .unwrap_err()
                .contains("no items")
        );
        assert!(
            validate_input(&text(&"x".repeat(2000)), 1000)
                .unwrap_err()
                .contains("over the limit")
        );
        assert!(validate_input(&image("https://example.com/a.png"), 1000).is_ok());
        assert!(validate_input(&image("data:image/png;base64,iVBOR"), 1000).is_ok());
        assert!(
            validate_input(&image("file:///etc/passwd"), 1000)
                .unwrap_err()
                .contains("does not resolve")
        );
        assert!(
            validate_input(&image("https:///x.png"), 1000)
                .unwrap_err()
                .contains("no host")
        );
        assert!(validate_input(&image("data:text/plain;base64,AA"), 1000).is_err());
    }
}
