//! Replay for a team's own agent: a recording (an inline export, or a
//! durable turn read from Restate's journal through the admin API) run
//! against the team's [`Agent`] — its tools, plugins, model and settings —
//! with every effect served from the recording. The first step that
//! differs is reported with both steps' identities and the fields that
//! differ, so a deploy gate can say *what* changed.
//!
//! ```no_run
//! # fn my_agent() -> ratchet::Agent { ratchet::Agent::new("billing") }
//! #[tokio::test]
//! async fn recordings_replay_on_this_build() {
//!     ratchet_testkit::replay::assert_dir(&my_agent(), "tests/recordings").await;
//! }
//! ```

use ratchet::Agent;
use ratchet::engine::inline::{self, ReplayReport};
use ratchet::journal::Recording;
use ratchet::restate::admin::AdminClient;
use ratchet::store::MemoryStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a replay could not run at all (as opposed to diverging).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The agent is incomplete.
    #[error("{0}")]
    Agent(#[from] ratchet::AgentError),
    /// A recording cannot be read or is not a recording.
    #[error("{path}: {message}")]
    Recording {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The recording cannot be replayed (wrong format, no steps, ...).
    #[error("{0}")]
    Engine(#[from] ratchet::engine::EngineError),
    /// The admin API did not give the invocation's journal.
    #[error("{0}")]
    Admin(#[from] ratchet::restate::admin::AdminError),
}

/// Replays `recording` against `agent`. No effect runs and nothing is
/// written: the agent's store is not touched.
pub async fn replay(agent: &Agent, recording: &Recording) -> Result<ReplayReport, ReplayError> {
    let rt = agent
        .clone()
        .store(Arc::new(MemoryStore::new()))
        .runtime()?;
    Ok(inline::replay(&rt, recording).await?)
}

/// Reads a recording file (`ratchet export` or [`durable_recording`]).
pub fn read(path: &Path) -> Result<Recording, ReplayError> {
    let bad = |message: String| ReplayError::Recording {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("not a ratchet recording: {e}")))
}

/// The recording of a durable turn, read from Restate's journal of
/// `invocation` through the admin API at `admin_url`.
pub async fn durable_recording(
    admin_url: &str,
    invocation: &str,
) -> Result<Recording, ReplayError> {
    Ok(AdminClient::at(admin_url)?.recording(invocation).await?)
}

/// Replays every `*.json` recording in `dir`, in name order.
pub async fn replay_dir(
    agent: &Agent,
    dir: impl AsRef<Path>,
) -> Result<Vec<(PathBuf, ReplayReport)>, ReplayError> {
    let dir = dir.as_ref();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ReplayError::Recording {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let recording = read(&file)?;
        out.push((file, replay(agent, &recording).await?));
    }
    Ok(out)
}

/// One line per divergence: the file, the step and the fields that differ.
pub fn describe(path: &Path, report: &ReplayReport) -> Option<String> {
    match report {
        ReplayReport::Ok { .. } => None,
        ReplayReport::Diverged {
            step, divergence, ..
        } => Some(format!(
            "{}: diverged at step '{step}' (step {} of the recording): {}",
            path.display(),
            divergence.index + 1,
            divergence.describe()
        )),
    }
}

/// For `cargo test`: every recording in `dir` replays cleanly against
/// `agent`, and there is at least one. Panics naming each divergent step.
pub async fn assert_dir(agent: &Agent, dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let reports = replay_dir(agent, dir)
        .await
        .unwrap_or_else(|e| panic!("cannot replay {}: {e}", dir.display()));
    assert!(!reports.is_empty(), "no recordings in {}", dir.display());
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|(path, r)| describe(path, r))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} recordings diverge on this build:\n{}",
        failures.len(),
        reports.len(),
        failures.join("\n")
    );
}
