//! MCP servers as tool sources, through the official Rust SDK (`rmcp`):
//! over stdio (a child process ratchet starts) or streamable HTTP.
//!
//! * [`McpServer`] is the configuration, in the builder and in the agents
//!   file (`[[agent.mcp]]`), checked before anything starts.
//! * [`McpSource`] is the [`ToolSource`]: it connects on first use, lists
//!   the server's tools (each turn records that list in its `tools` step)
//!   and runs calls. A server that died or restarted is connected to again
//!   on the next call.
//!
//! **What a failure means for a call.** A connection that cannot be made,
//! or a request that could not be sent, took no effect: `Retryable`, and the
//! step retries it under the server's policy, with the same idempotency key.
//! A connection lost *after* the request went out may have taken effect: for
//! a tool of class `Unsafe` (the default for MCP tools) the model is told the
//! outcome is unknown and the call is not repeated; other classes retry. Out
//! of attempts, the model gets a result beginning `mcp_server_unavailable`.
//!
//! **Trust.** A server's tool annotations (`readOnlyHint`, `idempotentHint`)
//! are the server's claims, so they never decide a call's class: only the
//! configuration does. A stdio server starts with an empty environment
//! except `PATH`, `HOME` and `LANG`, the variables named in `env_from` and
//! the literal `env`; values passed from `env_from` and the HTTP bearer token
//! are registered as secrets, so no record, event or reply shows them.

mod connection;

use super::source::{SourceTool, ToolSource, check_source_name};
use super::{IdempotencyClass, ToolContext, ToolError, ToolOutput};
use crate::engine::RetryPolicy;
use async_trait::async_trait;
use connection::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How an MCP server is reached and how its tools are treated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// The source name: its tools are offered as `{name}__{tool}`.
    pub name: String,
    /// Stdio: the program to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Stdio: its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Stdio: literal environment variables for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Stdio: variables of ratchet's own environment passed on (their
    /// values are treated as secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<String>,
    /// Stdio: its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP: the endpoint (`http://host:port/mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Streamable HTTP: the variable holding a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// The class of every tool of the server (`unsafe` unless said).
    #[serde(default = "unsafe_class")]
    pub idempotency: IdempotencyClass,
    /// Per-tool classes (by the server's tool name), over `idempotency`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_idempotency: BTreeMap<String, IdempotencyClass>,
    /// Only these tools (the server's names) are offered; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// The longest a call (or the listing) may take, in ms; the engine's
    /// `tool_timeout_ms` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Attempts per call while the server is unreachable (1 = no retry);
    /// the engine's `tool_retry` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// A turn may not run without this server: when it cannot be listed the
    /// turn stops `tool_failure` rather than run without its tools.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

fn unsafe_class() -> IdempotencyClass {
    IdempotencyClass::Unsafe
}

/// Why an MCP server's configuration cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mcp server '{server}': {message}")]
pub struct McpConfigError {
    /// The server's name.
    pub server: String,
    /// What is wrong.
    pub message: String,
}

impl McpServer {
    fn new(name: &str) -> Self {
        McpServer {
            name: name.to_string(),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            env_from: Vec::new(),
            cwd: None,
            url: None,
            bearer_token_env: None,
            idempotency: IdempotencyClass::Unsafe,
            tool_idempotency: BTreeMap::new(),
            include: None,
            timeout_ms: None,
            attempts: None,
            required: false,
        }
    }

    /// A server ratchet starts as a child process and talks to over stdio.
    pub fn stdio(name: &str, command: impl Into<String>) -> Self {
        McpServer {
            command: Some(command.into()),
            ..Self::new(name)
        }
    }

    /// A server reached over streamable HTTP at `url`.
    pub fn http(name: &str, url: impl Into<String>) -> Self {
        McpServer {
            url: Some(url.into()),
            ..Self::new(name)
        }
    }

    /// Adds arguments (stdio).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a literal environment variable (stdio).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Passes a variable of ratchet's environment on (stdio); its value is
    /// a secret.
    pub fn env_from(mut self, key: &str) -> Self {
        self.env_from.push(key.into());
        self
    }

    /// The variable holding a bearer token (HTTP).
    pub fn bearer_token_env(mut self, key: &str) -> Self {
        self.bearer_token_env = Some(key.into());
        self
    }

    /// The class of every tool (default `Unsafe`).
    pub fn idempotency(mut self, class: IdempotencyClass) -> Self {
        self.idempotency = class;
        self
    }

    /// The class of one tool (its name at the server).
    pub fn tool_idempotency(mut self, tool: &str, class: IdempotencyClass) -> Self {
        self.tool_idempotency.insert(tool.into(), class);
        self
    }

    /// Offers only these tools (their names at the server).
    pub fn include<I, S>(mut self, tools: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.include = Some(tools.into_iter().map(Into::into).collect());
        self
    }

    /// The longest a call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Attempts per call while the server is unreachable.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// Turns may not run without this server.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Checks the configuration: a good name, exactly one transport, a
    /// well-formed URL, positive limits, and every variable it names set.
    pub fn check(&self) -> Result<(), McpConfigError> {
        let bad = |message: String| McpConfigError {
            server: self.name.clone(),
            message,
        };
        check_source_name(&self.name).map_err(bad)?;
        match (&self.command, &self.url) {
            (Some(c), None) if c.trim().is_empty() => return Err(bad("command is empty".into())),
            (Some(_), None) => {
                if self.bearer_token_env.is_some() {
                    return Err(bad("bearer_token_env is for an HTTP server (url)".into()));
                }
            }
            (None, Some(url)) => {
                let ok = ["http://", "https://"]
                    .iter()
                    .any(|s| url.strip_prefix(s).is_some_and(|r| !r.is_empty()));
                if !ok {
                    return Err(bad(format!("url '{url}' is not an http(s) URL")));
                }
                if !self.args.is_empty()
                    || !self.env.is_empty()
                    || !self.env_from.is_empty()
                    || self.cwd.is_some()
                {
                    return Err(bad(
                        "args, env, env_from and cwd are for a stdio server (command)".into(),
                    ));
                }
            }
            _ => {
                return Err(bad(
                    "give exactly one of command (stdio) and url (HTTP)".into()
                ));
            }
        }
        if self.timeout_ms == Some(0) {
            return Err(bad("timeout_ms must be positive".into()));
        }
        if self.attempts == Some(0) {
            return Err(bad("attempts must be at least 1".into()));
        }
        for key in self.env_from.iter().chain(&self.bearer_token_env) {
            if std::env::var(key).map_or(true, |v| v.is_empty()) {
                return Err(bad(format!("environment variable {key} is not set")));
            }
        }
        Ok(())
    }
}

/// An MCP server as a [`ToolSource`].
pub struct McpSource {
    server: Arc<McpServer>,
    connection: Connection,
}

impl McpSource {
    /// Checks `server` and makes its source; nothing connects until the
    /// first listing.
    pub fn new(server: McpServer) -> Result<Self, McpConfigError> {
        server.check()?;
        let server = Arc::new(server);
        for key in server.env_from.iter().chain(&server.bearer_token_env) {
            if let Ok(value) = std::env::var(key) {
                // A value too short to redact safely is still passed on.
                let _ = crate::secrets::register(key, &value);
            }
        }
        Ok(McpSource {
            connection: Connection::new(server.clone()),
            server,
        })
    }

    /// The server's configuration.
    pub fn server(&self) -> &McpServer {
        &self.server
    }
}

#[async_trait]
impl ToolSource for McpSource {
    fn name(&self) -> &str {
        &self.server.name
    }

    async fn list(&self) -> Result<Vec<SourceTool>, ToolError> {
        let tools = self.connection.list().await?;
        Ok(match &self.server.include {
            None => tools,
            Some(only) => tools
                .into_iter()
                .filter(|t| only.contains(&t.name))
                .collect(),
        })
    }

    async fn call(
        &self,
        ctx: &ToolContext,
        tool: &str,
        args: Value,
    ) -> Result<ToolOutput, ToolError> {
        let class = self.idempotency(tool);
        self.connection.call(ctx, tool, args, class).await
    }

    fn idempotency(&self, tool: &str) -> IdempotencyClass {
        self.server
            .tool_idempotency
            .get(tool)
            .copied()
            .unwrap_or(self.server.idempotency)
    }

    fn timeout(&self) -> Option<Duration> {
        self.server.timeout_ms.map(Duration::from_millis)
    }

    fn retry_policy(&self) -> Option<RetryPolicy> {
        self.server.attempts.map(|attempts| RetryPolicy {
            attempts,
            ..RetryPolicy::default()
        })
    }

    fn required(&self) -> bool {
        self.server.required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_needs_one_transport_and_sane_limits() {
        assert!(McpServer::stdio("fs", "node").check().is_ok());
        assert!(
            McpServer::http("web", "http://127.0.0.1:1/mcp")
                .check()
                .is_ok()
        );
        let cases = [
            (McpServer::stdio("fs", " "), "command is empty"),
            (McpServer::http("w", "ftp://x"), "not an http(s) URL"),
            (McpServer::http("w", "http://"), "not an http(s) URL"),
            (McpServer::stdio("a b", "node"), "must be 1 to 24"),
            (
                McpServer::http("w", "http://h/mcp").args(["x"]),
                "for a stdio server",
            ),
            (
                McpServer::stdio("w", "node").bearer_token_env("T"),
                "for an HTTP server",
            ),
            (McpServer::stdio("w", "node").attempts(0), "at least 1"),
            (
                McpServer::stdio("w", "node").timeout(Duration::ZERO),
                "must be positive",
            ),
            (
                McpServer::stdio("w", "node").env_from("RATCHET_TEST_SURELY_UNSET_VAR"),
                "is not set",
            ),
        ];
        for (server, want) in cases {
            let err = server.check().unwrap_err().to_string();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
        let mut both = McpServer::stdio("w", "node");
        both.url = Some("http://h".into());
        assert!(both.check().unwrap_err().message.contains("exactly one"));
    }

    #[test]
    fn classes_default_to_unsafe_and_follow_the_configuration() {
        let source = McpSource::new(
            McpServer::stdio("ev", "node").tool_idempotency("get-sum", IdempotencyClass::Pure),
        )
        .unwrap();
        assert_eq!(source.idempotency("echo"), IdempotencyClass::Unsafe);
        assert_eq!(source.idempotency("get-sum"), IdempotencyClass::Pure);
        let parsed: McpServer =
            serde_json::from_value(serde_json::json!({"name": "ev", "command": "node"})).unwrap();
        assert_eq!(parsed.idempotency, IdempotencyClass::Unsafe);
        let typo = serde_json::from_value::<McpServer>(
            serde_json::json!({"name": "ev", "comand": "node"}),
        );
        assert!(typo.is_err());
    }
}
