//! The model a `--model` spec (or an agent's `model`) names: `demo`,
//! `scripted:FILE`, `openai:MODEL` or `anthropic:MODEL`, the last two with
//! optional settings (an agents file's `[agent.model_options]`). Settings a
//! provider does not take are refused, naming them, before anything runs.

use anyhow::{Result, bail};
use ratchet::llm::{
    AnthropicClient, AnthropicConfig, DemoModel, ModelProvider, OpenAiClient, OpenAiConfig,
    OpenAiParams, ScriptedProvider,
};
use ratchet::tools::ToolRegistry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Settings of an `openai:` or `anthropic:` model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOptions {
    /// API root (default: `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL`, else the vendor's).
    base_url: Option<String>,
    /// Environment variable with the key (default `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`).
    api_key_env: Option<String>,
    /// Limit on one request, in ms.
    timeout_ms: Option<u64>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    /// OpenAI only.
    max_completion_tokens: Option<u32>,
    /// Any JSON: `"auto"`, `{"type": "any"}`, ...
    tool_choice: Option<serde_json::Value>,
    /// OpenAI only.
    parallel_tool_calls: Option<bool>,
    /// OpenAI only, e.g. `{ type = "json_object" }`.
    response_format: Option<serde_json::Value>,
    /// OpenAI only: Azure OpenAI's `api-version` (the model is the deployment).
    api_version: Option<String>,
    /// OpenAI only: stream the answer (server-sent events).
    stream: Option<bool>,
    /// Extra headers sent with every request.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl ModelOptions {
    fn headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn openai(&self, model: &str) -> OpenAiConfig {
        let base = self.base_url.clone().unwrap_or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .unwrap_or_else(|_| OpenAiConfig::DEFAULT_BASE_URL.to_string())
        });
        let mut config = OpenAiConfig::new(base, model).with_params(OpenAiParams {
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            max_completion_tokens: self.max_completion_tokens,
            tool_choice: self.tool_choice.clone(),
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: self.response_format.clone(),
            stream: self.stream.unwrap_or(false),
        });
        config.headers = self.headers();
        config.api_version = self.api_version.clone();
        if let Some(env) = &self.api_key_env {
            config.api_key_env = env.clone();
        }
        if let Some(ms) = self.timeout_ms {
            config.timeout = Duration::from_millis(ms);
        }
        config
    }

    fn anthropic(&self, model: &str) -> Result<AnthropicConfig> {
        let openai_only = [
            (
                "max_completion_tokens",
                self.max_completion_tokens.is_some(),
            ),
            ("parallel_tool_calls", self.parallel_tool_calls.is_some()),
            ("response_format", self.response_format.is_some()),
            ("api_version", self.api_version.is_some()),
            ("stream", self.stream.is_some()),
        ];
        if let Some((name, _)) = openai_only.iter().find(|(_, set)| *set) {
            bail!("model option '{name}' is for openai: models, not anthropic:");
        }
        let base = self.base_url.clone().unwrap_or_else(|| {
            std::env::var("ANTHROPIC_BASE_URL")
                .unwrap_or_else(|_| AnthropicConfig::DEFAULT_BASE_URL.to_string())
        });
        let mut config = AnthropicConfig::new(base, model);
        config.temperature = self.temperature;
        config.tool_choice = self.tool_choice.clone();
        config.headers = self.headers();
        if let Some(n) = self.max_tokens {
            if n == 0 {
                bail!("model option 'max_tokens' must be at least 1");
            }
            config.max_tokens = n;
        }
        if let Some(env) = &self.api_key_env {
            config.api_key_env = env.clone();
        }
        if let Some(ms) = self.timeout_ms {
            config.timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }
}

/// The model a spec names; a script naming a tool the registry lacks is
/// refused up front, and so are options given to a model that takes none.
pub fn model_from_spec(
    spec: &str,
    tools: &ToolRegistry,
    options: Option<&ModelOptions>,
) -> Result<Arc<dyn ModelProvider>> {
    let none = ModelOptions::default();
    let opts = options.unwrap_or(&none);
    if let Some(model) = spec.strip_prefix("openai:") {
        // Streamed deltas go to the live bus: to followers of the event
        // stream (`serve --http`), and nowhere while nobody follows.
        let client = OpenAiClient::new(opts.openai(model))?
            .with_delta_sink(Arc::new(ratchet::live::LiveDeltas));
        return Ok(Arc::new(client));
    }
    if let Some(model) = spec.strip_prefix("anthropic:") {
        return Ok(Arc::new(AnthropicClient::new(opts.anthropic(model)?)?));
    }
    if options.is_some() {
        bail!("model '{spec}' takes no model_options (only openai: and anthropic: models do)");
    }
    if spec == "demo" {
        return Ok(Arc::new(DemoModel::new()));
    }
    if let Some(file) = spec.strip_prefix("scripted:") {
        let script = ScriptedProvider::from_file(file)?;
        let known = tools.names();
        let unknown: Vec<String> = script
            .tool_names()
            .into_iter()
            .filter(|n| !tools.may_offer(n))
            .collect();
        if !unknown.is_empty() {
            bail!(
                "script {file} calls unknown tool(s): {} (available: {})",
                unknown.join(", "),
                known.join(", ")
            );
        }
        return Ok(Arc::new(script));
    }
    bail!("unknown model '{spec}': use demo, scripted:FILE, openai:MODEL or anthropic:MODEL")
}
