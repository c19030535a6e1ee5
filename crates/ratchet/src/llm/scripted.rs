//! A deterministic [`ModelProvider`] that serves responses from a script:
//! for tests, the crash matrix and demos that must not depend on a real model.
//!
//! # Script format
//!
//! A JSON object with exactly one of three keys:
//!
//! * `"turns": [[entry, ...], ...]` — **recommended.** The outer index is the
//!   number of `user` messages in the request minus one (which turn of the
//!   session this is; a steering message counts too), the inner index is `request.iteration`. The answer is a
//!   pure function of the request, so it is the same after a crash and restart
//!   or under replay.
//! * `"every_turn": [entry, ...]` — the same entries, by `request.iteration`,
//!   for every turn of every session: a workload of identical turns (the
//!   benchmark's), however long the sessions grow.
//! * `"responses": [entry, ...]` — served in call order by an in-memory
//!   cursor. Simple, but a restarted process starts again at the first entry.
//!
//! Every entry is an object whose keys are all optional:
//!
//! ```json
//! {
//!   "text": "The answer",
//!   "reasoning": "Why",
//!   "tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "1+1"}}],
//!   "usage": {"input_tokens": 10, "output_tokens": 5},
//!   "final_value": {"any": "json"},
//!   "switch_frame": {"frame_id": "researcher", "task": "Find X"},
//!   "submit_error": "cannot do that",
//!   "error": {"retryable": false, "message": "provider exploded"},
//!   "fail_times": 2
//! }
//! ```
//!
//! * A tool call's `id` defaults to `call_{k}` (its position) and `arguments`
//!   to `{}`. The finish reason is `tool_calls` when there are tool calls,
//!   else `stop`; `usage.model_calls` is always 1.
//! * At most one of `final_value`, `switch_frame`, `submit_error` (they become
//!   the response's [`ModelDirective`]).
//! * `error` makes the call fail with that [`ProviderError`] (`retryable`
//!   defaults to `false`); an error entry carries nothing else. In
//!   `responses` mode an error entry is consumed like any other, so
//!   `[{"error": {"retryable": true, "message": "x"}}, {"text": "ok"}]` fails
//!   once and then answers.
//! * `fail_times: N` makes the first N calls that reach this entry fail with a
//!   retryable error before it is served; attempts are counted per entry in
//!   memory (and start again after a restart).
//!
//! Unknown keys anywhere are an error, so a typo never silently changes a test.

use super::{
    FinishReason, ModelDirective, ModelProvider, ModelRequest, ModelResponse, ProviderError,
};
use crate::model::{Part, Role, Usage};
use async_trait::async_trait;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read script file '{path}': {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not valid JSON or does not match the script format.
    #[error("script {origin} is malformed: {source}")]
    Malformed {
        /// Where the script came from (a path, or `inline script`).
        origin: String,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The JSON parses but breaks a rule of the format.
    #[error("script {origin} is invalid at {at}: {reason}")]
    Invalid {
        /// Where the script came from.
        origin: String,
        /// Which entry (e.g. `turns[1][0]`), or `script` for the whole file.
        at: String,
        /// The rule broken.
        reason: String,
    },
}

impl ScriptError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ScriptError::Io { .. } => "script_unreadable",
            ScriptError::Malformed { .. } => "script_malformed",
            ScriptError::Invalid { .. } => "script_invalid",
        }
    }
}

/// A script: which entry answers which call.
#[derive(Clone, Debug, PartialEq)]
pub enum Script {
    /// Entries served in call order (`"responses"`).
    Sequence(Vec<ScriptEntry>),
    /// Entries chosen by `[user messages - 1][iteration]` (`"turns"`).
    Turns(Vec<Vec<ScriptEntry>>),
    /// Entries chosen by `[iteration]` for every turn (`"every_turn"`).
    EveryTurn(Vec<ScriptEntry>),
}

/// One scripted model answer (or failure).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptEntry {
    /// Assistant text.
    #[serde(default)]
    pub text: Option<String>,
    /// Reasoning, placed before the text.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// Tool calls, in order.
    #[serde(default)]
    pub tool_calls: Vec<ScriptToolCall>,
    /// Tokens to report.
    #[serde(default)]
    pub usage: Option<ScriptUsage>,
    /// End the turn with this value (present even when it is JSON `null`).
    #[serde(default, deserialize_with = "present")]
    pub final_value: Option<serde_json::Value>,
    /// Hand over to an agent frame.
    #[serde(default)]
    pub switch_frame: Option<ScriptSwitchFrame>,
    /// End the turn reporting this error as the answer.
    #[serde(default)]
    pub submit_error: Option<String>,
    /// Fail the call with this provider error.
    #[serde(default)]
    pub error: Option<ScriptFailure>,
    /// Fail this many attempts (retryably) before serving the entry.
    #[serde(default)]
    pub fail_times: u32,
}

/// A scripted tool call.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptToolCall {
    /// Call id; defaults to `call_{k}` for the k-th call of the entry.
    #[serde(default)]
    pub id: Option<String>,
    /// Tool name.
    pub name: String,
    /// Arguments; defaults to `{}`.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

/// Scripted token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: u64,
}

/// A scripted agent-frame switch.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSwitchFrame {
    /// The frame.
    pub frame_id: String,
    /// Its task.
    pub task: String,
}

/// A scripted provider failure.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptFailure {
    /// Whether the runtime may retry.
    #[serde(default)]
    pub retryable: bool,
    /// The error message.
    pub message: String,
}

/// The file's top level; exactly one field must be set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    #[serde(default)]
    responses: Option<Vec<ScriptEntry>>,
    #[serde(default)]
    turns: Option<Vec<Vec<ScriptEntry>>>,
    #[serde(default)]
    every_turn: Option<Vec<ScriptEntry>>,
}

/// Deserializes a field that is present as `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Where an entry sits in the script; keys the attempt counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Slot {
    Sequence(usize),
    Turn { turn: usize, iteration: usize },
    EveryTurn(usize),
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Sequence(i) => write!(f, "responses[{i}]"),
            Slot::Turn { turn, iteration } => write!(f, "turns[{turn}][{iteration}]"),
            Slot::EveryTurn(i) => write!(f, "every_turn[{i}]"),
        }
    }
}

/// A [`ModelProvider`] that answers from a [`Script`].
#[derive(Debug)]
pub struct ScriptedProvider {
    script: Script,
    /// Next entry in `Sequence` mode.
    cursor: Mutex<usize>,
    /// Failed attempts so far per entry, for `fail_times`.
    attempts: Mutex<HashMap<Slot, u32>>,
}

impl ScriptedProvider {
    /// Loads a script from a JSON file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Loads a script from JSON text.
    pub fn from_json_str(json: &str) -> Result<Self, ScriptError> {
        Self::parse(json, "inline script")
    }

    /// Wraps an already built script, checking the same rules as a file.
    pub fn new(script: Script) -> Result<Self, ScriptError> {
        validate(&script, "script value")?;
        Ok(ScriptedProvider {
            script,
            cursor: Mutex::new(0),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    fn parse(json: &str, origin: &str) -> Result<Self, ScriptError> {
        let file: ScriptFile =
            serde_json::from_str(json).map_err(|source| ScriptError::Malformed {
                origin: origin.to_string(),
                source,
            })?;
        let invalid = |reason: &str| ScriptError::Invalid {
            origin: origin.to_string(),
            at: "script".into(),
            reason: reason.into(),
        };
        let script = match (file.responses, file.turns, file.every_turn) {
            (Some(r), None, None) => Script::Sequence(r),
            (None, Some(t), None) => Script::Turns(t),
            (None, None, Some(e)) => Script::EveryTurn(e),
            (None, None, None) => {
                return Err(invalid(
                    "needs a `responses`, a `turns` or an `every_turn` key",
                ));
            }
            _ => {
                return Err(invalid("set one of `responses`, `turns` and `every_turn`"));
            }
        };
        validate(&script, origin)?;
        Ok(ScriptedProvider {
            script,
            cursor: Mutex::new(0),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    /// Every tool name the script calls, so a runtime can reject scripts that
    /// name tools it does not have before the first turn runs.
    pub fn tool_names(&self) -> BTreeSet<String> {
        entries(&self.script)
            .flat_map(|(_, e)| e.tool_calls.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// The script being served.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Picks the entry for a request; in sequence mode the cursor is only
    /// read here and moved once the entry is actually served.
    fn pick(&self, request: &ModelRequest) -> Result<(Slot, &ScriptEntry), ProviderError> {
        match &self.script {
            Script::Sequence(list) => {
                let i = *lock(&self.cursor);
                list.get(i).map(|e| (Slot::Sequence(i), e)).ok_or_else(|| {
                    ProviderError::terminal(format!(
                        "scripted provider is out of responses: call #{} but the script has {}",
                        i + 1,
                        list.len()
                    ))
                })
            }
            Script::EveryTurn(list) => {
                let i = request.iteration as usize;
                list.get(i).map(|e| (Slot::EveryTurn(i), e)).ok_or_else(|| {
                    ProviderError::terminal(format!(
                        "scripted provider has no entry every_turn[{i}] (it has {})",
                        list.len()
                    ))
                })
            }
            Script::Turns(turns) => {
                let users = request
                    .messages
                    .iter()
                    .filter(|m| m.role == Role::User)
                    .count();
                let Some(turn) = users.checked_sub(1) else {
                    return Err(ProviderError::terminal(
                        "scripted provider (turns mode) needs at least one user message in the request",
                    ));
                };
                let iteration = request.iteration as usize;
                let slot = Slot::Turn { turn, iteration };
                turns
                    .get(turn)
                    .and_then(|t| t.get(iteration))
                    .map(|e| (slot, e))
                    .ok_or_else(|| {
                        ProviderError::terminal(format!(
                            "scripted provider has no entry {slot} (the script has {} turns)",
                            turns.len()
                        ))
                    })
            }
        }
    }
}

#[async_trait]
impl ModelProvider for ScriptedProvider {
    fn name(&self) -> String {
        "scripted".into()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let (slot, entry) = self.pick(request)?;
        if entry.fail_times > 0 {
            let mut attempts = lock(&self.attempts);
            let seen = attempts.entry(slot).or_insert(0);
            if *seen < entry.fail_times {
                *seen += 1;
                return Err(ProviderError::retryable(format!(
                    "scripted failure {seen} of {} at {slot}",
                    entry.fail_times
                )));
            }
        }
        if let Slot::Sequence(i) = slot {
            *lock(&self.cursor) = i + 1;
        }
        if let Some(failure) = &entry.error {
            return Err(ProviderError {
                retryable: failure.retryable,
                message: failure.message.clone(),
            });
        }
        Ok(to_response(entry))
    }
}

/// Builds the response an entry describes.
fn to_response(entry: &ScriptEntry) -> ModelResponse {
    let mut parts = Vec::new();
    if let Some(text) = &entry.reasoning {
        parts.push(Part::Reasoning { text: text.clone() });
    }
    if let Some(text) = &entry.text {
        parts.push(Part::Text { text: text.clone() });
    }
    for (k, call) in entry.tool_calls.iter().enumerate() {
        parts.push(Part::ToolCall {
            id: call.id.clone().unwrap_or_else(|| format!("call_{k}")),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
    }
    let usage = entry.usage.unwrap_or_default();
    ModelResponse {
        parts,
        usage: Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            model_calls: 1,
        },
        finish_reason: if entry.tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        },
        directive: directive(entry),
    }
}

fn directive(entry: &ScriptEntry) -> Option<ModelDirective> {
    if let Some(value) = &entry.final_value {
        return Some(ModelDirective::FinalValue {
            value: value.clone(),
        });
    }
    if let Some(s) = &entry.switch_frame {
        return Some(ModelDirective::SwitchFrame {
            frame_id: s.frame_id.clone(),
            task: s.task.clone(),
        });
    }
    entry
        .submit_error
        .as_ref()
        .map(|message| ModelDirective::SubmitError {
            message: message.clone(),
        })
}

/// Locks a mutex, recovering from poisoning: the guarded counters stay
/// meaningful even if another caller panicked mid-test.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

mod rules;
#[cfg(test)]
mod tests;

use rules::{entries, validate};
