//! Reading a turn back from Restate: the admin SQL endpoint's `sys_journal`
//! holds every `ctx.run` of an invocation with its recorded result, which is
//! a [`StepRecord`]. [`recording`] turns an invocation's journal into a
//! [`Recording`] that `ratchet replay` runs offline.

use crate::journal::{RECORDING_FORMAT, Recording, StepName, StepRecord};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Why reading the journal failed.
#[derive(Debug, thiserror::Error)]
#[error("restate admin: {0}")]
pub struct AdminError(pub String);

/// Runs a SQL query on the Restate admin API and returns its rows.
pub async fn query(admin_url: &str, sql: &str) -> Result<Vec<Value>, AdminError> {
    let url = format!("{}/query", admin_url.trim_end_matches('/'));
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| AdminError(e.to_string()))?
        .post(&url)
        .header("accept", "application/json")
        .json(&json!({ "query": sql }))
        .send()
        .await
        .map_err(|e| AdminError(format!("cannot reach {url}: {e}")))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| AdminError(format!("unreadable reply from {url}: {e}")))?;
    if !status.is_success() {
        return Err(AdminError(format!("{status}: {body}")));
    }
    Ok(body["rows"].as_array().cloned().unwrap_or_default())
}

fn quoted(id: &str) -> Result<String, AdminError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(AdminError(format!("'{id}' is not an invocation id")));
    }
    Ok(format!("'{id}'"))
}

/// Names of the `ctx.run` steps an invocation journaled, in order.
pub async fn step_names(admin_url: &str, invocation: &str) -> Result<Vec<String>, AdminError> {
    Ok(recording(admin_url, invocation)
        .await?
        .steps
        .into_iter()
        .map(|s| s.step)
        .collect())
}

/// The turn an invocation ran, as a recording of its journaled steps.
pub async fn recording(admin_url: &str, invocation: &str) -> Result<Recording, AdminError> {
    let id = quoted(invocation)?;
    let inv = query(
        admin_url,
        &format!(
            "SELECT target_service_key, target_service_name FROM sys_invocation WHERE id = {id}"
        ),
    )
    .await?;
    let Some(row) = inv.first() else {
        return Err(AdminError(format!("no invocation {invocation}")));
    };
    let (Some(object), Some(key)) = (
        row["target_service_name"].as_str(),
        row["target_service_key"].as_str(),
    ) else {
        return Err(AdminError(format!(
            "invocation {invocation} is not a call to a session object"
        )));
    };
    let session_id = super::store_session_id(object, key)
        .map_err(|e| AdminError(format!("invocation {invocation}: {e}")))?
        .to_string();
    let rows = query(
        admin_url,
        &format!(
            "SELECT index, entry_type, entry_json FROM sys_journal WHERE id = {id} ORDER BY index"
        ),
    )
    .await?;
    let mut order: Vec<u64> = Vec::new();
    let mut results: HashMap<u64, Vec<u8>> = HashMap::new();
    for row in &rows {
        let entry: Value = serde_json::from_str(row["entry_json"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        if let Some(n) = entry["Command"]["Run"]["completion_id"].as_u64() {
            order.push(n);
        }
        let done = &entry["Notification"]["Completion"]["Run"];
        if let (Some(n), Some(bytes)) = (
            done["completion_id"].as_u64(),
            done["result"]["Success"].as_array(),
        ) {
            results.insert(
                n,
                bytes
                    .iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect(),
            );
        }
    }
    // Steps are the runs whose result is a step record; the handler's own
    // runs (enqueue, next_input, ...) are not part of the turn.
    let mut steps: Vec<StepRecord> = order
        .iter()
        .filter_map(|n| results.get(n))
        .filter_map(|bytes| serde_json::from_slice::<StepRecord>(bytes).ok())
        .collect();
    // An invocation may first run earlier inputs of its session (FIFO) or
    // settle an orphan: the recording is its own input's turn, the last
    // root claim and what follows it.
    if let Some(last_root) = steps
        .iter()
        .rposition(|s| s.step.parse() == Ok(StepName::Claim))
    {
        steps.drain(..last_root);
    }
    let Some(first) = steps.first() else {
        return Err(AdminError(format!(
            "invocation {invocation} journaled no turn steps (yet)"
        )));
    };
    let input_id = first.output["claimed_ids"]
        .as_array()
        .and_then(|ids| ids.last())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Recording {
        format: RECORDING_FORMAT,
        session_id,
        turn_id: first.turn_id.clone(),
        input_id,
        steps,
    })
}
