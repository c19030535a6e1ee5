//! The crash matrix: for each scripted scenario, a crash-free reference run
//! on a real restate-server, then for every fault point a run whose service
//! process dies there (SIGKILL) and is restarted, checked against the
//! reference (see [`check`]). A sample of points kills restate-server itself
//! instead, and another sample kills the invocation through the admin API:
//! its turn must be settled as stopped when the input is sent again, with no
//! effect run twice, and the session must go on. `ratchet chaos` prints the
//! report; `scripts/chaos.sh` runs it.

pub mod check;
mod rig;
pub mod scenarios;

pub(crate) use rig::{Case, Hooks, PointRun, Rig, harness_err, run_cases};

use crate::harness::{HarnessResult, RestateServer, Service};
use ratchet::journal::StepName;
use scenarios::Scenario;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// How the matrix runs.
pub struct ChaosOptions {
    /// Run a subset that fits in a few minutes.
    pub quick: bool,
    /// The `ratchet` binary to serve with.
    pub bin: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Only this scenario.
    pub scenario: Option<String>,
}

/// What is killed at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Victim {
    /// The ratchet service (SIGKILL at a fault point).
    Service,
    /// restate-server (SIGKILL while the service pauses at the point).
    Restate,
    /// The invocation (killed through the admin API while the service
    /// pauses at the point).
    Invocation,
}

/// One fault point of one scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Point {
    /// `before:claim`, `after:tool:0:call_1`, `during:commit:events`, ...
    pub spec: String,
    /// The step it sits at, when it sits at a step.
    pub step: Option<String>,
    /// What dies there.
    pub victim: Victim,
}

/// The outcome at one point.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PointResult {
    /// The scenario.
    pub scenario: String,
    /// The point.
    pub point: Point,
    /// `None` when every check passed, else the first difference.
    pub failure: Option<String>,
}

/// The whole matrix.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ChaosReport {
    /// One row per point, in run order.
    pub results: Vec<PointResult>,
}

impl ChaosReport {
    /// Points run.
    pub fn points(&self) -> usize {
        self.results.len()
    }
    /// Points that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_none()).count()
    }
    /// Points that failed.
    pub fn failed(&self) -> usize {
        self.points() - self.passed()
    }

    /// The report as a table: scenario, what was killed, the point, the
    /// result (and the first difference of a failed point).
    pub fn table(&self) -> String {
        let mut out = format!("{:<12} {:<8} {:<42} result\n", "scenario", "kills", "point");
        for r in &self.results {
            let victim = match r.point.victim {
                Victim::Service => "service",
                Victim::Restate => "restate",
                Victim::Invocation => "kill",
            };
            let result = match &r.failure {
                None => "pass".to_string(),
                Some(f) => format!("FAIL: {f}"),
            };
            out.push_str(&format!(
                "{:<12} {victim:<8} {:<42} {result}\n",
                r.scenario, r.point.spec
            ));
        }
        out
    }

    /// `{"points", "passed", "failed", "results"}`: the report for CI.
    pub fn json(&self) -> Value {
        json!({
            "points": self.points(),
            "passed": self.passed(),
            "failed": self.failed(),
            "results": self.results,
        })
    }
}

/// The prefix of a point that kills the service while the turn waits,
/// suspended, on the wait its step announced (`suspended:approval:0:call_0`).
pub const SUSPENDED: &str = "suspended:";

/// Commit stages a `during:` point can name.
const COMMIT_STAGES: [&str; 6] = ratchet::store::rules::COMMIT_STAGES;

/// The fault points of a scenario whose reference run journaled `steps`.
pub fn plan(steps: &[String], quick: bool) -> Vec<Point> {
    let at = |when: &str, step: &str, victim| Point {
        spec: format!("{when}:{step}"),
        step: Some(step.to_string()),
        victim,
    };
    let named = |s: &String| s.parse::<StepName>().ok();
    let first_tool = steps
        .iter()
        .find(|s| named(s).is_some_and(|n| matches!(n.base(), StepName::Tool { .. })));
    let mut points = Vec::new();
    // Every wait: the service killed while the turn is suspended on it.
    let announces = steps.iter().filter(|s| {
        named(s).is_some_and(|n| {
            matches!(
                n.base(),
                StepName::Approval { .. } | StepName::Pending { .. }
            )
        })
    });
    for step in announces {
        points.push(Point {
            spec: format!("{SUSPENDED}{step}"),
            step: Some(step.clone()),
            victim: Victim::Service,
        });
        if quick {
            points.push(at("after", step, Victim::Service));
            points.push(at("after", step, Victim::Restate));
        }
    }
    if quick {
        points.push(at("before", "claim", Victim::Service));
        points.push(at("after", "model:0", Victim::Service));
        if let Some(t) = first_tool {
            points.push(at("after", t, Victim::Service));
        }
        if let Some(f) = steps
            .iter()
            .find(|s| named(s).is_some_and(|n| n.frame() > 0 && *n.base() == StepName::Claim))
        {
            points.push(at("before", f, Victim::Service));
        }
        points.push(at("before", "commit", Victim::Service));
        points.push(Point {
            spec: "during:commit:events".into(),
            step: None,
            victim: Victim::Service,
        });
        points.push(at("after", "model:0", Victim::Restate));
        points.push(at("after", "model:0", Victim::Invocation));
        // A kill inside an agent frame: the frame is settled, not dropped.
        if let Some(t) = steps
            .iter()
            .find(|s| named(s).is_some_and(|n| n.frame() > 0 && n.is_effect()))
        {
            points.push(at("after", t, Victim::Invocation));
        }
        return points;
    }
    for step in steps {
        points.push(at("before", step, Victim::Service));
        points.push(at("after", step, Victim::Service));
    }
    points.extend(COMMIT_STAGES.iter().map(|stage| Point {
        spec: format!("during:{stage}"),
        step: None,
        victim: Victim::Service,
    }));
    for step in ["prepare", "model:0"]
        .iter()
        .map(|s| s.to_string())
        .chain(first_tool.cloned())
    {
        points.push(at("after", &step, Victim::Restate));
    }
    for step in ["claim", "model:0"]
        .iter()
        .map(|s| s.to_string())
        .chain(first_tool.cloned())
        .chain(["finalize".to_string()])
    {
        points.push(at("after", &step, Victim::Invocation));
    }
    points
}

fn body(s: &Scenario) -> Value {
    json!({"input": {"items": [{"type": "text", "text": s.text}], "input_id": "in-1"}})
}

fn write_script(dir: &Path, s: &Scenario) -> HarnessResult<String> {
    let path = dir.join(format!("{}.json", s.name));
    std::fs::write(&path, s.script.to_string()).map_err(harness_err)?;
    Ok(format!("scripted:{}", path.display()))
}

/// Runs the matrix.
pub async fn run(opts: &ChaosOptions) -> HarnessResult<ChaosReport> {
    let dir = tempfile::tempdir().map_err(harness_err)?;
    let scenarios: Vec<Scenario> = scenarios::all()
        .into_iter()
        .filter(|s| opts.scenario.as_deref().is_none_or(|n| n == s.name))
        .collect();
    if scenarios.is_empty() {
        return Err(harness_err(
            "no such scenario: use plain, tools, frame or approval",
        ));
    }
    let mut cases = Vec::new();
    for s in &scenarios {
        let mut env = vec![("RATCHET_MODEL".into(), write_script(dir.path(), s)?)];
        env.extend(s.env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        cases.push(Case {
            name: s.name.to_string(),
            body: body(s),
            env,
        });
    }
    let server = RestateServer::start()?;
    let db = dir.path().join("chaos.db");
    let store = format!("sqlite:{}", db.display());
    let service = Service::start(
        &opts.bin,
        &store,
        &server.admin,
        dir.path(),
        &cases[0].env(),
    )?;
    server.register(&service.uri()).await?;
    let mut rig = Rig {
        server,
        service,
        db,
        object: "Session".into(),
    };
    run_cases(&mut rig, &cases, opts.quick, opts.progress, &rig::NoHooks).await
}
