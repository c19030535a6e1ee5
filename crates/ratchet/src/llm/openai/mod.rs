//! An OpenAI-compatible Chat Completions client ([`OpenAiClient`]): works
//! against api.openai.com and any server speaking the same wire format
//! (vLLM, Ollama, LiteLLM, ...).
//!
//! The API key is read once, at construction, from an environment variable.
//! It is kept out of everything the client prints: `Debug` redacts it, no
//! headers are logged, and it is registered with [`crate::secrets`], so
//! every body (error or answer) is scrubbed of it before it is read or cut,
//! in case a server echoes it back.

mod wire;

use super::{ModelProvider, ModelRequest, ModelResponse, ProviderError};
use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use std::fmt;
use std::time::Duration;

/// Where and how to reach an OpenAI-compatible server. Holds no secret:
/// only the name of the environment variable with the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// API root, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// Model name sent with each request, e.g. `gpt-4o-mini`.
    pub model: String,
    /// Environment variable holding the API key.
    pub api_key_env: String,
    /// Limit on one whole request, connect to last byte.
    pub timeout: Duration,
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
}

/// The API key, as the header that sends it (marked sensitive).
struct ApiKey {
    header: HeaderValue,
}

/// A [`ModelProvider`] speaking the OpenAI Chat Completions API.
pub struct OpenAiClient {
    config: OpenAiConfig,
    endpoint: String,
    key: ApiKey,
    http: reqwest::Client,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client whose key is read from the environment variable the config
    /// names; a missing or empty variable is an error naming the variable.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let name = &config.api_key_env;
        let key = match std::env::var(name) {
            Ok(key) => key,
            Err(std::env::VarError::NotPresent) => {
                return Err(ProviderError::terminal(format!(
                    "no API key: set the environment variable {name}"
                )));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ProviderError::terminal(format!(
                    "the API key in environment variable {name} is not valid UTF-8"
                )));
            }
        };
        let source = format!("environment variable {name}");
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
        let secret = secret.trim().to_string();
        if secret.is_empty() {
            return Err(ProviderError::terminal(format!(
                "no API key: {source} is empty"
            )));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
            ProviderError::terminal(format!(
                "the API key from {source} has characters not allowed in an HTTP header"
            ))
        })?;
        // Keeps the value out of reqwest's and hyper's own debug output.
        header.set_sensitive(true);
        // A short key is still used; it is then masked only by shape.
        let _ = crate::secrets::register(&format!("the API key from {source}"), &secret);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ProviderError::terminal(format!("cannot build HTTP client: {e}")))?;
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(OpenAiClient {
            config,
            endpoint,
            key: ApiKey { header },
            http,
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    fn error(&self, retryable: bool, detail: String) -> ProviderError {
        let message = crate::secrets::redact_string(format!("{}: {detail}", self.name()));
        tracing::warn!(model = %self.config.model, retryable, error = %message, "model call failed");
        ProviderError { retryable, message }
    }

    /// Failures before a status arrived: all worth retrying except a
    /// request that could not even be built.
    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        self.error(!e.is_builder(), crate::error_text::http_failure(&e))
    }

    fn status_error(&self, status: StatusCode, body: &[u8]) -> ProviderError {
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        let server = wire::error_message(body);
        self.error(retryable, format!("HTTP {status}: {server}"))
    }
}

#[async_trait]
impl ModelProvider for OpenAiClient {
    fn name(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let body = wire::request_body(&self.config.model, request);
        tracing::debug!(
            model = %self.config.model,
            iteration = request.iteration,
            messages = request.messages.len(),
            "chat completion request"
        );
        let response = self
            .http
            .post(&self.endpoint)
            .header(AUTHORIZATION, self.key.header.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        // Every body goes through the redaction layer before anything reads,
        // cuts or keeps it: a server echoing the key, in an error or in an
        // answer, gets it masked.
        let body = crate::secrets::redact(&String::from_utf8_lossy(&bytes)).into_owned();
        if !status.is_success() {
            return Err(self.status_error(status, body.as_bytes()));
        }
        wire::parse_response(body.as_bytes()).map_err(|detail| self.error(false, detail))
    }
}

#[cfg(test)]
mod tests;
