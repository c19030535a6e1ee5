//! The crash matrix over a team's own agent: its tools, plugins and model,
//! on a real restate-server the matrix starts, served by the team's own
//! test binary re-run as a child process — so every kill is a real SIGKILL
//! of the team's code.
//!
//! For each scenario the matrix runs a crash-free reference, derives every
//! fault point from that run's journaled steps, and for each point kills
//! the service (at the point), restate-server (while the service pauses
//! there) or the invocation (through the admin API), then checks:
//!
//! * the committed session equals the reference (messages, outcomes,
//!   usage, events), or — after an invocation kill — ends in one settled
//!   turn and goes on;
//! * every completed effect ran once, the one in flight at most twice;
//! * no lease, claim or duplicate event is left;
//! * the turn's durable journal, read back through the admin API, replays
//!   cleanly against the agent;
//! * the team's own check ([`AgentMatrix::check`]), e.g. "the card was
//!   charged once".
//!
//! ```no_run
//! # fn my_agent(env: &ratchet_testkit::matrix::MatrixEnv) -> ratchet::Agent {
//! #     ratchet::Agent::new("billing").store(env.store.clone())
//! # }
//! #[test] // a plain #[test]: the matrix runs its own runtime
//! fn crash_matrix() {
//!     ratchet_testkit::matrix::AgentMatrix::new(my_agent)
//!         .scenario("charge", "charge my card")
//!         .run()
//!         .expect("the matrix ran")
//!         .assert_passed();
//! }
//! ```
//!
//! The child runs only the calling test (`<test> --exact`), found from the
//! test thread's name; set it with [`AgentMatrix::test_name`] when the test
//! runs on the main thread. So: one matrix per `#[test]`, and nothing with
//! side effects before [`AgentMatrix::run`] in that test, since every
//! service process runs the test up to there. `RATCHET_MATRIX_FULL=1` runs
//! every point (both sides of every step) instead of the quick set;
//! `RATCHET_MATRIX_JSON=DIR` writes each matrix's report to
//! `DIR/<agent>.json`.
//!
//! The service needs ratchet's `fault-injection` feature, which this crate
//! turns on. Keep `ratchet-testkit` a **dev**-dependency: then only test
//! builds honour `RATCHET_FAULT`/`RATCHET_PAUSE`, never a release build of
//! your service.

use crate::chaos::{Case, ChaosReport, Hooks, Point, PointRun, Rig, Victim, harness_err};
use crate::harness::{HarnessResult, RestateServer, Service};
use async_trait::async_trait;
use ratchet::Agent;
use ratchet::engine::inline::ReplayReport;
use ratchet::model::TurnInput;
use ratchet::store::{SessionStore, SqliteStore};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const SERVE_ENV: &str = "RATCHET_MATRIX_SERVE";
const AGENT_ENV: &str = "RATCHET_MATRIX_AGENT";
const LISTEN_ENV: &str = "RATCHET_MATRIX_LISTEN";
const ADMIN_ENV: &str = "RATCHET_MATRIX_ADMIN";

/// What the agent factory gets: the work directory every process of the
/// run shares (for the team's own files: a payment ledger, fixtures) and
/// the store the agent must use.
#[derive(Clone)]
pub struct MatrixEnv {
    /// Shared by the matrix and every service process.
    pub dir: PathBuf,
    /// The run's SQLite store.
    pub store: Arc<dyn SessionStore>,
}

/// The point a team's check runs after.
#[derive(Clone, Debug)]
pub struct CheckedPoint {
    /// The session's object key (its store session is `{agent}/{key}`).
    pub key: String,
    /// The point (`after:tool:0:call_0`, ...).
    pub spec: String,
    /// What was killed there.
    pub victim: Victim,
}

type Make = Arc<dyn Fn(&MatrixEnv) -> Agent + Send + Sync>;
type Check = Arc<dyn Fn(&MatrixEnv, &CheckedPoint) -> Result<(), String> + Send + Sync>;

/// The crash matrix over one agent.
pub struct AgentMatrix {
    make: Make,
    scenarios: Vec<(String, TurnInput)>,
    quick: bool,
    test_name: Option<String>,
    json: Option<PathBuf>,
    check: Option<Check>,
}

/// A finished matrix.
#[derive(Debug)]
pub struct MatrixReport {
    /// The agent (its Restate object name).
    pub agent: String,
    /// One row per fault point.
    pub report: ChaosReport,
    /// Durable journals replayed against the agent: each reference, each
    /// point's completing invocation, and each killed invocation's (as far
    /// as it went).
    pub replays: usize,
}

impl MatrixReport {
    /// Panics with the table when any point failed.
    pub fn assert_passed(&self) {
        assert!(
            self.report.failed() == 0 && self.report.points() > 0,
            "{} of {} fault points failed for agent '{}':\n{}",
            self.report.failed(),
            self.report.points(),
            self.agent,
            self.report.table()
        );
    }
}

impl AgentMatrix {
    /// A matrix over the agent `make` builds (in every service process, and
    /// once in the test for replays).
    pub fn new(make: impl Fn(&MatrixEnv) -> Agent + Send + Sync + 'static) -> Self {
        AgentMatrix {
            make: Arc::new(make),
            scenarios: Vec::new(),
            quick: std::env::var("RATCHET_MATRIX_FULL").is_err(),
            test_name: None,
            json: None,
            check: None,
        }
    }

    /// A scenario: a first turn of a fresh session with this text.
    pub fn scenario(self, name: &str, text: &str) -> Self {
        self.scenario_input(name, TurnInput::text(text))
    }

    /// A scenario with a whole input (its id is set to `in-1`).
    pub fn scenario_input(mut self, name: &str, input: TurnInput) -> Self {
        self.scenarios
            .push((name.to_string(), input.with_input_id("in-1")));
        self
    }

    /// The quick set of points (the default) or every point.
    pub fn quick(mut self, quick: bool) -> Self {
        self.quick = quick;
        self
    }

    /// The test that runs the matrix, as libtest names it.
    pub fn test_name(mut self, name: &str) -> Self {
        self.test_name = Some(name.to_string());
        self
    }

    /// Writes the report as JSON to `path`.
    pub fn json(mut self, path: impl Into<PathBuf>) -> Self {
        self.json = Some(path.into());
        self
    }

    /// The team's own check after every point (once the matrix's own
    /// passed): given the work directory and the point, `Err` fails it.
    pub fn check(
        mut self,
        check: impl Fn(&MatrixEnv, &CheckedPoint) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// Runs the matrix. Call it from a plain `#[test]`, not inside a tokio
    /// runtime. In the service process it re-runs, it serves the agent
    /// and never returns.
    pub fn run(self) -> HarnessResult<MatrixReport> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(harness_err(
                "AgentMatrix::run starts its own runtime: call it from a plain #[test], not #[tokio::test]",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(harness_err)?;
        if let Some(dir) = std::env::var_os(SERVE_ENV) {
            let code = match runtime.block_on(self.serve(PathBuf::from(dir))) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("matrix service: {e}");
                    1
                }
            };
            std::process::exit(code);
        }
        runtime.block_on(self.run_matrix())
    }

    /// The service process: the agent on the run's store, until SIGTERM.
    async fn serve(&self, dir: PathBuf) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let store = SqliteStore::open(dir.join("matrix.db")).map_err(|x| e(&x))?;
        let env = MatrixEnv {
            dir,
            store: Arc::new(store),
        };
        let admin = std::env::var(ADMIN_ENV).map_err(|x| e(&x))?;
        let agent = (self.make)(&env);
        let expected = std::env::var(AGENT_ENV).unwrap_or_default();
        if agent.name() != expected {
            return Err(format!(
                "this test runs the matrix of agent '{}' first, but the service was started for '{expected}': run one AgentMatrix per #[test]",
                agent.name()
            ));
        }
        // A waiting turn suspends within a second: the resolver acts on a
        // suspended turn only.
        let endpoint = agent
            .effect_ledger(true)
            .inactivity_timeout(std::time::Duration::from_secs(1))
            .admin_url(admin)
            .bind(ratchet::restate_sdk::endpoint::Endpoint::builder())
            .map_err(|x| e(&x))?
            .build();
        let addr = std::env::var(LISTEN_ENV).map_err(|x| e(&x))?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|x| e(&x))?;
        println!("listening on {}", listener.local_addr().map_err(|x| e(&x))?);
        let _ = std::io::stdout().flush();
        ratchet::restate::serve(
            endpoint,
            listener,
            ratchet::restate::termination(),
            std::time::Duration::from_secs(5),
        )
        .await;
        Ok(())
    }

    async fn run_matrix(self) -> HarnessResult<MatrixReport> {
        if self.scenarios.is_empty() {
            return Err(harness_err("the matrix has no scenario"));
        }
        let mut names: Vec<&str> = self.scenarios.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(harness_err(format!("two scenarios are named '{}'", w[0])));
        }
        let name = match self.test_name.clone() {
            Some(n) => n,
            None => std::thread::current()
                .name()
                .filter(|n| *n != "main")
                .map(str::to_string)
                .ok_or_else(|| {
                    harness_err(
                        "cannot tell which test runs the matrix: set AgentMatrix::test_name",
                    )
                })?,
        };
        let exe = std::env::current_exe().map_err(harness_err)?;
        let tmp = tempfile::tempdir().map_err(harness_err)?;
        let dir = tmp.path().to_path_buf();
        let db = dir.join("matrix.db");
        let env = MatrixEnv {
            dir: dir.clone(),
            store: Arc::new(SqliteStore::open(&db).map_err(harness_err)?),
        };
        let agent = (self.make)(&env);
        // Where the report goes: the file set, else RATCHET_MATRIX_JSON=DIR
        // gets `DIR/<agent>.json`. A stale report never outlives a failed run.
        let json = self.json.clone().or_else(|| {
            std::env::var_os("RATCHET_MATRIX_JSON")
                .map(|d| PathBuf::from(d).join(format!("{}.json", agent.name())))
        });
        if let Some(path) = &json {
            let _ = std::fs::remove_file(path);
        }
        let server = RestateServer::start()?;
        let base = vec![
            (SERVE_ENV.to_string(), dir.display().to_string()),
            (ADMIN_ENV.to_string(), server.admin.clone()),
            (AGENT_ENV.to_string(), agent.name().to_string()),
        ];
        let cases: Vec<Case> = self
            .scenarios
            .iter()
            .map(|(name, input)| Case {
                name: name.clone(),
                body: serde_json::json!({ "input": input }),
                env: base.clone(),
            })
            .collect();
        let args = [
            name.as_str(),
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ];
        let service = Service::start_program(&exe, &args, LISTEN_ENV, &dir, &cases[0].env())?;
        server.register(&service.uri()).await?;
        let mut rig = Rig {
            server,
            service,
            db,
            object: agent.name().to_string(),
        };
        let hooks = TeamHooks {
            agent: agent.clone(),
            env,
            check: self.check.clone(),
            replays: AtomicUsize::new(0),
        };
        let progress = std::io::stderr().is_terminal();
        let report =
            crate::chaos::run_cases(&mut rig, &cases, self.quick, progress, &hooks).await?;
        let out = MatrixReport {
            agent: agent.name().to_string(),
            report,
            replays: hooks.replays.load(Ordering::SeqCst),
        };
        if let Some(path) = &json {
            let mut v = out.report.json();
            v["agent"] = out.agent.clone().into();
            v["replays"] = out.replays.into();
            std::fs::write(path, format!("{v:#}\n")).map_err(harness_err)?;
        }
        Ok(out)
    }
}

struct TeamHooks {
    agent: Agent,
    env: MatrixEnv,
    check: Option<Check>,
    replays: AtomicUsize,
}

/// What a journal must replay as.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// A whole turn: every step, then the end.
    Whole,
    /// A killed invocation's: every step it journaled; the turn may go on.
    Prefix,
    /// A settling invocation's: it may hold no turn step, when the input
    /// was answered from the store (a cut agent frame settled in its claim).
    Settled,
}

impl TeamHooks {
    /// The invocation's durable journal replays against the agent.
    async fn replays(&self, rig: &Rig, inv: &str, expect: Expect) -> Result<(), String> {
        let recording = match crate::replay::durable_recording(&rig.server.admin, inv).await {
            Ok(r) => r,
            Err(e) if expect != Expect::Whole && e.to_string().contains("no turn steps") => {
                return Ok(());
            }
            Err(e) => return Err(format!("reading the journal of {inv}: {e}")),
        };
        let report = crate::replay::replay(&self.agent, &recording)
            .await
            .map_err(|e| format!("replaying the journal of {inv}: {e}"))?;
        self.replays.fetch_add(1, Ordering::SeqCst);
        match report {
            ReplayReport::Ok { .. } => Ok(()),
            ReplayReport::Diverged { divergence, .. }
                if expect == Expect::Prefix && divergence.recorded.is_none() =>
            {
                Ok(())
            }
            ReplayReport::Diverged {
                step, divergence, ..
            } => Err(format!(
                "the durable journal of {inv} diverges on replay at step '{step}': {}",
                divergence.describe()
            )),
        }
    }
}

#[async_trait]
impl Hooks for TeamHooks {
    async fn reference(&self, rig: &Rig, _case: &Case, inv: &str) -> Result<(), String> {
        self.replays(rig, inv, Expect::Whole).await
    }

    async fn point(
        &self,
        rig: &Rig,
        _case: &Case,
        key: &str,
        point: &Point,
        run: &PointRun,
    ) -> Result<(), String> {
        match &run.killed {
            Some(killed) => {
                self.replays(rig, killed, Expect::Prefix).await?;
                self.replays(rig, &run.completed, Expect::Settled).await?;
            }
            None => self.replays(rig, &run.completed, Expect::Whole).await?,
        }
        let checked = CheckedPoint {
            key: key.to_string(),
            spec: point.spec.clone(),
            victim: point.victim,
        };
        match &self.check {
            Some(check) => check(&self.env, &checked),
            None => Ok(()),
        }
    }
}
