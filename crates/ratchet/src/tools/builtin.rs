//! The built-in tools: `calculator` (pure), `clock` (non-deterministic: its
//! answer must come from the journal on replay), and `notes` (durable notes
//! in the store, deduplicated by the call's idempotency key).

use super::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

/// The registry of every built-in tool.
pub fn builtin_registry() -> ToolRegistry {
    ToolRegistry::new()
        .with(Arc::new(Calculator))
        .with(Arc::new(ClockTool))
        .with(Arc::new(Notes))
}

/// Evaluates arithmetic: `+ - * /`, parentheses, unary minus, decimals.
pub struct Calculator;

#[async_trait]
impl Tool for Calculator {
    fn name(&self) -> &str {
        "calculator"
    }
    fn description(&self) -> &str {
        "Evaluates an arithmetic expression with + - * / and parentheses."
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 1000}},
            "required": ["expression"],
            "additionalProperties": false
        })
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Pure
    }
    async fn call(&self, _ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        let expr = args["expression"].as_str().unwrap_or_default();
        let value = evaluate(expr).map_err(ToolError::Failed)?;
        let mut out = ToolOutput::text(format_number(value));
        out.value = Some(json!(value));
        Ok(out)
    }
}

/// Formats a result: whole numbers without a fraction.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Evaluates an arithmetic expression.
pub fn evaluate(expr: &str) -> Result<f64, String> {
    let tokens: Vec<char> = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let mut p = Parser { tokens, pos: 0 };
    let v = p.sum()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected '{}' in expression", p.tokens[p.pos]));
    }
    if !v.is_finite() {
        return Err("the result is not a finite number".into());
    }
    Ok(v)
}

struct Parser {
    tokens: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.tokens.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut v = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let r = self.product()?;
            v = if op == '+' { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut v = self.unary()?;
        while let Some(op @ ('*' | '/' | 'x' | '×')) = self.peek() {
            self.pos += 1;
            let r = self.unary()?;
            if op == '/' {
                if r == 0.0 {
                    return Err("division by zero".into());
                }
                v /= r;
            } else {
                v *= r;
            }
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<f64, String> {
        if self.peek() == Some('-') {
            self.pos += 1;
            return Ok(-self.unary()?);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let v = self.sum()?;
                if self.peek() != Some(')') {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.pos += 1;
                }
                let s: String = self.tokens[start..self.pos].iter().collect();
                s.parse().map_err(|_| format!("bad number '{s}'"))
            }
            Some(c) => Err(format!("unexpected '{c}' in expression")),
            None => Err("expression ended early".into()),
        }
    }
}

/// Tells the current time (UTC). Non-deterministic on purpose: a replayed
/// turn must show the time recorded in its journal, not a new one.
pub struct ClockTool;

#[async_trait]
impl Tool for ClockTool {
    fn name(&self) -> &str {
        "clock"
    }
    fn description(&self) -> &str {
        "Tells the current date and time in UTC."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Pure
    }
    async fn call(&self, ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        let ms = ctx.clock.now_ms();
        let mut out = ToolOutput::text(format_utc(ms));
        out.value = Some(json!(ms));
        Ok(out)
    }
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Keeps durable notes for the session, once per call (idempotency key).
pub struct Notes;

#[async_trait]
impl Tool for Notes {
    fn name(&self) -> &str {
        "notes"
    }
    fn description(&self) -> &str {
        "Remembers a note for this session, or lists the notes kept so far."
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": 4000},
                "action": {"enum": ["add", "list"]}
            },
            "additionalProperties": false
        })
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Keyed
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        let store_err = |e: crate::store::StoreError| ToolError::Failed(format!("notes: {e}"));
        if args["action"] == "list" {
            let notes = ctx.notes.list().await.map_err(store_err)?;
            let texts: Vec<&str> = notes.iter().map(|n| n.text.as_str()).collect();
            return Ok(ToolOutput::text(if texts.is_empty() {
                "No notes yet.".to_string()
            } else {
                texts.join("\n")
            }));
        }
        let Some(text) = args["text"].as_str() else {
            return Err(ToolError::InvalidArguments(
                "'text' is required to add a note".into(),
            ));
        };
        ctx.notes
            .put(&ctx.idempotency_key, text)
            .await
            .map_err(store_err)?;
        Ok(ToolOutput::text(format!("Noted: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::SessionId;
    use crate::store::MemoryStore;

    fn ctx(call: &str) -> ToolContext {
        ToolContext {
            session_id: SessionId::new("s").unwrap(),
            turn_id: "t".into(),
            tool_call_id: call.into(),
            idempotency_key: format!("s:t:{call}"),
            notes: Arc::new(super::super::StoreNotes::new(
                Arc::new(MemoryStore::new()),
                SessionId::new("s").unwrap(),
            )),
            clock: ManualClock::new(1_764_000_000_123),
        }
    }

    #[test]
    fn calculator_evaluates_precedence_parentheses_and_rejects_nonsense() {
        assert_eq!(evaluate("17*23+4").unwrap(), 395.0);
        assert_eq!(evaluate("2 * (3 + 4) - -1").unwrap(), 15.0);
        assert_eq!(evaluate("7/2").unwrap(), 3.5);
        assert_eq!(format_number(395.0), "395");
        assert_eq!(format_number(3.5), "3.5");
        assert!(evaluate("1/0").unwrap_err().contains("division by zero"));
        assert!(evaluate("2+").is_err());
        assert!(evaluate("(1").unwrap_err().contains("missing ')'"));
        assert!(evaluate("rm -rf").is_err());
    }

    #[test]
    fn utc_formatting_matches_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_utc(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
    }

    #[tokio::test]
    async fn registry_turns_bad_calls_into_error_results() {
        let reg = builtin_registry();
        let c = ctx("call_0");
        let ok = reg
            .invoke(&c, "calculator", json!({"expression": "17*23+4"}))
            .await
            .unwrap();
        assert_eq!((ok.content.as_str(), ok.is_error), ("395", false));
        let unknown = reg.invoke(&c, "rocket", json!({})).await.unwrap();
        assert!(unknown.is_error && unknown.content.contains("unknown tool 'rocket'"));
        let bad = reg
            .invoke(&c, "calculator", json!({"expr": "1"}))
            .await
            .unwrap();
        assert!(
            bad.is_error
                && bad
                    .content
                    .contains("missing required property 'expression'")
        );
        let failing = reg
            .invoke(&c, "calculator", json!({"expression": "1/0"}))
            .await
            .unwrap();
        assert!(failing.is_error && failing.content.contains("division by zero"));
        let time = reg.invoke(&c, "clock", json!({})).await.unwrap();
        assert_eq!(time.content, "2025-11-24T16:00:00.123Z");
    }

    #[tokio::test]
    async fn notes_are_written_once_per_idempotency_key() {
        let reg = builtin_registry();
        let c = ctx("call_0");
        for _ in 0..2 {
            let out = reg
                .invoke(&c, "notes", json!({"text": "milk"}))
                .await
                .unwrap();
            assert_eq!(out.content, "Noted: milk");
        }
        let notes = c.notes.list().await.unwrap();
        assert_eq!(notes.len(), 1);
        let listed = reg
            .invoke(&c, "notes", json!({"action": "list"}))
            .await
            .unwrap();
        assert_eq!(listed.content, "milk");
    }
}
