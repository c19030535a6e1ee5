//! Four agents and a plain Restate service in one endpoint, the way a
//! platform team embeds ratchet.
//!
//! Environment: `AGENTS_DB` (the SQLite file), `AGENTS_LEDGER` (the ledger
//! file the `charge` and `receipt` tools write), `AGENTS_LISTEN` (default
//! `127.0.0.1:9080`), `AGENTS_IDENTITY_KEYS` (comma-separated request
//! identity keys), `AGENTS_RESTATE_ADMIN` (the Restate admin API the
//! `cancel` handlers call; default `http://127.0.0.1:9070`),
//! `AGENTS_INACTIVITY_TIMEOUT_MS` (how soon a waiting turn suspends;
//! default 10 s). Prints `listening on ADDR` once it serves.
//!
//! ```sh
//! cargo run -p billing-agent
//! curl -X POST localhost:8080/billing/alice/turn -H 'content-type: application/json' \
//!   -d '{"input":{"items":[{"type":"text","text":"charge my card"}],"input_id":"in-1"}}'
//! ```

use billing_agent::{Ledger, billing, payouts, refunds, support};
use ratchet::store::{SessionStore, SqliteStore};
use restate_sdk::endpoint::Endpoint;
use restate_sdk::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

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
    let ledger = Ledger::new(env_path("AGENTS_LEDGER", "ledger.jsonl"));
    let listen = std::env::var("AGENTS_LISTEN").unwrap_or_else(|_| "127.0.0.1:9080".into());
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&db)?);
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
    // The admin API the agents' `cancel` handlers use.
    let admin =
        std::env::var("AGENTS_RESTATE_ADMIN").unwrap_or_else(|_| "http://127.0.0.1:9070".into());
    let endpoint = billing(store.clone(), ledger.clone())
        .admin_url(&admin)
        .bind(endpoint)?;
    let endpoint = refunds(store.clone(), ledger.clone())
        .admin_url(&admin)
        .bind(endpoint)?;
    let mut waiting = ratchet::restate::DurableOptions::default();
    if let Ok(ms) = std::env::var("AGENTS_INACTIVITY_TIMEOUT_MS") {
        waiting.timer_margin = std::time::Duration::from_millis(ms.parse()?);
    }
    let endpoint = payouts(store.clone(), ledger)
        .admin_url(&admin)
        .durable_options(waiting)
        .bind(endpoint)?;
    let endpoint = support(store).admin_url(&admin).bind(endpoint)?.build();
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
