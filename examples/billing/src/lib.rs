//! A platform team's own agent crate, built on ratchet's public API only:
//!
//! * `billing` — a scripted model that charges a card and mails a receipt
//!   through two **keyed** tools (the payment and mail APIs dedupe by the
//!   idempotency key ratchet hands them), with a prompt plugin of its own;
//! * `refunds` — hands each refund to a specialist agent frame, which
//!   mails the receipt;
//! * `payouts` — pays a customer out: every `payout` call waits for a
//!   person's approval, and the bank confirms the transfer later, so the
//!   tool answers "pending" and the turn waits for `complete_tool`;
//! * `support` — the offline demo model with the calculator.
//!
//! `src/main.rs` serves them beside a plain Restate service. The tests
//! show what a team adds to its CI: its recordings replayed against this
//! build (`tests/replay.rs`), the crash matrix over its own tools
//! (`tests/crash_matrix.rs`) and always-replay (`tests/always_replay.rs`).

use async_trait::async_trait;
use ratchet::Agent;
use ratchet::llm::{DemoModel, ScriptedProvider};
use ratchet::plugins::{Plugin, TurnInfo};
use ratchet::store::SessionStore;
use ratchet::tools::{Calculator, IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The payment and mail APIs' stand-in: a JSON-lines file. Every call is
/// written as `{"kind": "call", "tool", "key"}`; an effect (`charge`,
/// `receipt`) is made once per idempotency key.
pub struct Ledger {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Ledger {
    /// A ledger in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Arc<Self> {
        Arc::new(Ledger {
            path: path.into(),
            lock: Mutex::new(()),
        })
    }

    /// Records a call of `tool` under `key`; makes the effect unless one
    /// was made under that key. Whether it was made now.
    fn apply(&self, tool: &str, key: &str, detail: Value) -> std::io::Result<bool> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let done = lines(&self.path)
            .iter()
            .any(|v| v["kind"] == tool && v["key"] == key);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(
            file,
            "{}",
            json!({"kind": "call", "tool": tool, "key": key})
        )?;
        if !done {
            writeln!(
                file,
                "{}",
                json!({"kind": tool, "key": key, "detail": detail})
            )?;
        }
        file.sync_all()?;
        Ok(!done)
    }
}

/// The ledger's lines.
pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Charges the customer's card (keyed).
struct Charge(Arc<Ledger>);

#[async_trait]
impl Tool for Charge {
    fn name(&self) -> &str {
        "charge"
    }
    fn description(&self) -> &str {
        "Charges the customer's card."
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"amount_cents": {"type": "integer", "minimum": 1}},
            "required": ["amount_cents"]
        })
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Keyed
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        let amount = args["amount_cents"].as_i64().unwrap_or_default();
        let fresh = self
            .0
            .apply(
                "charge",
                &ctx.idempotency_key,
                json!({"amount_cents": amount}),
            )
            .map_err(|e| ToolError::Retryable(format!("payment API unreachable: {e}")))?;
        Ok(ToolOutput::text(if fresh {
            format!("charged {amount} cents")
        } else {
            format!("already charged {amount} cents")
        }))
    }
}

/// Mails the receipt (keyed).
struct Receipt(Arc<Ledger>);

#[async_trait]
impl Tool for Receipt {
    fn name(&self) -> &str {
        "receipt"
    }
    fn description(&self) -> &str {
        "Mails the customer a receipt."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Keyed
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        let to = args["to"].as_str().unwrap_or_default().to_string();
        self.0
            .apply("receipt", &ctx.idempotency_key, json!({"to": to}))
            .map_err(|e| ToolError::Retryable(format!("mail API unreachable: {e}")))?;
        Ok(ToolOutput::text(format!("receipt sent to {to}")))
    }
}

/// The billing agent's own system prompt.
struct BillingVoice;

#[async_trait]
impl Plugin for BillingVoice {
    fn name(&self) -> &str {
        "billing-voice"
    }
    fn system_prompt(&self, turn: &TurnInfo<'_>) -> Option<String> {
        Some(format!(
            "You are the billing agent for session {}. Confirm every charge.",
            turn.session_id
        ))
    }
}

/// The billing model's script: charge and mail the receipt in one model
/// call, then confirm.
pub fn billing_script() -> Value {
    json!({"turns": [[
        {"tool_calls": [
            {"name": "charge", "arguments": {"amount_cents": 1250}},
            {"name": "receipt", "arguments": {"to": "alice@example.com"}}
        ], "usage": {"input_tokens": 40, "output_tokens": 12}},
        {"text": "Charged 12.50 to your card; the receipt is on its way.",
         "usage": {"input_tokens": 60, "output_tokens": 9}}
    ]]})
}

/// The billing agent on `store`, charging through `ledger`.
pub fn billing(store: Arc<dyn SessionStore>, ledger: Arc<Ledger>) -> Agent {
    let model = ScriptedProvider::from_json_str(&billing_script().to_string())
        .expect("the billing script is well-formed");
    Agent::new("billing")
        .store(store)
        .model(Arc::new(model))
        .tool(Arc::new(Charge(ledger.clone())))
        .tool(Arc::new(Receipt(ledger)))
        .plugin(Arc::new(BillingVoice))
}

/// The refunds agent's script: it hands the refund to a specialist agent
/// frame, which mails the receipt and answers.
pub fn refunds_script() -> Value {
    json!({"turns": [
        [{"switch_frame": {"frame_id": "specialist", "task": "Mail alice@example.com the refund receipt."}}],
        [
            {"tool_calls": [{"name": "receipt", "arguments": {"to": "alice@example.com"}}]},
            {"text": "Refund receipt sent."}
        ]
    ]})
}

/// The refunds agent on `store`: a frame switch whose frame calls a tool.
pub fn refunds(store: Arc<dyn SessionStore>, ledger: Arc<Ledger>) -> Agent {
    let model = ScriptedProvider::from_json_str(&refunds_script().to_string())
        .expect("the refunds script is well-formed");
    Agent::new("refunds")
        .store(store)
        .model(Arc::new(model))
        .tool(Arc::new(Receipt(ledger)))
}

/// Sends a payout to the bank (keyed); the bank confirms it later.
struct Payout(Arc<Ledger>);

/// How long the bank may take to confirm a payout.
pub const PAYOUT_CONFIRMATION: std::time::Duration = std::time::Duration::from_secs(3600);

#[async_trait]
impl Tool for Payout {
    fn name(&self) -> &str {
        "payout"
    }
    fn description(&self) -> &str {
        "Sends money to a customer's account; the bank confirms later."
    }
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"amount_cents": {"type": "integer", "minimum": 1}, "to": {"type": "string"}},
            "required": ["amount_cents", "to"]
        })
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Keyed
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        let amount = args["amount_cents"].as_i64().unwrap_or_default();
        self.0
            .apply(
                "payout",
                &ctx.idempotency_key,
                json!({"amount_cents": amount}),
            )
            .map_err(|e| ToolError::Retryable(format!("bank API unreachable: {e}")))?;
        Ok(ToolOutput::pending(
            format!("payout of {amount} cents sent to the bank"),
            PAYOUT_CONFIRMATION,
        ))
    }
}

/// The payouts model's script: one payout, then the confirmation.
pub fn payouts_script() -> Value {
    json!({"turns": [[
        {"tool_calls": [{"name": "payout", "arguments": {"amount_cents": 5000, "to": "alice"}}]},
        {"text": "Your payout of 50.00 is confirmed."}
    ]]})
}

/// The payouts agent on `store`: each payout waits for approval, then for
/// the bank's confirmation.
pub fn payouts(store: Arc<dyn SessionStore>, ledger: Arc<Ledger>) -> Agent {
    let model = ScriptedProvider::from_json_str(&payouts_script().to_string())
        .expect("the payouts script is well-formed");
    Agent::new("payouts")
        .store(store)
        .model(Arc::new(model))
        .tool(Arc::new(Payout(ledger)))
        .require_approval("payout")
}

/// The support agent on `store`: the demo model with the calculator.
pub fn support(store: Arc<dyn SessionStore>) -> Agent {
    Agent::new("support")
        .store(store)
        .model(Arc::new(DemoModel::new()))
        .tool(Arc::new(Calculator))
}
