//! The crash matrix: for each scripted scenario, a crash-free reference run
//! on a real restate-server, then for every fault point a run whose service
//! process dies there (SIGKILL) and is restarted, checked against the
//! reference (see [`check`]). A sample of points kills restate-server itself
//! instead, and another sample kills the invocation through the admin API:
//! its turn must be settled as stopped when the input is sent again, with no
//! effect run twice, and the session must go on. `ratchet chaos` prints the
//! report; `scripts/chaos.sh` runs it.

pub mod check;
pub mod scenarios;

use crate::harness::{HarnessError, HarnessResult, RestateServer, Service};
use ratchet::journal::StepName;
use ratchet::model::SessionId;
use ratchet::restate::admin;
use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use scenarios::Scenario;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
}

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

struct Rig {
    server: RestateServer,
    service: Service,
    db: PathBuf,
    dir: tempfile::TempDir,
}

fn harness_err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError(e.to_string())
}

const ROOT_TURN: &str = "turn-in-1";

fn body(s: &Scenario) -> Value {
    json!({"input": {"items": [{"type": "text", "text": s.text}], "input_id": "in-1"}})
}

/// The reference of one scenario: its committed snapshot and effects.
struct Reference {
    snapshot: Value,
    effects: BTreeMap<String, u64>,
    steps: Vec<String>,
}

impl Rig {
    fn store(&self) -> HarnessResult<SqliteStore> {
        SqliteStore::open(&self.db).map_err(harness_err)
    }

    async fn reference(
        &mut self,
        s: &Scenario,
        model: &[(&str, &str)],
    ) -> HarnessResult<Reference> {
        self.service.restart(model)?;
        let session = format!("{}-ref", s.name);
        let inv = self.server.send(&session, "turn", &body(s)).await?;
        let (status, reply) = self.server.attach(&inv).await?;
        if status != 200 {
            return Err(harness_err(format!(
                "reference run of {} failed: {status} {reply}",
                s.name
            )));
        }
        let steps = admin::AdminClient::at(&self.server.admin)
            .map_err(harness_err)?
            .step_names(&inv)
            .await
            .map_err(harness_err)?;
        let store = self.store()?;
        let sid = SessionId::new(&session).map_err(harness_err)?;
        Ok(Reference {
            snapshot: check::snapshot(&store, &sid).await.map_err(harness_err)?,
            effects: store.effect_counts(&sid).await.map_err(harness_err)?,
            steps,
        })
    }

    async fn crash_at(
        &mut self,
        s: &Scenario,
        session: &str,
        point: &Point,
        model: &[(&str, &str)],
    ) -> Result<(), String> {
        let inv = match point.victim {
            Victim::Service => {
                let mut env = model.to_vec();
                env.push(("RATCHET_FAULT", &point.spec));
                self.service.restart(&env).map_err(|e| e.to_string())?;
                let inv = self
                    .server
                    .send(session, "turn", &body(s))
                    .await
                    .map_err(|e| e.to_string())?;
                let died = self.service.wait_exit(Duration::from_secs(20));
                self.service.restart(model).map_err(|e| e.to_string())?;
                if !died {
                    return Err("the fault point was never reached".into());
                }
                inv
            }
            Victim::Restate => {
                let inv = self.paused_at(s, session, point, model).await?;
                self.server.kill9();
                self.server.restart().map_err(|e| e.to_string())?;
                inv
            }
            Victim::Invocation => {
                let inv = self.paused_at(s, session, point, model).await?;
                self.server
                    .kill_invocation(&inv)
                    .await
                    .map_err(|e| e.to_string())?;
                // The client sends the input again: it is settled in place.
                let (status, reply) = self
                    .server
                    .call(session, "turn", &body(s))
                    .await
                    .map_err(|e| e.to_string())?;
                // The chain's last turn (a cut agent frame, or the turn itself).
                let last = reply["frames"]
                    .as_array()
                    .and_then(|f| f.last())
                    .unwrap_or(&reply);
                if status != 200 || last["outcome"]["reason"] != "incomplete" {
                    return Err(format!("the killed turn was not settled: {status} {reply}"));
                }
                return Ok(());
            }
        };
        let (status, reply) = self.server.attach(&inv).await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("the turn did not complete: {status} {reply}"));
        }
        Ok(())
    }

    /// Restarts the service to pause once at the point, sends the turn and
    /// waits until it pauses there; returns the invocation id.
    async fn paused_at(
        &mut self,
        s: &Scenario,
        session: &str,
        point: &Point,
        model: &[(&str, &str)],
    ) -> Result<String, String> {
        let pause = format!("2000@{}", point.spec);
        let mut env = model.to_vec();
        env.push(("RATCHET_PAUSE", &pause));
        self.service.restart(&env).map_err(|e| e.to_string())?;
        let paused = || self.service.log().matches("pause point reached").count();
        let before = paused();
        let inv = self
            .server
            .send(session, "turn", &body(s))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while paused() <= before {
            if Instant::now() > deadline {
                return Err("the pause point was never reached".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(inv)
    }

    /// After a kill: the turn's chain ends in one settled turn (the turn, or
    /// the agent frame the kill cut), no effect beyond the reference's,
    /// nothing left, and the session goes on with a new input.
    async fn verify_killed(&self, session: &str, reference: &Reference) -> Result<(), String> {
        let store = self.store().map_err(|e| e.to_string())?;
        let sid = SessionId::new(session).map_err(|e| e.to_string())?;
        let turns = store.turns(&sid).await.map_err(|e| e.to_string())?;
        let settled = turns.last().is_some_and(|t| {
            t.outcome.stop_reason() == Some(ratchet::model::StopReason::Incomplete)
        }) && turns.iter().all(|t| t.turn_id.starts_with(ROOT_TURN));
        if !settled {
            return Err(format!(
                "expected the chain to end in one settled turn, found {turns:?}"
            ));
        }
        let effects = store.effect_counts(&sid).await.map_err(|e| e.to_string())?;
        if let Some((key, n)) = effects
            .iter()
            .find(|(k, n)| **n > 1 || !reference.effects.contains_key(*k))
        {
            return Err(format!("effect {key} ran {n} times after a kill"));
        }
        check::check_clean(&store, &sid).await?;
        let next =
            json!({"input": {"items": [{"type": "text", "text": "hello"}], "input_id": "in-2"}});
        let (status, reply) = self
            .server
            .call(session, "turn", &next)
            .await
            .map_err(|e| e.to_string())?;
        if status != 200 || reply["turn_index"] != turns.len() as u64 {
            return Err(format!("the session did not go on: {status} {reply}"));
        }
        check::check_clean(&store, &sid).await
    }

    async fn verify(
        &self,
        session: &str,
        point: &Point,
        reference: &Reference,
    ) -> Result<(), String> {
        if point.victim == Victim::Invocation {
            return self.verify_killed(session, reference).await;
        }
        let store = self.store().map_err(|e| e.to_string())?;
        let sid = SessionId::new(session).map_err(|e| e.to_string())?;
        let snap = check::snapshot(&store, &sid).await?;
        if let Some(diff) = check::first_difference(&reference.snapshot, &snap, "$") {
            return Err(diff);
        }
        let effects = store.effect_counts(&sid).await.map_err(|e| e.to_string())?;
        let in_flight = point
            .step
            .as_deref()
            .and_then(|s| check::effect_key(ROOT_TURN, s));
        check::check_effects(&reference.effects, &effects, in_flight.as_deref())?;
        check::check_clean(&store, &sid).await
    }
}

fn progress(done: usize, total: usize, label: &str) {
    let width = 30;
    let filled = (done * width).checked_div(total).unwrap_or(width);
    eprint!(
        "\r[{}{}] {done:>3}/{total} {label:<50}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    let _ = std::io::stderr().flush();
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
        return Err(harness_err("no such scenario: use plain, tools or frame"));
    }
    let server = RestateServer::start()?;
    let db = dir.path().join("chaos.db");
    let store = format!("sqlite:{}", db.display());
    let first_model = write_script(dir.path(), &scenarios[0])?;
    let service = Service::start(
        &opts.bin,
        &store,
        &server.admin,
        dir.path(),
        &[("RATCHET_MODEL", &first_model)],
    )?;
    server.register(&service.uri()).await?;
    let mut rig = Rig {
        server,
        service,
        db,
        dir,
    };
    let mut report = ChaosReport::default();
    let mut plans = Vec::new();
    for s in &scenarios {
        let model = write_script(rig.dir.path(), s)?;
        let reference = rig.reference(s, &[("RATCHET_MODEL", &model)]).await?;
        let points = plan(&reference.steps, opts.quick);
        plans.push((s, model, reference, points));
    }
    let total: usize = plans.iter().map(|p| p.3.len()).sum();
    for (s, model, reference, points) in &plans {
        let env = [("RATCHET_MODEL", model.as_str())];
        for (k, point) in points.iter().enumerate() {
            if opts.progress {
                progress(
                    report.points(),
                    total,
                    &format!("{} {} ({:?})", s.name, point.spec, point.victim),
                );
            }
            let session = format!("{}-{k}", s.name);
            let failure = match rig.crash_at(s, &session, point, &env).await {
                Ok(()) => rig.verify(&session, point, reference).await.err(),
                Err(e) => Some(e),
            };
            report.results.push(PointResult {
                scenario: s.name.to_string(),
                point: point.clone(),
                failure,
            });
        }
    }
    if opts.progress {
        progress(total, total, "done");
        eprintln!();
    }
    Ok(report)
}
