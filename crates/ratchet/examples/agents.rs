//! Two agents and a plain Restate service in one endpoint, built with
//! ratchet's public API only, the way a platform team embeds it:
//!
//! * `billing` — a scripted model that charges a card through a custom
//!   **keyed** tool (the payment API dedupes by the idempotency key ratchet
//!   hands it), with a prompt plugin of its own;
//! * `support` — the offline demo model with the calculator;
//! * `Greeter` — an ordinary Restate service beside them.
//!
//! Environment: `AGENTS_DB` (the SQLite file), `AGENTS_LEDGER` (the payment
//! ledger file the `charge` tool writes), `AGENTS_LISTEN` (default
//! `127.0.0.1:9080`). Prints `listening on ADDR` once it serves.
//!
//! ```sh
//! cargo run --example agents
//! curl -X POST localhost:8080/billing/alice/turn -H 'content-type: application/json' \
//!   -d '{"input":{"items":[{"type":"text","text":"charge my card"}],"input_id":"in-1"}}'
//! ```

use async_trait::async_trait;
use ratchet::Agent;
use ratchet::llm::{DemoModel, ScriptedProvider};
use ratchet::plugins::{Plugin, TurnInfo};
use ratchet::restate_sdk::endpoint::Endpoint;
use ratchet::restate_sdk::prelude::*;
use ratchet::store::{SessionStore, SqliteStore};
use ratchet::tools::{Calculator, IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A payment API stand-in: charges once per idempotency key, and records
/// every call it receives (`calls`) and every charge it makes (`charges`).
struct Charge {
    ledger: PathBuf,
    lock: Mutex<()>,
}

impl Charge {
    fn append(&self, kind: &str, key: &str, amount: i64) -> std::io::Result<bool> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let text = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        let charged = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["kind"] == "charge" && v["key"] == key);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ledger)?;
        writeln!(file, "{}", json!({"kind": "call", "key": key}))?;
        if kind == "charge" && !charged {
            writeln!(
                file,
                "{}",
                json!({"kind": "charge", "key": key, "amount_cents": amount})
            )?;
        }
        file.sync_all()?;
        Ok(!charged)
    }
}

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
            .append("charge", &ctx.idempotency_key, amount)
            .map_err(|e| ToolError::Failed(format!("payment API unreachable: {e}")))?;
        Ok(ToolOutput::text(if fresh {
            format!("charged {amount} cents")
        } else {
            format!("already charged {amount} cents")
        }))
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

/// A plain Restate service sharing the endpoint.
#[restate_sdk::service]
impl Greeter {
    #[handler]
    async fn greet(&self, _ctx: Context<'_>, name: String) -> HandlerResult<String> {
        Ok(format!("Hello, {name}"))
    }
}

struct Greeter;

fn env_path(key: &str, default: &str) -> PathBuf {
    std::env::var(key).unwrap_or_else(|_| default.into()).into()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every secret the environment holds is masked wherever ratchet writes.
    ratchet::secrets::register_from_env();
    let db = env_path("AGENTS_DB", "agents.db");
    let ledger = env_path("AGENTS_LEDGER", "ledger.jsonl");
    let listen = std::env::var("AGENTS_LISTEN").unwrap_or_else(|_| "127.0.0.1:9080".into());
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&db)?);
    let script = json!({"turns": [[
        {"tool_calls": [{"name": "charge", "arguments": {"amount_cents": 1250}}]},
        {"text": "Charged 12.50 to your card."}
    ]]});
    let billing = Agent::new("billing")
        .store(store.clone())
        .model(Arc::new(ScriptedProvider::from_json_str(
            &script.to_string(),
        )?))
        .tool(Arc::new(Charge {
            ledger,
            lock: Mutex::new(()),
        }))
        .plugin(Arc::new(BillingVoice));
    let support = Agent::new("support")
        .store(store)
        .model(Arc::new(DemoModel::new()))
        .tool(Arc::new(Calculator));
    // Only a restate-server signing with the matching private key gets in.
    let mut endpoint = Endpoint::builder().bind(Greeter);
    for key in std::env::var("AGENTS_IDENTITY_KEYS")
        .unwrap_or_default()
        .split(',')
    {
        if !key.trim().is_empty() {
            endpoint = endpoint.identity_key(key.trim())?;
        }
    }
    let endpoint = billing.bind(endpoint)?;
    let endpoint = support.bind(endpoint)?.build();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    ratchet::restate::serve(
        endpoint,
        listener,
        ratchet::restate::termination(),
        std::time::Duration::from_secs(10),
    )
    .await;
    Ok(())
}
