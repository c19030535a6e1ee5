//! What the HTTP model clients share: reading the key from the environment
//! into a sensitive header registered with [`crate::secrets`], one JSON
//! POST whose body is scrubbed of secrets before anything reads it, and the
//! mapping of transport and status failures to retryable or terminal
//! [`ProviderError`]s.

use super::ProviderError;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::time::Duration;

/// Reads an API key from the environment variable `name`; a missing, empty
/// or non-UTF-8 variable is an error naming the variable.
pub(super) fn key_from_env(name: &str) -> Result<String, ProviderError> {
    match std::env::var(name) {
        Ok(key) => Ok(key),
        Err(std::env::VarError::NotPresent) => Err(ProviderError::terminal(format!(
            "no API key: set the environment variable {name}"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(ProviderError::terminal(format!(
            "the API key in environment variable {name} is not valid UTF-8"
        ))),
    }
}

/// The header that sends `secret` (as `prefix` + secret), marked sensitive
/// so reqwest and hyper never print it, the secret registered for
/// redaction. `source` names where the key came from, for errors.
pub(super) fn key_header(
    prefix: &str,
    secret: &str,
    source: &str,
) -> Result<HeaderValue, ProviderError> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(ProviderError::terminal(format!(
            "no API key: {source} is empty"
        )));
    }
    let mut header = HeaderValue::from_str(&format!("{prefix}{secret}")).map_err(|_| {
        ProviderError::terminal(format!(
            "the API key from {source} has characters not allowed in an HTTP header"
        ))
    })?;
    header.set_sensitive(true);
    // A short key is still used; it is then masked only by shape.
    let _ = crate::secrets::register(&format!("the API key from {source}"), secret);
    Ok(header)
}

/// Extra headers from configuration (`name: value` pairs); a bad name or
/// value is a terminal error naming it (never its value, which may be a
/// secret).
pub(super) fn extra_headers(pairs: &[(String, String)]) -> Result<HeaderMap, ProviderError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ProviderError::terminal(format!("bad header name '{name}'")))?;
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            ProviderError::terminal(format!("the value of header '{name}' is not allowed"))
        })?;
        v.set_sensitive(true);
        map.insert(n, v);
    }
    Ok(map)
}

/// One model endpoint: a client, the URL, the headers every call sends.
pub(super) struct ModelHttp {
    /// The provider's name in errors and logs (`anthropic:claude-…`).
    pub name: String,
    http: reqwest::Client,
    endpoint: String,
    headers: HeaderMap,
}

impl ModelHttp {
    pub(super) fn new(
        name: String,
        endpoint: String,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ProviderError::terminal(format!("cannot build HTTP client: {e}")))?;
        Ok(ModelHttp {
            name,
            http,
            endpoint,
            headers,
        })
    }

    /// The URL requests go to.
    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// POSTs `body`; answers the response body, scrubbed of secrets, when
    /// the status is a success.
    pub(super) async fn post(&self, body: &Value) -> Result<String, ProviderError> {
        let response = self.send(body).await?;
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
        Ok(body)
    }

    /// POSTs `body` and hands each chunk of a successful response to
    /// `chunk` as it arrives, until the end or `chunk` answers `false`. An
    /// error status reads the whole body, as [`Self::post`] does; a stream
    /// cut mid-way is a retryable transport failure.
    pub(super) async fn post_stream(
        &self,
        body: &Value,
        mut chunk: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ProviderError> {
        let mut response = self.send(body).await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(e))?;
            let body = crate::secrets::redact(&String::from_utf8_lossy(&bytes)).into_owned();
            return Err(self.status_error(status, body.as_bytes()));
        }
        while let Some(bytes) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if !chunk(&bytes) {
                break;
            }
        }
        Ok(())
    }

    async fn send(&self, body: &Value) -> Result<reqwest::Response, ProviderError> {
        self.http
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))
    }

    /// A failure of this endpoint, logged, its text scrubbed.
    pub(super) fn error(&self, retryable: bool, detail: String) -> ProviderError {
        let message = crate::secrets::redact_string(format!("{}: {detail}", self.name));
        tracing::warn!(provider = %self.name, retryable, error = %message, "model call failed");
        ProviderError { retryable, message }
    }

    /// Failures before a status arrived: all worth retrying except a
    /// request that could not even be built.
    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        self.error(!e.is_builder(), crate::error_text::http_failure(&e))
    }

    /// 408, 429, 5xx (Anthropic's 529 "overloaded" among them) are worth
    /// retrying; any other status is final.
    fn status_error(&self, status: StatusCode, body: &[u8]) -> ProviderError {
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        let server = error_message(body);
        self.error(retryable, format!("HTTP {status}: {server}"))
    }
}

/// The server's own error text from an error body (`{"error": {"message"}}`
/// on both OpenAI's and Anthropic's APIs), cut to 500 characters.
pub(super) fn error_message(body: &[u8]) -> String {
    const MAX: usize = 500;
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())
            .map(str::to_string)
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_the_servers_message_and_truncates() {
        assert_eq!(
            error_message(br#"{"error": {"message": "Invalid model", "type": "x"}}"#),
            "Invalid model"
        );
        assert_eq!(error_message(b" upstream down \n"), "upstream down");
        let long = "y".repeat(2000);
        assert_eq!(error_message(long.as_bytes()).len(), 503);
    }
}
