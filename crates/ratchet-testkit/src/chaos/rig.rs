//! The matrix's rig: one restate-server, one service process (`ratchet
//! serve`, or a team's test binary serving its agent) on one SQLite file,
//! and the run of every fault point of every case against its crash-free
//! reference. Shared by `ratchet chaos` and [`crate::matrix`].

use super::{ChaosReport, Point, PointResult, SUSPENDED, Victim, check, plan};
use crate::harness::{HarnessError, HarnessResult, RestateServer, Service};
use async_trait::async_trait;
use ratchet::model::SessionId;
use ratchet::restate::{admin, store_session_id};
use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

/// The root turn of every case's first input (`in-1`).
pub(crate) const ROOT_TURN: &str = "turn-in-1";

/// One scenario: its turn body and the service environment it runs under.
pub(crate) struct Case {
    pub name: String,
    pub body: Value,
    pub env: Vec<(String, String)>,
}

impl Case {
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// Checks a caller adds: after the reference run, and after each point.
#[async_trait]
pub(crate) trait Hooks: Send + Sync {
    /// After the reference run, whose invocation is `inv`.
    async fn reference(&self, _rig: &Rig, _case: &Case, _inv: &str) -> Result<(), String> {
        Ok(())
    }
    /// After a point's own checks passed, with the session's object key.
    async fn point(
        &self,
        _rig: &Rig,
        _case: &Case,
        _key: &str,
        _point: &Point,
        _run: &PointRun,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The invocations of one point's run.
pub(crate) struct PointRun {
    /// The invocation that completed the turn, or settled it after a kill.
    pub completed: String,
    /// The invocation that was killed mid-turn, if one was.
    pub killed: Option<String>,
}

/// No checks beyond the matrix's own.
pub(crate) struct NoHooks;
impl Hooks for NoHooks {}

pub(crate) struct Rig {
    pub server: RestateServer,
    pub service: Service,
    pub db: PathBuf,
    /// The virtual object the turns go to.
    pub object: String,
}

pub(crate) fn harness_err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError(e.to_string())
}

/// The reference of one case: its committed snapshot and effects.
pub(crate) struct Reference {
    pub snapshot: Value,
    pub effects: BTreeMap<String, u64>,
    pub steps: Vec<String>,
}

impl Rig {
    fn store(&self) -> HarnessResult<SqliteStore> {
        SqliteStore::open(&self.db).map_err(harness_err)
    }

    /// The store's id of the session under object key `key`.
    pub fn session_id(&self, key: &str) -> Result<SessionId, String> {
        store_session_id(&self.object, key).map_err(|e| e.to_string())
    }

    async fn send(&self, key: &str, body: &Value) -> Result<String, String> {
        self.server
            .send_to(&self.object, key, "turn", body)
            .await
            .map_err(|e| e.to_string())
    }

    async fn reference(&mut self, case: &Case, hooks: &dyn Hooks) -> HarnessResult<Reference> {
        self.service.restart(&case.env())?;
        let key = format!("{}-ref", case.name);
        let _resolver = self.resolver(&key, Arc::new(AtomicBool::new(true)));
        let inv = self.send(&key, &case.body).await.map_err(harness_err)?;
        let (status, reply) = self.server.attach(&inv).await?;
        if status != 200 {
            return Err(harness_err(format!(
                "reference run of {} failed: {status} {reply}",
                case.name
            )));
        }
        let steps = admin::AdminClient::at(&self.server.admin)
            .map_err(harness_err)?
            .step_names(&inv)
            .await
            .map_err(harness_err)?;
        hooks
            .reference(self, case, &inv)
            .await
            .map_err(|e| harness_err(format!("reference run of {}: {e}", case.name)))?;
        let store = self.store()?;
        let sid = self.session_id(&key).map_err(harness_err)?;
        Ok(Reference {
            snapshot: check::snapshot(&store, &sid).await.map_err(harness_err)?,
            effects: store.effect_counts(&sid).await.map_err(harness_err)?,
            steps,
        })
    }

    /// Runs the case with the point's victim killed there; returns the
    /// invocations that ran it.
    async fn crash_at(
        &mut self,
        case: &Case,
        key: &str,
        point: &Point,
        armed: &AtomicBool,
    ) -> Result<PointRun, String> {
        let base = case.env();
        let inv = match point.victim {
            // Killed while the turn waits, suspended: the resolver is armed
            // once the service is back.
            Victim::Service if point.spec.starts_with(SUSPENDED) => {
                // The service last ran with another case's environment.
                self.service.restart(&base).map_err(|e| e.to_string())?;
                let inv = self.send(key, &case.body).await?;
                self.await_suspended(key).await?;
                self.service.kill9();
                self.service.restart(&base).map_err(|e| e.to_string())?;
                armed.store(true, AtomicOrdering::SeqCst);
                inv
            }
            Victim::Service => {
                let mut env = base.clone();
                env.push(("RATCHET_FAULT", &point.spec));
                self.service.restart(&env).map_err(|e| e.to_string())?;
                let inv = self.send(key, &case.body).await?;
                let died = self.service.wait_exit(Duration::from_secs(20));
                self.service.restart(&base).map_err(|e| e.to_string())?;
                if !died {
                    return Err("the fault point was never reached".into());
                }
                inv
            }
            Victim::Restate => {
                let inv = self.paused_at(case, key, point).await?;
                self.server.kill9();
                self.server.restart().map_err(|e| e.to_string())?;
                inv
            }
            Victim::Invocation => {
                let inv = self.paused_at(case, key, point).await?;
                self.server
                    .kill_invocation(&inv)
                    .await
                    .map_err(|e| e.to_string())?;
                // The client sends the input again: it is settled in place.
                let again = self.send(key, &case.body).await?;
                let (status, reply) = self
                    .server
                    .attach(&again)
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
                return Ok(PointRun {
                    completed: again,
                    killed: Some(inv),
                });
            }
        };
        let (status, reply) = self.server.attach(&inv).await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("the turn did not complete: {status} {reply}"));
        }
        Ok(PointRun {
            completed: inv,
            killed: None,
        })
    }

    /// Restarts the service to pause once at the point, sends the turn and
    /// waits until it pauses there; returns the invocation id.
    async fn paused_at(&mut self, case: &Case, key: &str, point: &Point) -> Result<String, String> {
        let pause = format!("2000@{}", point.spec);
        let mut env = case.env();
        env.push(("RATCHET_PAUSE", &pause));
        self.service.restart(&env).map_err(|e| e.to_string())?;
        let paused = || self.service.log().matches("pause point reached").count();
        let before = paused();
        let inv = self.send(key, &case.body).await?;
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
    async fn verify_killed(&self, key: &str, reference: &Reference) -> Result<(), String> {
        let store = self.store().map_err(|e| e.to_string())?;
        let sid = self.session_id(key)?;
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
            .call_to(&self.object, key, "turn", &next)
            .await
            .map_err(|e| e.to_string())?;
        if status != 200 || reply["turn_index"] != turns.len() as u64 {
            return Err(format!("the session did not go on: {status} {reply}"));
        }
        check::check_clean(&store, &sid).await
    }

    async fn verify(&self, key: &str, point: &Point, reference: &Reference) -> Result<(), String> {
        if point.victim == Victim::Invocation {
            return self.verify_killed(key, reference).await;
        }
        let store = self.store().map_err(|e| e.to_string())?;
        let sid = self.session_id(key)?;
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

/// Resolves a session's waits as they come, the way an approver and an
/// outside system would: once the turn's invocation has suspended on one
/// (so the suspension is part of every run), it approves an approval and
/// completes a pending tool with `confirmed`, through the object's
/// `approve` and `complete_tool` handlers. Disarmed, it waits.
struct Resolver {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resolution a wait of `kind` gets: `(handler, body)`.
fn resolution(wait: &ratchet::model::Wait) -> (&'static str, Value) {
    match wait.kind {
        ratchet::model::WaitKind::Approval => (
            "approve",
            json!({"call_id": wait.call_id, "decision": "approve"}),
        ),
        ratchet::model::WaitKind::ToolResult => (
            "complete_tool",
            json!({"call_id": wait.call_id, "result": {"content": "confirmed"}}),
        ),
    }
}

impl Rig {
    /// Whether the turn invocation of `key` is suspended now.
    async fn suspended(admin: &str, object: &str, key: &str) -> bool {
        let sql = format!(
            "SELECT id FROM sys_invocation WHERE target_service_name = '{object}' \
             AND target_service_key = '{key}' AND target_handler_name = 'turn' \
             AND status = 'suspended'"
        );
        admin::query(admin, &sql)
            .await
            .is_ok_and(|rows| !rows.is_empty())
    }

    fn resolver(&self, key: &str, armed: Arc<AtomicBool>) -> Resolver {
        let (db, object, key) = (self.db.clone(), self.object.clone(), key.to_string());
        let (ingress, admin) = (self.server.ingress.clone(), self.server.admin.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                if !armed.load(AtomicOrdering::SeqCst) {
                    continue;
                }
                let (Ok(store), Ok(sid)) =
                    (SqliteStore::open(&db), store_session_id(&object, &key))
                else {
                    continue;
                };
                let Ok(waits) = store.waits(&sid, true).await else {
                    continue;
                };
                if waits.is_empty() || !Self::suspended(&admin, &object, &key).await {
                    continue;
                }
                for wait in waits {
                    let (handler, body) = resolution(&wait);
                    let url = format!("{ingress}/{object}/{key}/{handler}");
                    let _ = crate::harness::post(&url, &body).await;
                }
            }
        });
        Resolver { task }
    }

    /// Waits until the turn of `key` has suspended.
    async fn await_suspended(&self, key: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Self::suspended(&self.server.admin, &self.object, key).await {
            if Instant::now() > deadline {
                return Err("the turn never suspended".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
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

/// Runs every case's reference, then every fault point of its plan.
pub(crate) async fn run_cases(
    rig: &mut Rig,
    cases: &[Case],
    quick: bool,
    show_progress: bool,
    hooks: &dyn Hooks,
) -> HarnessResult<ChaosReport> {
    let mut plans = Vec::new();
    for case in cases {
        let reference = rig.reference(case, hooks).await?;
        let points = plan(&reference.steps, quick);
        plans.push((case, reference, points));
    }
    let total: usize = plans.iter().map(|p| p.2.len()).sum();
    let mut report = ChaosReport::default();
    for (case, reference, points) in &plans {
        for (k, point) in points.iter().enumerate() {
            if show_progress {
                let label = format!("{} {} ({:?})", case.name, point.spec, point.victim);
                progress(report.points(), total, &label);
            }
            let key = format!("{}-{k}", case.name);
            let armed = Arc::new(AtomicBool::new(!point.spec.starts_with(SUSPENDED)));
            let _resolver = rig.resolver(&key, armed.clone());
            let failure = match rig.crash_at(case, &key, point, &armed).await {
                Ok(run) => match rig.verify(&key, point, reference).await {
                    Ok(()) => hooks.point(rig, case, &key, point, &run).await.err(),
                    Err(e) => Some(e),
                },
                Err(e) => Some(e),
            };
            report.results.push(PointResult {
                scenario: case.name.clone(),
                point: point.clone(),
                failure,
            });
        }
    }
    if show_progress {
        progress(total, total, "done");
        eprintln!();
    }
    Ok(report)
}
