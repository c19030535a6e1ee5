//! How Restate runs the `Session` object: the invocation retry policy and
//! the handler timers, set at bind time so whoever embeds the object can
//! change them.
//!
//! The default never kills: an invocation failing on a retryable error (the
//! service down, the store unreachable, a disk full) is retried with capped
//! backoff for as long as it takes, so an outage of any length loses nothing
//! and the session's next input waits its turn. A kill or a pause after N
//! attempts is a choice an operator can make: a paused invocation keeps its
//! key locked until someone resumes it, and a killed one is settled as
//! stopped by the next invocation of its session.
//!
//! The timers: the inactivity timer is short (the margin), so a turn that
//! waits (for an approval, say) is asked to suspend soon and holds no
//! connection or task while it waits. The abort timer, which runs after the
//! inactivity timer and cuts a step that has not finished, is derived from
//! the engine's model and tool timeouts
//! ([`crate::engine::EngineConfig::step_budget_ms`]), so the orchestrator
//! never aborts a step that is still within its own timeouts: the step
//! finishes, its result is journaled, and the invocation suspends and
//! resumes from it. An effect slower than those timeouts is cut by ratchet,
//! once per attempt, not re-run by Restate in a loop.

use crate::engine::Runtime;
use restate_sdk::endpoint::ServiceOptions;
use std::time::Duration;

/// What happens when [`DurableOptions::max_attempts`] is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMaxAttempts {
    /// Pause the invocation until an operator resumes it (key stays locked).
    Pause,
    /// Kill it; the next invocation of the session settles its input.
    Kill,
}

/// Retry policy and timer settings of the `Session` object.
#[derive(Clone, Debug, PartialEq)]
pub struct DurableOptions {
    /// Delay before the first retry of a failed invocation.
    pub initial_interval: Duration,
    /// Longest delay between retries: how soon after an outage ends a
    /// waiting turn goes on.
    pub max_interval: Duration,
    /// Attempts before [`DurableOptions::on_max_attempts`]; `None` retries
    /// for as long as it takes.
    pub max_attempts: Option<u64>,
    /// What a bounded policy does at its end.
    pub on_max_attempts: OnMaxAttempts,
    /// The inactivity timer (how soon a waiting turn suspends), and what
    /// is added to the longest step's budget for the abort timer: time for
    /// the store calls around an effect.
    pub timer_margin: Duration,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(10),
            max_attempts: None,
            on_max_attempts: OnMaxAttempts::Pause,
            timer_margin: Duration::from_secs(10),
        }
    }
}

/// The attempt count that stands for "unbounded": at a 10 s cap it is
/// over a thousand years of retries.
const UNBOUNDED_ATTEMPTS: u64 = u32::MAX as u64;

impl DurableOptions {
    /// The inactivity timer: the margin. A turn waiting on a durable
    /// promise is asked to suspend once it passes.
    pub fn inactivity_timeout(&self, _rt: &Runtime) -> Duration {
        self.timer_margin
    }

    /// The abort timer for `rt`: the longest step plus the margin, so the
    /// two timers together outlast any step within its own timeouts.
    pub fn abort_timeout(&self, rt: &Runtime) -> Duration {
        Duration::from_millis(rt.config.step_budget_ms(&rt.tools)) + self.timer_margin
    }

    /// The Restate service options these settings stand for.
    pub fn service_options(&self, rt: &Runtime) -> ServiceOptions {
        let options = ServiceOptions::new()
            .inactivity_timeout(self.inactivity_timeout(rt))
            .abort_timeout(self.abort_timeout(rt))
            .retry_policy_initial_interval(self.initial_interval)
            .retry_policy_exponentiation_factor(2.0)
            .retry_policy_max_interval(self.max_interval)
            .retry_policy_max_attempts(self.max_attempts.unwrap_or(UNBOUNDED_ATTEMPTS));
        match self.on_max_attempts {
            OnMaxAttempts::Pause => options.retry_policy_pause_on_max_attempts(),
            OnMaxAttempts::Kill => options.retry_policy_kill_on_max_attempts(),
        }
    }
}
