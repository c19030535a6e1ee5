//! An OpenAI-compatible Chat Completions client ([`OpenAiClient`]): works
//! against api.openai.com and any server speaking the same wire format
//! (vLLM, Ollama, LiteLLM, ...).
//!
//! The API key is read once, at construction, from an environment variable.
//! It is kept out of everything the client prints: `Debug` redacts it, no
//! headers are logged, and it is registered with [`crate::secrets`], so
//! every body (error or answer) is scrubbed of it before it is read or cut,
//! in case a server echoes it back.

mod stream;
mod wire;

use super::http::{self, ModelHttp};
use super::{ModelProvider, ModelRequest, ModelResponse, ProviderError, SharedDeltaSink};
use async_trait::async_trait;
use reqwest::header::AUTHORIZATION;
use std::fmt;
use std::time::Duration;

/// Where and how to reach an OpenAI-compatible server, and what to ask it.
/// Holds no secret: only the name of the environment variable with the key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenAiConfig {
    /// API root, e.g. `https://api.openai.com/v1`; `/chat/completions` is
    /// appended. For Azure OpenAI, the resource root
    /// (`https://NAME.openai.azure.com`) with [`Self::azure`].
    pub base_url: String,
    /// Model name sent with each request, e.g. `gpt-4o-mini` (on Azure, the
    /// deployment name).
    pub model: String,
    /// Environment variable holding the API key.
    pub api_key_env: String,
    /// Limit on one whole request, connect to last byte.
    pub timeout: Duration,
    /// Azure OpenAI: the `api-version`. The URL is then
    /// `{base}/openai/deployments/{model}/chat/completions?api-version=…`
    /// and the key goes in an `api-key` header.
    pub api_version: Option<String>,
    /// Sampling parameters and options sent with every request.
    pub params: OpenAiParams,
    /// Extra headers sent with every request (an organization, a gateway's
    /// routing header); values are treated as secrets.
    pub headers: Vec<(String, String)>,
}

/// Request options of the Chat Completions API; `None` leaves each to the
/// server's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenAiParams {
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `max_tokens` (older servers and most compatible ones).
    pub max_tokens: Option<u32>,
    /// `max_completion_tokens` (OpenAI's newer models, reasoning ones).
    pub max_completion_tokens: Option<u32>,
    /// `tool_choice`: `"auto"`, `"none"`, `"required"` or a function choice.
    pub tool_choice: Option<serde_json::Value>,
    /// `parallel_tool_calls` (sent only with tools).
    pub parallel_tool_calls: Option<bool>,
    /// `response_format`, e.g. `{"type": "json_object"}`.
    pub response_format: Option<serde_json::Value>,
    /// Stream the answer (server-sent events), assembled into the same
    /// response; its deltas go to the client's [`DeltaSink`], if any.
    pub stream: bool,
}

impl OpenAiConfig {
    /// The environment variable read for the key unless told otherwise.
    pub const DEFAULT_API_KEY_ENV: &'static str = "OPENAI_API_KEY";
    /// OpenAI's own API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
    /// The request timeout unless told otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// A config for `model` at `base_url`, with the default key variable and timeout.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: Self::DEFAULT_API_KEY_ENV.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            ..Self::default()
        }
    }

    /// Reads the key from another environment variable.
    pub fn with_api_key_env(mut self, name: impl Into<String>) -> Self {
        self.api_key_env = name.into();
        self
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Speaks Azure OpenAI's deployment URLs with this `api-version`.
    pub fn azure(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = Some(api_version.into());
        self
    }

    /// Sets the request options.
    pub fn with_params(mut self, params: OpenAiParams) -> Self {
        self.params = params;
        self
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The URL a chat completion is posted to.
    pub fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match &self.api_version {
            None => format!("{base}/chat/completions"),
            Some(v) => format!(
                "{base}/openai/deployments/{}/chat/completions?api-version={v}",
                self.model
            ),
        }
    }
}

/// A [`ModelProvider`] speaking the OpenAI Chat Completions API.
pub struct OpenAiClient {
    config: OpenAiConfig,
    http: ModelHttp,
    sink: Option<SharedDeltaSink>,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .field("endpoint", &self.http.endpoint())
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client whose key is read from the environment variable the config
    /// names; a missing or empty variable is an error naming the variable.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let key = http::key_from_env(&config.api_key_env)?;
        let source = format!("environment variable {}", config.api_key_env);
        Self::build(config, key, &source)
    }

    /// A client with an explicit key (tests, or keys from a secret store).
    pub fn with_api_key(
        config: OpenAiConfig,
        api_key: impl Into<String>,
    ) -> Result<Self, ProviderError> {
        Self::build(config, api_key.into(), "the given key")
    }

    fn build(config: OpenAiConfig, secret: String, source: &str) -> Result<Self, ProviderError> {
        let mut headers = http::extra_headers(&config.headers)?;
        if config.api_version.is_some() {
            headers.insert("api-key", http::key_header("", &secret, source)?);
        } else {
            headers.insert(AUTHORIZATION, http::key_header("Bearer ", &secret, source)?);
        }
        let name = format!("openai:{}", config.model);
        let http = ModelHttp::new(name, config.endpoint(), headers, config.timeout)?;
        Ok(OpenAiClient {
            config,
            http,
            sink: None,
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Hands the deltas of streamed answers (`params.stream`) to `sink`.
    pub fn with_delta_sink(mut self, sink: SharedDeltaSink) -> Self {
        self.sink = Some(sink);
        self
    }

    async fn complete_streamed(
        &self,
        body: &serde_json::Value,
        iteration: u32,
    ) -> Result<ModelResponse, ProviderError> {
        let mut lines = stream::SseLines::default();
        let mut asm = stream::Assembler::new(iteration, self.sink.clone());
        let mut failed = None;
        self.http
            .post_stream(body, |bytes| {
                for data in lines.feed(bytes) {
                    // Each event is scrubbed before it is read.
                    let data = crate::secrets::redact(&data).into_owned();
                    if let Err(e) = asm.push(&data) {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })
            .await?;
        if let Some(e) = failed {
            return Err(self.http.error(false, e));
        }
        asm.finish().map_err(|e| self.http.error(true, e))
    }
}

#[async_trait]
impl ModelProvider for OpenAiClient {
    fn name(&self) -> String {
        self.http.name.clone()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let body = wire::request_body(&self.config.model, &self.config.params, request);
        tracing::debug!(
            model = %self.config.model,
            iteration = request.iteration,
            messages = request.messages.len(),
            "chat completion request"
        );
        if self.config.params.stream {
            return self.complete_streamed(&body, request.iteration).await;
        }
        let body = self.http.post(&body).await?;
        wire::parse_response(body.as_bytes()).map_err(|detail| self.http.error(false, detail))
    }
}

#[cfg(test)]
mod tests;
