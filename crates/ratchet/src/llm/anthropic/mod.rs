//! An Anthropic Messages API client ([`AnthropicClient`]): tool use, the
//! system prompt, usage, stop reasons, and errors split into retryable
//! (429, 5xx, 529 "overloaded", transport failures) and terminal ones.
//!
//! The key is read once, at construction, from an environment variable
//! (`ANTHROPIC_API_KEY` by default) and sent as a sensitive `x-api-key`
//! header. Like the OpenAI client's, it is registered with
//! [`crate::secrets`], so every body is scrubbed of it before it is read.

mod wire;

use super::http::{self, ModelHttp};
use super::{ModelProvider, ModelRequest, ModelResponse, ProviderError};
use async_trait::async_trait;
use reqwest::header::HeaderValue;
use std::fmt;
use std::time::Duration;

/// Where and how to reach the Messages API, and what to ask it. Holds no
/// secret: only the name of the environment variable with the key.
#[derive(Clone, Debug, PartialEq)]
pub struct AnthropicConfig {
    /// API root, e.g. `https://api.anthropic.com`; `/v1/messages` is appended.
    pub base_url: String,
    /// Model name, e.g. `claude-sonnet-4-5`.
    pub model: String,
    /// Environment variable holding the API key.
    pub api_key_env: String,
    /// Limit on one whole request, connect to last byte.
    pub timeout: Duration,
    /// `max_tokens`, which the API requires.
    pub max_tokens: u32,
    /// `temperature`, or the server's default.
    pub temperature: Option<f64>,
    /// `tool_choice` (`{"type": "auto" | "any" | "tool", ...}`), sent only
    /// with tools.
    pub tool_choice: Option<serde_json::Value>,
    /// The `anthropic-version` header.
    pub version: String,
    /// Extra headers (an `anthropic-beta`, a gateway's); values are treated
    /// as secrets.
    pub headers: Vec<(String, String)>,
}

impl AnthropicConfig {
    /// The environment variable read for the key unless told otherwise.
    pub const DEFAULT_API_KEY_ENV: &'static str = "ANTHROPIC_API_KEY";
    /// Anthropic's own API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// The API version this client speaks.
    pub const DEFAULT_VERSION: &'static str = "2023-06-01";
    /// `max_tokens` unless told otherwise.
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// A config for `model` at `base_url` with the defaults.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        AnthropicConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: Self::DEFAULT_API_KEY_ENV.into(),
            timeout: Duration::from_secs(120),
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            temperature: None,
            tool_choice: None,
            version: Self::DEFAULT_VERSION.into(),
            headers: Vec::new(),
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

    /// Sets `max_tokens`.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A [`ModelProvider`] speaking the Anthropic Messages API.
pub struct AnthropicClient {
    config: AnthropicConfig,
    http: ModelHttp,
}

impl fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("model", &self.config.model)
            .field("endpoint", &self.http.endpoint())
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AnthropicClient {
    /// A client whose key is read from the environment variable the config
    /// names; a missing or empty variable is an error naming the variable.
    pub fn new(config: AnthropicConfig) -> Result<Self, ProviderError> {
        let key = http::key_from_env(&config.api_key_env)?;
        let source = format!("environment variable {}", config.api_key_env);
        Self::build(config, &key, &source)
    }

    /// A client with an explicit key (tests, or keys from a secret store).
    pub fn with_api_key(
        config: AnthropicConfig,
        api_key: impl Into<String>,
    ) -> Result<Self, ProviderError> {
        Self::build(config, &api_key.into(), "the given key")
    }

    fn build(config: AnthropicConfig, secret: &str, source: &str) -> Result<Self, ProviderError> {
        let mut headers = http::extra_headers(&config.headers)?;
        headers.insert("x-api-key", http::key_header("", secret, source)?);
        let version = HeaderValue::from_str(&config.version).map_err(|_| {
            ProviderError::terminal(format!("bad anthropic-version '{}'", config.version))
        })?;
        headers.insert("anthropic-version", version);
        let endpoint = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        let name = format!("anthropic:{}", config.model);
        let http = ModelHttp::new(name, endpoint, headers, config.timeout)?;
        Ok(AnthropicClient { config, http })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }
}

#[async_trait]
impl ModelProvider for AnthropicClient {
    fn name(&self) -> String {
        self.http.name.clone()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let body = wire::request_body(&self.config, request);
        tracing::debug!(
            model = %self.config.model,
            iteration = request.iteration,
            messages = request.messages.len(),
            "messages request"
        );
        let body = self.http.post(&body).await?;
        wire::parse_response(body.as_bytes()).map_err(|detail| self.http.error(false, detail))
    }
}

#[cfg(test)]
mod tests;
