//! Process metrics in the Prometheus text format (served at `/metrics` on
//! the observation listener): turns by outcome, step durations, replayed
//! steps, retries, lease takeovers and, read from the store when scraped,
//! the inbox depth. Counted where the work runs, never on replay: a step
//! replayed from the journal counts as replayed, not as run.

use crate::model::TurnOutcome;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Upper bounds (seconds) of the step-duration histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    turns: Mutex<BTreeMap<(String, String), u64>>,
    steps: Mutex<BTreeMap<String, Histogram>>,
    replayed: Mutex<BTreeMap<String, u64>>,
    retries: Mutex<BTreeMap<String, u64>>,
    takeovers: AtomicU64,
}

static REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::default);

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A step's kind: `model:0` → `model`, `agent-frame:1:tool:0:c` → `tool`.
fn kind(step: &str) -> String {
    let inner = step
        .strip_prefix("agent-frame:")
        .and_then(|rest| rest.split_once(':'))
        .map_or(step, |(_, s)| s);
    inner.split(':').next().unwrap_or("").to_string()
}

/// A turn committed (not a replayed commit) with `outcome`.
pub(crate) fn turn_committed(outcome: &TurnOutcome) {
    let (status, reason) = match outcome {
        TurnOutcome::Finished(_) => ("finished", String::new()),
        TurnOutcome::AgentFrameSwitch { .. } => ("agent_frame_switch", String::new()),
        TurnOutcome::Stopped(stop) => {
            let reason = serde_json::to_value(stop.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            ("stopped", reason)
        }
    };
    *locked(&REGISTRY.turns)
        .entry((status.to_string(), reason))
        .or_default() += 1;
}

/// Step `step` ran its body, for `seconds`.
pub(crate) fn step_ran(step: &str, seconds: f64) {
    let mut all = locked(&REGISTRY.steps);
    let h = all.entry(kind(step)).or_default();
    for (i, le) in BUCKETS.iter().enumerate() {
        if seconds <= *le {
            h.counts[i] += 1;
        }
    }
    h.count += 1;
    h.sum += seconds;
}

/// Step `step` was answered from the journal.
pub(crate) fn step_replayed(step: &str) {
    *locked(&REGISTRY.replayed).entry(kind(step)).or_default() += 1;
}

/// A model call or tool call (`kind`) failed and is tried again.
pub(crate) fn retried(kind: &str) {
    *locked(&REGISTRY.retries)
        .entry(kind.to_string())
        .or_default() += 1;
}

/// A claim took over an input an ended owner had claimed.
pub(crate) fn lease_taken_over() {
    REGISTRY.takeovers.fetch_add(1, Ordering::Relaxed);
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics in the Prometheus text exposition format (0.0.4); the
/// inbox depth is left out when the store could not be read.
pub fn render(inbox_depth: Option<u64>) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "# HELP ratchet_turns_total Turns committed, by outcome.");
    let _ = writeln!(o, "# TYPE ratchet_turns_total counter");
    for ((status, reason), n) in locked(&REGISTRY.turns).iter() {
        let (s, r) = (label(status), label(reason));
        let _ = writeln!(
            o,
            "ratchet_turns_total{{outcome=\"{s}\",reason=\"{r}\"}} {n}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP ratchet_step_duration_seconds Time steps took to run (not replayed), by kind."
    );
    let _ = writeln!(o, "# TYPE ratchet_step_duration_seconds histogram");
    for (k, h) in locked(&REGISTRY.steps).iter() {
        let k = label(k);
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = h.counts[i];
            let _ = writeln!(
                o,
                "ratchet_step_duration_seconds_bucket{{kind=\"{k}\",le=\"{le}\"}} {n}"
            );
        }
        let (n, sum) = (h.count, h.sum);
        let _ = writeln!(
            o,
            "ratchet_step_duration_seconds_bucket{{kind=\"{k}\",le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(o, "ratchet_step_duration_seconds_sum{{kind=\"{k}\"}} {sum}");
        let _ = writeln!(o, "ratchet_step_duration_seconds_count{{kind=\"{k}\"}} {n}");
    }
    let counters = [
        (
            "ratchet_steps_replayed_total",
            "Steps answered from the journal, by kind.",
            &REGISTRY.replayed,
            "kind",
        ),
        (
            "ratchet_retries_total",
            "Model and tool calls tried again, by kind.",
            &REGISTRY.retries,
            "kind",
        ),
    ];
    for (name, help, map, key) in counters {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} counter");
        for (k, n) in locked(map).iter() {
            let _ = writeln!(o, "{name}{{{key}=\"{}\"}} {n}", label(k));
        }
    }
    let n = REGISTRY.takeovers.load(Ordering::Relaxed);
    let _ = writeln!(
        o,
        "# HELP ratchet_lease_takeovers_total Inputs claimed from an owner that ended."
    );
    let _ = writeln!(o, "# TYPE ratchet_lease_takeovers_total counter");
    let _ = writeln!(o, "ratchet_lease_takeovers_total {n}");
    if let Some(depth) = inbox_depth {
        let _ = writeln!(
            o,
            "# HELP ratchet_inbox_depth Live inputs and commands (pending or claimed) in the store."
        );
        let _ = writeln!(o, "# TYPE ratchet_inbox_depth gauge");
        let _ = writeln!(o, "ratchet_inbox_depth {depth}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::kind;

    #[test]
    fn a_step_s_kind_drops_its_ordinals_and_frame() {
        assert_eq!(kind("model:3"), "model");
        assert_eq!(kind("tool:0:call_1"), "tool");
        assert_eq!(kind("claim"), "claim");
        assert_eq!(kind("agent-frame:2:model:0"), "model");
        assert_eq!(kind("finalize"), "finalize");
    }
}
