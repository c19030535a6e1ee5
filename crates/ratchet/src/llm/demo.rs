//! The built-in offline `demo` model: a rule-based stand-in, not an LLM.
//!
//! It lets the runtime, the CLI and the crash matrix exercise a real effect
//! loop (model call, tool calls, final answer) with no network and no API key.
//! Its answers are a pure function of the request, so replays agree.
//!
//! Rules, applied at iteration 0 to the latest user message:
//! * arithmetic (`What is 17*23+4?`) → a `calculator` call `{"expression": "17*23+4"}`;
//! * `remember X` (any case) → a `notes` call `{"text": "X"}`; the note runs to
//!   the end of the message, and the other rules look only at the text before it;
//! * `what time` → a `clock` call `{}`.
//!
//! Several rules may fire: one call each, in the order above, ids `call_0`,
//! `call_1`, .... A rule fires only if its tool is offered in the request,
//! as a real model can only call tools it is given. With no rule firing it
//! says it is the offline demo model. At iteration 1 and later it answers
//! from the tool results that follow its last tool calls.

use super::{FinishReason, ModelProvider, ModelRequest, ModelResponse, ProviderError};
use crate::model::{Message, Part, Role, Usage};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The offline `demo` model: fixed rules standing in for an LLM.
#[derive(Clone, Copy, Debug, Default)]
pub struct DemoModel;

impl DemoModel {
    /// The demo model.
    pub fn new() -> Self {
        DemoModel
    }
}

#[async_trait]
impl ModelProvider for DemoModel {
    fn name(&self) -> String {
        "demo (rule-based stand-in, no LLM)".into()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        Ok(respond(request))
    }
}

/// The whole model: a pure function of the request.
fn respond(request: &ModelRequest) -> ModelResponse {
    let (parts, finish_reason) = if request.iteration == 0 {
        first_reply(request)
    } else {
        match answer_from_tool_results(&request.messages) {
            Some(text) => (vec![Part::Text { text }], FinishReason::Stop),
            None => first_reply(request),
        }
    };
    let usage = Usage {
        input_tokens: request.messages.iter().map(message_words).sum(),
        output_tokens: parts.iter().map(part_words).sum(),
        model_calls: 1,
    };
    ModelResponse {
        parts,
        usage,
        finish_reason,
        directive: None,
    }
}

/// Tool calls for the rules the latest user message matches, or a plain reply.
fn first_reply(request: &ModelRequest) -> (Vec<Part>, FinishReason) {
    let question = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::text_content)
        .unwrap_or_default();
    let offered = |name: &str| request.tools.iter().any(|t| t.name == name);

    let (before_note, note) = split_remember(&question);
    let wanted: Vec<(&str, Value)> = [
        find_expression(before_note).map(|e| ("calculator", json!({ "expression": e }))),
        note.map(|text| ("notes", json!({ "text": text }))),
        has_what_time(before_note).then(|| ("clock", json!({}))),
    ]
    .into_iter()
    .flatten()
    .collect();

    let calls: Vec<Part> = wanted
        .iter()
        .filter(|(name, _)| offered(name))
        .enumerate()
        .map(|(k, (name, arguments))| Part::ToolCall {
            id: format!("call_{k}"),
            name: (*name).to_string(),
            arguments: arguments.clone(),
        })
        .collect();
    if !calls.is_empty() {
        return (calls, FinishReason::ToolCalls);
    }

    let missing: Vec<&str> = wanted.iter().map(|(name, _)| *name).collect();
    let text = if missing.is_empty() {
        "I am the offline demo model, a rule-based stand-in with no LLM behind it. \
         I can do arithmetic (\"What is 17*23+4?\"), remember things (\"remember milk\") \
         and tell the time (\"What time is it?\")."
            .to_string()
    } else {
        format!(
            "I am the offline demo model (rule-based, no LLM). I would use the {} tool, \
             but this session does not offer it.",
            missing.join(", ")
        )
    };
    (vec![Part::Text { text }], FinishReason::Stop)
}

/// The final answer built from the results of the model's last tool calls.
fn answer_from_tool_results(messages: &[Message]) -> Option<String> {
    let at = messages
        .iter()
        .rposition(|m| m.role == Role::Assistant && m.tool_calls().next().is_some())?;
    let results: Vec<(&str, &str, bool)> = messages[at + 1..]
        .iter()
        .filter(|m| m.role == Role::Tool)
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::ToolResult {
                tool_call_id,
                content,
                is_error,
            } => Some((tool_call_id.as_str(), content.as_str(), *is_error)),
            _ => None,
        })
        .collect();

    let lines: Vec<String> = messages[at]
        .tool_calls()
        .map(|(id, name, args)| {
            let arg = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or("");
            match results.iter().find(|(call, _, _)| *call == id) {
                None => format!("The {name} tool gave no result."),
                Some((_, content, true)) => format!("The {name} tool failed: {content}"),
                Some((_, content, false)) => match name {
                    "calculator" => format!("{} = {content}", arg("expression")),
                    "notes" => format!("Noted: {}", arg("text")),
                    "clock" => format!("The time is {content}"),
                    _ => format!("The {name} tool returned: {content}"),
                },
            }
        })
        .collect();
    Some(lines.join("\n"))
}

/// Splits off a `remember X` clause: (text before it, X).
fn split_remember(text: &str) -> (&str, Option<String>) {
    // ASCII lowercasing keeps byte offsets, so indexes map back to `text`.
    let lower = text.to_ascii_lowercase();
    let found = lower.match_indices("remember").find(|(i, _)| {
        let before = text[..*i].chars().next_back();
        !before.is_some_and(char::is_alphanumeric)
    });
    let Some((i, word)) = found else {
        return (text, None);
    };
    let rest = text[i + word.len()..].trim_start();
    let rest = rest
        .strip_prefix("that ")
        .or_else(|| rest.strip_prefix("That "))
        .unwrap_or(rest);
    let note = rest.trim().trim_end_matches(['.', '!', '?']).trim();
    (&text[..i], (!note.is_empty()).then(|| note.to_string()))
}

fn has_what_time(text: &str) -> bool {
    text.to_ascii_lowercase().contains("what time")
}

/// The first arithmetic expression in the text: a run of digits, spaces,
/// `+ - * / ( ) .` holding an operator between operands.
fn find_expression(text: &str) -> Option<String> {
    let is_expr_char = |c: char| c.is_ascii_digit() || " +-*/().".contains(c);
    text.split(|c: char| !is_expr_char(c))
        .map(clean_expression)
        .find(|e| is_arithmetic(e))
}

/// Trims sentence punctuation and unmatched parentheses off a candidate.
fn clean_expression(run: &str) -> String {
    let mut e = run
        .trim()
        .trim_end_matches(|c: char| " +-*/.".contains(c))
        .trim_start_matches(|c: char| " +*/".contains(c))
        .trim()
        .to_string();
    let count = |s: &str, c: char| s.matches(c).count();
    while count(&e, ')') > count(&e, '(') && e.ends_with(')') {
        e.pop();
    }
    while count(&e, '(') > count(&e, ')') && e.starts_with('(') {
        e.remove(0);
    }
    e.trim().to_string()
}

/// Whether a cleaned candidate has a binary operator after an operand.
fn is_arithmetic(e: &str) -> bool {
    let mut seen_operand = false;
    for c in e.chars() {
        if c.is_ascii_digit() || c == ')' {
            seen_operand = true;
        } else if seen_operand && "+-*/".contains(c) {
            return e.ends_with(|c: char| c.is_ascii_digit() || c == ')');
        }
    }
    false
}

fn message_words(m: &Message) -> u64 {
    m.parts.iter().map(part_words).sum()
}

/// Deterministic token stand-in: whitespace-separated words.
fn part_words(p: &Part) -> u64 {
    let words = |s: &str| s.split_whitespace().count() as u64;
    match p {
        Part::Text { text } | Part::Reasoning { text } => words(text),
        Part::ToolResult { content, .. } => words(content),
        Part::ToolCall {
            name, arguments, ..
        } => words(name) + words(&arguments.to_string()),
        Part::Image { .. } => 0,
    }
}

#[cfg(test)]
mod tests;
