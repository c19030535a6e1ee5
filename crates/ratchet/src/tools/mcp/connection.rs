//! One live connection to an MCP server, made on first use and made again
//! after the server died, restarted or dropped the session; and the mapping
//! of rmcp's answers and errors onto ratchet's tool contract.

use super::McpServer;
use crate::tools::source::SourceTool;
use crate::tools::{IdempotencyClass, ToolContext, ToolError, ToolOutput};
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::{ServiceExt, transport};
use serde_json::{Value, json};
use std::sync::Arc;

type Service = RunningService<RoleClient, ()>;

/// The `_meta` key a call's idempotency key travels under, for a server
/// that deduplicates (`keyed` tools).
pub const IDEMPOTENCY_META_KEY: &str = "io.ratchet/idempotency-key";

pub(super) struct Connection {
    server: Arc<McpServer>,
    /// The live service; a request that fails on the transport, or is
    /// dropped unanswered (its step timed it out), forgets it.
    live: Arc<std::sync::Mutex<Option<Arc<Service>>>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

/// Forgets the service it watches when dropped before [`InFlight::done`]:
/// a request abandoned unanswered (a server that stopped answering, an HTTP
/// session lost to a restart) must not leave the next one waiting on it.
struct InFlight {
    live: Arc<std::sync::Mutex<Option<Arc<Service>>>>,
    service: Option<Arc<Service>>,
}

impl InFlight {
    fn done(mut self) {
        self.service = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(service) = self.service.take() {
            forget_in(&self.live, &service);
        }
    }
}

fn forget_in(live: &std::sync::Mutex<Option<Arc<Service>>>, service: &Arc<Service>) {
    let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
    if live.as_ref().is_some_and(|s| Arc::ptr_eq(s, service)) {
        *live = None;
    }
}

impl Connection {
    pub(super) fn new(server: Arc<McpServer>) -> Self {
        Connection {
            server,
            live: Arc::new(std::sync::Mutex::new(None)),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<Arc<Service>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref()
            .filter(|s| !s.is_closed() && !s.is_transport_closed())
            .cloned()
    }

    fn watch(&self, service: &Arc<Service>) -> InFlight {
        InFlight {
            live: self.live.clone(),
            service: Some(service.clone()),
        }
    }

    /// What the model (and the logs) read when the server cannot be used.
    fn unavailable(&self, why: impl std::fmt::Display) -> String {
        crate::secrets::redact_string(format!(
            "mcp_server_unavailable: server '{}': {why}",
            self.server.name
        ))
    }

    /// The live service, connecting first when there is none (or the one
    /// there closed). A failed connection took no effect: `Retryable`.
    async fn service(&self) -> Result<Arc<Service>, ToolError> {
        if let Some(service) = self.current() {
            return Ok(service);
        }
        let _one = self.connecting.lock().await;
        if let Some(service) = self.current() {
            return Ok(service);
        }
        let service = Arc::new(
            self.connect()
                .await
                .map_err(|e| ToolError::Retryable(self.unavailable(e)))?,
        );
        tracing::info!(server = %self.server.name, "mcp server connected");
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.clone());
        Ok(service)
    }

    /// Forgets `service` (the next use connects again), unless another
    /// caller already replaced it.
    fn forget(&self, service: &Arc<Service>) {
        forget_in(&self.live, service);
    }

    async fn connect(&self) -> Result<Service, String> {
        let server = &self.server;
        if let Some(url) = &server.url {
            let client = http_client()?;
            let mut config =
                transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                );
            if let Some(key) = &server.bearer_token_env {
                let token = std::env::var(key).map_err(|_| format!("{key} is not set"))?;
                config = config.auth_header(token);
            }
            let t = transport::StreamableHttpClientTransport::with_client(client, config);
            return ().serve(t).await.map_err(|e| e.to_string());
        }
        let command = server.command.as_deref().unwrap_or_default();
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(&server.args).env_clear().kill_on_drop(true);
        for key in ["PATH", "HOME", "LANG"]
            .into_iter()
            .chain(server.env_from.iter().map(String::as_str))
        {
            if let Ok(value) = std::env::var(key) {
                cmd.env(key, value);
            }
        }
        cmd.envs(&server.env);
        if let Some(dir) = &server.cwd {
            cmd.current_dir(dir);
        }
        die_with_parent(&mut cmd);
        let (t, stderr) = transport::TokioChildProcess::builder(cmd)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start '{command}': {e}"))?;
        if let Some(stderr) = stderr {
            tokio::spawn(forward_stderr(server.name.clone(), stderr));
        }
        ().serve(t).await.map_err(|e| e.to_string())
    }

    /// The server's tools.
    pub(super) async fn list(&self) -> Result<Vec<SourceTool>, ToolError> {
        let service = self.service().await?;
        let watch = self.watch(&service);
        let listed = service.list_all_tools().await;
        watch.done();
        match listed {
            Ok(tools) => Ok(tools
                .into_iter()
                .map(|t| SourceTool {
                    name: t.name.to_string(),
                    description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                    parameters: Value::Object((*t.input_schema).clone()),
                })
                .collect()),
            Err(ServiceError::McpError(e)) => Err(ToolError::Failed(self.unavailable(e.message))),
            Err(e) => {
                self.forget(&service);
                Err(ToolError::Retryable(self.unavailable(e)))
            }
        }
    }

    /// Runs one call. See the module notes for what each failure means.
    pub(super) async fn call(
        &self,
        ctx: &ToolContext,
        tool: &str,
        args: Value,
        class: IdempotencyClass,
    ) -> Result<ToolOutput, ToolError> {
        let service = self.service().await?;
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = match args {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "an MCP tool takes an object, not {other}"
                )));
            }
        };
        let mut meta = serde_json::Map::new();
        meta.insert(IDEMPOTENCY_META_KEY.into(), json!(ctx.idempotency_key));
        params.meta = Some(meta.into());
        let watch = self.watch(&service);
        let called = service.call_tool(params).await;
        watch.done();
        match called {
            Ok(result) => Ok(output(&result)),
            Err(ServiceError::McpError(e)) => Ok(ToolOutput::error(crate::secrets::redact_string(
                format!("mcp error {}: {}", e.code.0, e.message),
            ))),
            Err(ServiceError::TransportSend(e)) => {
                self.forget(&service);
                Err(ToolError::Retryable(
                    self.unavailable(format!("the request was not sent: {e}")),
                ))
            }
            Err(ServiceError::TransportClosed) => {
                self.forget(&service);
                let why = self.unavailable("the connection closed during the call");
                if class == IdempotencyClass::Unsafe {
                    Err(ToolError::OutcomeUnknown(why))
                } else {
                    Err(ToolError::Retryable(why))
                }
            }
            Err(e) => Ok(ToolOutput::error(crate::secrets::redact_string(format!(
                "mcp call failed: {e}"
            )))),
        }
    }
}

/// What the model reads of a call's result: its text blocks, a short
/// note for each other block, and any structured content as the value.
fn output(result: &rmcp::model::CallToolResult) -> ToolOutput {
    let mut lines = Vec::new();
    for block in &result.content {
        let block = serde_json::to_value(block).unwrap_or(Value::Null);
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let line = match block.get("type").and_then(Value::as_str) {
            Some("text") => field(&block, "text").unwrap_or_default(),
            Some(kind @ ("image" | "audio")) => format!(
                "[{kind} {}]",
                field(&block, "mimeType").unwrap_or_else(|| "unknown type".into())
            ),
            Some("resource") => {
                let r = block.get("resource").cloned().unwrap_or(Value::Null);
                field(&r, "text").unwrap_or_else(|| {
                    format!("[resource {}]", field(&r, "uri").unwrap_or_default())
                })
            }
            Some("resource_link") => {
                format!(
                    "[resource link {}]",
                    field(&block, "uri").unwrap_or_default()
                )
            }
            other => format!("[{} content]", other.unwrap_or("unknown")),
        };
        lines.push(line);
    }
    let mut out = ToolOutput::text(crate::secrets::redact_string(lines.join("\n")));
    out.is_error = result.is_error.unwrap_or(false);
    out.value = result.structured_content.clone().map(|mut v| {
        crate::secrets::redact_value(&mut v);
        v
    });
    out
}

/// The server's own log lines, at debug level, secrets redacted.
async fn forward_stderr(server: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(server = %server, "mcp stderr: {}", crate::secrets::redact(&line));
    }
}

/// A stdio server gets SIGKILL when the process that started it dies, so
/// a killed ratchet leaves no server behind.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The HTTP client, with rustls on ring and the webpki roots (rmcp's
/// transport takes a reqwest 0.13 client).
fn http_client() -> Result<reqwest_mcp::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest_mcp::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}
