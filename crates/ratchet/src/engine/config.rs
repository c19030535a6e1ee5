//! The engine's knobs: timeouts, retry policies, limits and the approval
//! policy, and the step budget the Restate handler timers are derived from.

use crate::tools::ToolRegistry;
use serde::{Deserialize, Serialize};

/// How provider errors are retried inside a model step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff_ms: u64,
    /// Longest delay between retries.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff_ms: 200,
            max_backoff_ms: 2_000,
        }
    }
}

/// Knobs of the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Model calls per turn before `MaxTurns`.
    pub max_iterations: u32,
    /// Execution lease time-to-live; renewed before every effect.
    pub lease_ttl_ms: u64,
    /// Largest turn input accepted, in bytes of JSON.
    pub max_input_bytes: usize,
    /// Provider retry policy.
    pub provider_retry: RetryPolicy,
    /// System prompt when the session sets none.
    pub default_system_prompt: String,
    /// History messages kept in context when the session sets no limit.
    pub max_context_messages: u32,
    /// Agent frames followed from one root turn.
    pub max_frames: u32,
    /// Longest a model call may take before it counts as a failed attempt.
    pub model_timeout_ms: u64,
    /// Longest a tool call may take, unless the tool declares its own.
    pub tool_timeout_ms: u64,
    /// How a timed-out tool call is retried (same idempotency key). Tools
    /// of class `Unsafe` are never retried: a repeat could repeat the effect.
    pub tool_retry: RetryPolicy,
    /// Largest step record, in bytes of JSON. A step whose record is larger
    /// fails terminally and the turn commits `Stopped(RuntimeError)`; kept
    /// well below Restate's message limit so the journal can always take it.
    pub max_step_record_bytes: usize,
    /// Count every model and tool call body in the store's effect ledger
    /// (`SessionStore::count_effect`): what failure tests check "ran once"
    /// against. Off by default: it is a store write per effect.
    pub effect_ledger: bool,
    /// Append each effect's event (`tool_executed`, `tool_outcome_unknown`,
    /// `steered`) inside the step that makes it, so a follower of the event
    /// stream sees it as it happens rather than at the commit (a store write
    /// per effect; the commit then leaves those out). Ids are the step's, so
    /// a step run again appends nothing twice. On with `ratchet serve --http`.
    #[serde(default)]
    pub live_events: bool,
    /// Tool calls that wait for a person's approval before they run.
    #[serde(default)]
    pub approval: ApprovalPolicy,
}

/// Which tool calls wait for approval, and for how long. A call also waits
/// when its tool says so (`Tool::requires_approval`) or a plugin does
/// (`Plugin::requires_approval`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Tools whose every call waits for approval.
    #[serde(default)]
    pub tools: std::collections::BTreeSet<String>,
    /// How long a call waits before its approval expires (and the model
    /// is told so instead of the tool running).
    pub timeout_ms: u64,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            tools: Default::default(),
            timeout_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_iterations: 8,
            lease_ttl_ms: 30_000,
            max_input_bytes: 64 * 1024,
            provider_retry: RetryPolicy::default(),
            default_system_prompt: "You are a helpful assistant. Use the tools when they help."
                .into(),
            max_context_messages: 200,
            max_frames: 4,
            model_timeout_ms: 120_000,
            tool_timeout_ms: 60_000,
            tool_retry: RetryPolicy {
                attempts: 2,
                initial_backoff_ms: 200,
                max_backoff_ms: 2_000,
            },
            max_step_record_bytes: 256 * 1024,
            effect_ledger: false,
            live_events: false,
            approval: ApprovalPolicy::default(),
        }
    }
}

impl RetryPolicy {
    /// The longest `attempts` calls of at most `timeout_ms` each, with the
    /// backoff between them, can take.
    pub fn worst_case_ms(&self, timeout_ms: u64) -> u64 {
        let attempts = u64::from(self.attempts.max(1));
        let mut backoff = self.initial_backoff_ms;
        let mut waits = 0u64;
        for _ in 1..attempts {
            waits = waits.saturating_add(backoff);
            backoff = backoff.saturating_mul(2).min(self.max_backoff_ms);
        }
        attempts.saturating_mul(timeout_ms).saturating_add(waits)
    }
}

impl EngineConfig {
    /// The longest any one step of a turn can run: the model step with all
    /// its attempts, or the slowest tool with its retries. The Restate
    /// handler timers are derived from it, so the orchestrator never aborts
    /// a step that is still within its own timeouts.
    pub fn step_budget_ms(&self, tools: &ToolRegistry) -> u64 {
        let model = self.provider_retry.worst_case_ms(self.model_timeout_ms);
        let tool = tools
            .names()
            .iter()
            .map(|n| {
                let timeout = tools.timeout_ms(n, self.tool_timeout_ms);
                tools
                    .retry_policy(n, &self.tool_retry)
                    .worst_case_ms(timeout)
            })
            .max()
            .unwrap_or(0);
        let source = tools
            .sources()
            .iter()
            .map(|s| {
                let timeout = s
                    .timeout()
                    .map_or(self.tool_timeout_ms, |d| d.as_millis() as u64);
                s.retry_policy()
                    .unwrap_or_else(|| self.tool_retry.clone())
                    .worst_case_ms(timeout)
            })
            .max()
            .unwrap_or(0);
        model.max(tool).max(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
    use std::sync::Arc;
    use std::time::Duration;

    struct Patient;

    #[async_trait::async_trait]
    impl Tool for Patient {
        fn name(&self) -> &str {
            "patient"
        }
        fn description(&self) -> &str {
            "retries a lot"
        }
        fn parameters(&self) -> serde_json::Value {
            serde_json::json!({"type": "object"})
        }
        fn idempotency(&self) -> IdempotencyClass {
            IdempotencyClass::Keyed
        }
        fn timeout(&self) -> Option<Duration> {
            Some(Duration::from_secs(100))
        }
        fn retry_policy(&self) -> Option<RetryPolicy> {
            Some(RetryPolicy {
                attempts: 5,
                initial_backoff_ms: 1_000,
                max_backoff_ms: 2_000,
            })
        }
        async fn call(
            &self,
            _ctx: &ToolContext,
            _args: serde_json::Value,
        ) -> Result<ToolOutput, ToolError> {
            Ok(ToolOutput::text("ok"))
        }
    }

    #[test]
    fn the_step_budget_covers_a_tool_s_own_retry_policy() {
        let config = EngineConfig::default();
        let tools = ToolRegistry::new().with(Arc::new(Patient));
        // 5 attempts of 100 s, waits of 1 + 2 + 2 + 2 s between them.
        let tool = 5 * 100_000 + 7_000;
        let model = config.provider_retry.worst_case_ms(config.model_timeout_ms);
        assert!(tool > model);
        assert_eq!(config.step_budget_ms(&tools), tool);
    }
}
