//! Reading a turn back from Restate: the admin SQL endpoint's `sys_journal`
//! holds every `ctx.run` of an invocation with its recorded result, which is
//! a [`StepRecord`]. [`recording`] turns an invocation's journal into a
//! [`Recording`] that `ratchet replay` runs offline.

use crate::journal::{RECORDING_FORMAT, Recording, StepName, StepRecord};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
#[error("restate admin: {0}")]
pub struct AdminError(pub String);

/// How to reach the Restate admin API: its URL (`http` or `https`), an
/// optional bearer token (for an admin API behind an authenticating
/// proxy), a timeout on every call, and an optional PEM file of extra CA
/// certificates to trust for https.
#[derive(Clone)]
pub struct AdminConfig {
    /// The API root, e.g. `http://127.0.0.1:9070`.
    pub url: String,
    /// Sent as `Authorization: Bearer …`; never printed.
    pub token: Option<String>,
    /// Limit on one whole call, connect to last byte.
    pub timeout: Duration,
    /// Extra CA certificates (PEM) for an https admin URL.
    pub ca_file: Option<PathBuf>,
}

impl AdminConfig {
    /// The default timeout of one admin call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A config for `url` with no token, the default timeout and the
    /// system's own trust.
    pub fn new(url: impl Into<String>) -> Self {
        AdminConfig {
            url: url.into(),
            token: None,
            timeout: Self::DEFAULT_TIMEOUT,
            ca_file: None,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("url", &crate::secrets::redact(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A client of the Restate admin API (SQL queries, cancelling invocations).
#[derive(Clone)]
pub struct AdminClient {
    url: String,
    http: reqwest::Client,
    auth: Option<HeaderValue>,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("url", &crate::secrets::redact(&self.url))
            .field("token", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for `config`; a URL that is not http(s), a token that
    /// cannot be a header, or an unreadable CA file is refused here.
    pub fn new(config: AdminConfig) -> Result<Self, AdminError> {
        let url = config.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&url).map_err(|e| {
            AdminError(format!(
                "'{}' is not an admin URL: {e}",
                crate::secrets::redact(&url)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(AdminError(format!(
                "the admin URL must be http or https, not {}",
                parsed.scheme()
            )));
        }
        if config.timeout.is_zero() {
            return Err(AdminError("the admin timeout must be positive".into()));
        }
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                AdminError(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                AdminError(format!("the CA file {} is not PEM: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(AdminError(format!(
                    "the CA file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| AdminError(format!("cannot build the admin client: {e}")))?;
        let auth = match config.token.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(token) => {
                let _ = crate::secrets::register("the admin token", token);
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        AdminError("the admin token has characters not allowed in a header".into())
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(AdminClient { url, http, auth })
    }

    /// A client for `url` with the defaults of [`AdminConfig::new`].
    pub fn at(url: &str) -> Result<Self, AdminError> {
        Self::new(AdminConfig::new(url))
    }

    /// The API root.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match &self.auth {
            Some(auth) => req.header(reqwest::header::AUTHORIZATION, auth.clone()),
            None => req,
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> AdminError {
        let text = format!(
            "{} calling {}",
            crate::error_text::http_failure(&e),
            self.url
        );
        AdminError(crate::secrets::redact_string(text))
    }

    /// Runs a SQL query and returns its rows.
    pub async fn query(&self, sql: &str) -> Result<Vec<Value>, AdminError> {
        let resp = self
            .request(reqwest::Method::POST, "/query")
            .header("accept", "application/json")
            .json(&json!({ "query": sql }))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            let text = crate::secrets::redact(&text);
            return Err(AdminError(format!("{status}: {}", text.trim())));
        }
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| AdminError(format!("unreadable reply from {}: {e}", self.url)))?;
        Ok(body["rows"].as_array().cloned().unwrap_or_default())
    }

    /// Asks Restate to cancel an invocation; answers the status Restate
    /// gave (404: it is no longer running).
    pub async fn cancel(&self, invocation: &str) -> Result<reqwest::StatusCode, AdminError> {
        let id = quoted(invocation)?;
        let path = format!("/invocations/{}/cancel", id.trim_matches('\''));
        let resp = self
            .request(reqwest::Method::PATCH, &path)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(resp.status())
    }

    /// Names of the `ctx.run` steps an invocation journaled, in order.
    pub async fn step_names(&self, invocation: &str) -> Result<Vec<String>, AdminError> {
        step_names(self, invocation).await
    }

    /// The turn an invocation ran, as a recording of its journaled steps.
    pub async fn recording(&self, invocation: &str) -> Result<Recording, AdminError> {
        recording(self, invocation).await
    }
}

/// Runs a SQL query on the Restate admin API at `admin_url` (no token,
/// default timeout) and returns its rows.
pub async fn query(admin_url: &str, sql: &str) -> Result<Vec<Value>, AdminError> {
    AdminClient::at(admin_url)?.query(sql).await
}

fn quoted(id: &str) -> Result<String, AdminError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(AdminError(format!("'{id}' is not an invocation id")));
    }
    Ok(format!("'{id}'"))
}

async fn step_names(admin: &AdminClient, invocation: &str) -> Result<Vec<String>, AdminError> {
    Ok(recording(admin, invocation)
        .await?
        .steps
        .into_iter()
        .map(|s| s.step)
        .collect())
}

async fn recording(admin: &AdminClient, invocation: &str) -> Result<Recording, AdminError> {
    let id = quoted(invocation)?;
    let inv = admin
        .query(&format!(
            "SELECT target_service_key, target_service_name FROM sys_invocation WHERE id = {id}"
        ))
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
    let rows = admin
        .query(&format!(
            "SELECT index, entry_type, entry_json FROM sys_journal WHERE id = {id} ORDER BY index"
        ))
        .await?;
    let mut order: Vec<u64> = Vec::new();
    // The first run after Restate's cancel signal (signal 1) is the step
    // the turn saw as cancelled.
    let mut signalled = false;
    let mut cancelled_run: Option<u64> = None;
    let mut results: HashMap<u64, Vec<u8>> = HashMap::new();
    for row in &rows {
        let entry: Value = serde_json::from_str(row["entry_json"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        if entry["Notification"]["Signal"]["id"]["Index"].as_u64() == Some(1) {
            signalled = true;
        }
        if let Some(n) = entry["Command"]["Run"]["completion_id"].as_u64() {
            if signalled && cancelled_run.is_none() {
                cancelled_run = Some(n);
            }
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
    let cancelled_at = cancelled_run
        .and_then(|n| results.get(&n))
        .and_then(|bytes| serde_json::from_slice::<StepRecord>(bytes).ok())
        .map(|record| record.step);
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
        cancelled_at,
        tier: crate::journal::JournalTier::Durable,
    })
}
