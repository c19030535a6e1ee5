//! Fault points: named places where a test can make the process die (as a
//! SIGKILL would leave it) or, in-process, make an operation fail.
//!
//! `RATCHET_FAULT=<when>:<point>` (e.g. `after:tool:0:call_2`,
//! `before:commit`, `during:commit:messages`) kills the process when the
//! named point is reached. A [`FaultSwitch`] arms a point in-process instead,
//! so a store test can make a commit fail midway and check nothing is left.
//!
//! The environment variables work only in a build with the
//! `fault-injection` feature (the `ratchet` binary's, for the crash matrix);
//! a library build without it ignores them, so no production process can be
//! killed by its environment.

use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable naming the fault point.
pub const FAULT_ENV: &str = "RATCHET_FAULT";

fn env_fault() -> Option<&'static str> {
    if !cfg!(feature = "fault-injection") {
        return None;
    }
    static SPEC: OnceLock<Option<String>> = OnceLock::new();
    SPEC.get_or_init(|| {
        std::env::var(FAULT_ENV)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Kills this process at once with SIGKILL: no destructors, no flushing.
pub fn die_now(point: &str) -> ! {
    tracing::warn!(point, "fault point reached: killing the process");
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// Kills the process if `RATCHET_FAULT` names `{when}:{point}`.
pub fn point(when: &str, point: &str) {
    if let Some(spec) = env_fault()
        && let Some(rest) = spec.strip_prefix(when)
        && rest.strip_prefix(':') == Some(point)
    {
        die_now(spec);
    }
}

/// The environment variable naming a pause: `<ms>@<when>:<point>`, e.g.
/// `2000@after:tool:0:call_0`. The process sleeps there once, leaving a
/// window in which a test can kill the orchestrator or cancel the turn.
pub const PAUSE_ENV: &str = "RATCHET_PAUSE";

/// Sleeps once if `RATCHET_PAUSE` names `{when}:{point}`.
pub async fn pause(when: &str, point: &str) {
    static SPEC: OnceLock<Option<(u64, String)>> = OnceLock::new();
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let spec = SPEC.get_or_init(|| {
        if !cfg!(feature = "fault-injection") {
            return None;
        }
        let raw = std::env::var(PAUSE_ENV).ok()?;
        let (ms, at) = raw.trim().split_once('@')?;
        Some((ms.parse().ok()?, at.to_string()))
    });
    if let Some((ms, at)) = spec
        && at.strip_prefix(when).and_then(|r| r.strip_prefix(':')) == Some(point)
        && !FIRED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        tracing::warn!(point = at.as_str(), ms, "pause point reached");
        // Also on stderr as such: the crash matrix waits for this line, and
        // a team's service may install no log subscriber.
        eprintln!("ratchet fault injection: pause point reached: {at} ({ms} ms)");
        tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
    }
}

/// An in-process switch that makes one named point fail once.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<Mutex<Option<String>>>);

impl FaultSwitch {
    /// A switch with nothing armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms `point`: the next time it is reached, it fails.
    pub fn arm(&self, point: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(point.into());
    }

    /// Reaching `point`: kills the process if the environment names it
    /// (`during:{point}`), fails if the switch is armed for it.
    pub fn check(&self, point: &str) -> Result<(), String> {
        self::point("during", point);
        let mut armed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if armed.as_deref() == Some(point) {
            *armed = None;
            return Err(format!("injected fault at {point}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs only in a build without `fault-injection` (`cargo test -p
    /// ratchet --lib`): a fault point named in the environment must not
    /// kill this process, or the test run dies here.
    #[cfg(not(feature = "fault-injection"))]
    #[test]
    fn the_environment_cannot_kill_a_default_build() {
        // SAFETY: set before any thread reads it; this test reads it once.
        unsafe { std::env::set_var(FAULT_ENV, "before:claim") };
        point("before", "claim");
        assert_eq!(env_fault(), None);
    }

    #[test]
    fn an_armed_switch_fails_once_at_its_point_only() {
        let s = FaultSwitch::new();
        s.arm("commit:events");
        assert!(s.check("commit:messages").is_ok());
        assert!(s.check("commit:events").is_err());
        assert!(s.check("commit:events").is_ok());
    }
}
