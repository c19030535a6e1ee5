//! `ratchet bench`: what a durable turn costs over the orchestrator's own
//! floor, and how cost grows with history — measured as ratios within one
//! run, on a real restate-server and the real service.
//!
//! Sections: durable turn vs the `Floor` object (nine no-op steps),
//! sequential latency and throughput; the inline tier on SQLite vs memory;
//! growth with 10 … 10,000 prior messages (journal bytes per turn, commit
//! time, turn p50); service RSS after 1,000 sessions ran one turn each; the
//! long turn (50 model calls with 3 tools each, `long.rs`); the deep inbox
//! (drain rate and `view` with 10,000 inputs waiting, `deep.rs`).

pub mod cluster;
mod deep;
mod growth;
mod load;
mod long;
pub mod probe;
pub mod stats;

use crate::harness::{HarnessError, HarnessResult, RestateServer, Service};
use ratchet::engine::CancelToken;
use ratchet::engine::inline::InlineRunner;
use ratchet::llm::ScriptedProvider;
use ratchet::model::{SessionId, TurnInput};
use ratchet::store::prelude::*;
use ratchet::store::{MemoryStore, SqliteStore};
use serde_json::{Value, json};
use stats::{percentiles, ratio, round};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How big a run is.
pub struct BenchOptions {
    /// A smaller run (under 3 minutes).
    pub quick: bool,
    /// The `ratchet` binary to serve with.
    pub bin: PathBuf,
}

struct Sizes {
    warmup: usize,
    sequential: usize,
    throughput_secs: u64,
    inline: usize,
    growth_turns: usize,
    sessions_for_rss: usize,
    long_turns: usize,
    deep_turns: usize,
    views: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                warmup: 10,
                sequential: 60,
                throughput_secs: 5,
                inline: 100,
                growth_turns: 8,
                sessions_for_rss: 1000,
                long_turns: 2,
                deep_turns: 100,
                views: 20,
            }
        } else {
            Sizes {
                warmup: 20,
                sequential: 200,
                throughput_secs: 15,
                inline: 200,
                growth_turns: 30,
                sessions_for_rss: 1000,
                long_turns: 15,
                deep_turns: 300,
                views: 50,
            }
        }
    }
}

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError(e.to_string())
}

/// The benchmark turn: claim, prepare, model:0, three tools, model:1,
/// finalize, commit, with a zero-latency scripted model that answers every
/// turn of every session alike, so a session's later turns (throughput,
/// growth) are the same real 9-step turn as its first.
fn bench_script() -> Value {
    let call = |i: usize, e: &str| json!({"id": format!("call_{i}"), "name": "calculator", "arguments": {"expression": e}});
    json!({"every_turn": [
        {"tool_calls": [call(0, "1+1"), call(1, "2*3"), call(2, "10/4")], "usage": {"input_tokens": 30, "output_tokens": 9}},
        {"text": "2, 6 and 2.5.", "usage": {"input_tokens": 50, "output_tokens": 5}}
    ]})
}

/// Messages a bench turn commits: the user's, the model's tool calls, three
/// tool results and the answer.
const BENCH_TURN_MESSAGES: usize = 6;

/// Fails unless `turn` (a `TurnResult` as JSON) is the bench turn, finished.
fn check_bench_turn(turn: &Value) -> HarnessResult<()> {
    let finished =
        turn["outcome"]["status"] == "finished" && turn["outcome"]["text"] == "2, 6 and 2.5.";
    let messages = turn["messages"].as_array().map_or(0, Vec::len);
    if !finished || messages != BENCH_TURN_MESSAGES {
        return Err(err(format!(
            "a timed turn is not the bench turn ({messages} messages): {turn}"
        )));
    }
    Ok(())
}

fn turn_body(input_id: &str) -> Value {
    json!({"input": {"items": [{"type": "text", "text": "Compute 1+1, 2*3 and 10/4."}], "input_id": input_id}})
}

/// A keep-alive HTTP client for the ingress.
struct Ingress {
    url: String,
    http: reqwest::Client,
}

impl Ingress {
    async fn post(&self, path: &str, body: Option<&Value>) -> HarnessResult<(Duration, Value)> {
        let start = Instant::now();
        let req = self.http.post(format!("{}/{path}", self.url));
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        let resp = req.send().await.map_err(err)?;
        let status = resp.status();
        let text = resp.text().await.map_err(err)?;
        let elapsed = start.elapsed();
        if !status.is_success() {
            return Err(err(format!("{path}: {status} {text}")));
        }
        Ok((elapsed, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// One timed bench turn; a reply that is not the finished bench turn
    /// fails the bench.
    async fn turn(&self, session: &str, input_id: &str) -> HarnessResult<Duration> {
        let (elapsed, reply) = self
            .post(
                &format!("Session/{session}/turn"),
                Some(&turn_body(input_id)),
            )
            .await?;
        check_bench_turn(&reply)?;
        Ok(elapsed)
    }

    async fn floor(&self, key: &str) -> HarnessResult<Duration> {
        let (elapsed, reply) = self.post(&format!("Floor/{key}/nine"), None).await?;
        // 0 + 1 + ... + 8: each of the nine steps returned its index.
        if reply != json!(36) {
            return Err(err(format!(
                "the floor did not make its nine steps: {reply}"
            )));
        }
        Ok(elapsed)
    }

    async fn floor_sized(&self, key: &str, bytes: u32) -> HarnessResult<Duration> {
        self.floor_paced(key, bytes, None).await
    }

    /// The sized floor; with `pace_us`, each step also sleeps that long.
    async fn floor_paced(
        &self,
        key: &str,
        bytes: u32,
        pace_us: Option<u64>,
    ) -> HarnessResult<Duration> {
        let (elapsed, reply) = match pace_us {
            None => {
                self.post(&format!("Floor/{key}/nine_sized"), Some(&json!(bytes)))
                    .await?
            }
            Some(us) => {
                self.post(
                    &format!("Floor/{key}/nine_paced"),
                    Some(&json!([bytes, us])),
                )
                .await?
            }
        };
        if reply != json!(9 * bytes) {
            return Err(err(format!(
                "the sized floor did not make its nine steps: {reply}"
            )));
        }
        Ok(elapsed)
    }
}

async fn inline_p50(store: Arc<dyn SessionStore>, n: usize) -> HarnessResult<stats::Percentiles> {
    let model = ScriptedProvider::from_json_str(&bench_script().to_string()).map_err(err)?;
    let rt = ratchet::engine::Runtime {
        store,
        model: Arc::new(model),
        tools: ratchet::tools::builtin_registry(),
        plugins: ratchet::plugins::PluginSet::new(),
        clock: ratchet::clock::system(),
        config: ratchet::engine::EngineConfig::default(),
    };
    let runner = InlineRunner::new(rt, "bench-inline");
    let mut samples = Vec::new();
    for i in 0..n + 10 {
        let session = SessionId::new(format!("inline-{i}")).map_err(err)?;
        let input = TurnInput::text("Compute 1+1, 2*3 and 10/4.").with_input_id("in-1");
        let start = Instant::now();
        let turn = runner
            .turn(&session, input, &CancelToken::new())
            .await
            .map_err(err)?;
        check_bench_turn(&serde_json::to_value(&turn).map_err(err)?)?;
        if i >= 10 {
            samples.push(start.elapsed());
        }
    }
    Ok(percentiles(&samples))
}

fn rss_mb(pid: u32) -> HarnessResult<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(err)?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| err("no VmRSS"))?;
    Ok(round(kb / 1024.0))
}

fn say(msg: &str) {
    eprintln!("== {msg}");
}

/// Runs every section and returns the report (ratios first, then raw figures).
pub async fn run(opts: &BenchOptions) -> HarnessResult<Value> {
    let sizes = Sizes::new(opts.quick);
    let dir = tempfile::tempdir().map_err(err)?;
    let script = dir.path().join("bench-script.json");
    std::fs::write(&script, bench_script().to_string()).map_err(err)?;
    let long_script = dir.path().join("long-script.json");
    std::fs::write(&long_script, long::script().to_string()).map_err(err)?;
    // Two agents: `Session` runs the bench turn, `Long` the long turn.
    let agents = dir.path().join("agents.toml");
    let agents_toml = format!(
        "[[agent]]\nname = \"Session\"\nmodel = \"scripted:{}\"\n\n\
         [[agent]]\nname = \"Long\"\nmodel = \"scripted:{}\"\nmax_iterations = {}\n",
        script.display(),
        long_script.display(),
        long::ROUNDS + 10
    );
    std::fs::write(&agents, agents_toml).map_err(err)?;
    let agents = agents.display().to_string();
    let db = dir.path().join("bench.db");
    let server = RestateServer::start()?;
    let env = [
        ("RATCHET_AGENTS", agents.as_str()),
        ("RATCHET_WITH_FLOOR", "true"),
        ("RATCHET_LOG", "warn"),
        // Measure what production runs: no effect ledger.
        ("RATCHET_EFFECT_LEDGER", "false"),
    ];
    let service = Service::start(
        &opts.bin,
        &format!("sqlite:{}", db.display()),
        &server.admin,
        dir.path(),
        &env,
    )?;
    server.register(&service.uri()).await?;
    let ingress = Arc::new(Ingress {
        url: server.ingress.clone(),
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(err)?,
    });

    say("durable turn vs floor, sequential");
    let (mut durable, mut floor) = (Vec::new(), Vec::new());
    for i in 0..sizes.warmup + sizes.sequential {
        let d = ingress.turn(&format!("seq-{i}"), "in-1").await?;
        let f = ingress.floor(&format!("seq-{i}")).await?;
        if i >= sizes.warmup {
            durable.push(d);
            floor.push(f);
        }
    }
    let (durable, floor) = (percentiles(&durable), percentiles(&floor));

    // The same floor, each step journaling as many bytes as an average
    // ratchet step record: separates the cost of journaling a turn's data
    // from the cost of ratchet's own code.
    let step_bytes =
        (growth::journal_bytes(&server, "Session", "seq-0", "turn").await? / 9.0) as u32;
    let mut sized = Vec::new();
    for i in 0..sizes.warmup + sizes.sequential {
        let d = ingress
            .floor_sized(&format!("sized-{i}"), step_bytes)
            .await?;
        if i >= sizes.warmup {
            sized.push(d);
        }
    }
    let floor_sized = percentiles(&sized);

    say(&format!(
        "throughput, 32 concurrent sessions, {} s each: turn, floor, floor with the turn's bytes, paced floor",
        sizes.throughput_secs
    ));
    let pids = (
        service
            .pid()
            .ok_or_else(|| err("the service is not running"))?,
        server
            .pid()
            .ok_or_else(|| err("restate-server is not running"))?,
    );
    let load = load::run(&ingress, sizes.throughput_secs, step_bytes, pids).await?;
    let journal_bytes = json!({
        "ratchet": growth::journal_bytes(&server, "Session", "seq-0", "turn").await?,
        "floor": growth::journal_bytes(&server, "Floor", "seq-0", "nine").await?,
        "floor_sized": growth::journal_bytes(&server, "Floor", "sized-0", "nine_sized").await?,
    });

    say("inline tier: SQLite (synchronous=FULL, the default, and NORMAL) vs memory");
    let inline_db = dir.path().join("inline.db");
    let sqlite: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&inline_db).map_err(err)?);
    let inline_sqlite = inline_p50(sqlite, sizes.inline).await?;
    let normal = ratchet::store::rules::StoreOptions {
        sqlite_sync: ratchet::store::SqliteSync::Normal,
        ..Default::default()
    };
    let sqlite_normal: Arc<dyn SessionStore> =
        Arc::new(SqliteStore::open_with(dir.path().join("inline-normal.db"), normal).map_err(err)?);
    let inline_sqlite_normal = inline_p50(sqlite_normal, sizes.inline).await?;
    let inline_memory = inline_p50(Arc::new(MemoryStore::new()), sizes.inline).await?;

    say("growth with history: 10, 100, 1,000, 10,000 prior messages");
    let growth = growth::run(&server, &ingress, &db, sizes.growth_turns).await?;

    say(&format!(
        "service RSS after {} sessions ran one turn each",
        sizes.sessions_for_rss
    ));
    let per_caller = sizes.sessions_for_rss.div_ceil(32);
    let ing = ingress.clone();
    let mut tasks = Vec::new();
    for c in 0..32 {
        let ing = ing.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_caller {
                ing.turn(&format!("rss-{c}-{n}"), "in-1").await?;
            }
            Ok::<(), HarnessError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(err)??;
    }
    let rss = rss_mb(
        service
            .pid()
            .ok_or_else(|| err("the service is not running"))?,
    )?;

    say("journaled steps of a sample of timed turns (admin SQL)");
    let mut sample: Vec<String> = (0..3)
        .map(|k| format!("seq-{}", sizes.warmup + k * sizes.sequential / 3))
        .collect();
    sample.extend(["tp-0", "tp-31", "g10", "g10000"].map(String::from));
    let steps_checked = probe::check_journaled_steps(&server.admin, &sample, 5).await?;

    say(&format!(
        "long turn: {} model calls with 3 tools each, {} steps, vs the floor",
        long::ROUNDS + 1,
        long::STEPS
    ));
    let long_turn = long::run(&server, &ingress, sizes.long_turns, pids).await?;

    say(&format!(
        "deep inbox: drain with {} vs 10 inputs waiting; view with deep backlog and history",
        deep::DEEP
    ));
    // Last: the deep session goes on draining its backlog until the end.
    let deep_inbox = deep::run(&ingress, &db, sizes.deep_turns, sizes.views).await?;
    let view_ratio = |a: &stats::Percentiles, b: &stats::Percentiles| ratio(a.p50_ms, b.p50_ms);

    let g10 = &growth[0];
    let g10k = &growth[growth.len() - 1];
    Ok(json!({
        "durable_vs_floor_p50": ratio(durable.p50_ms, floor.p50_ms),
        "durable_vs_sized_floor_p50": ratio(durable.p50_ms, floor_sized.p50_ms),
        "throughput_vs_floor": ratio(load.ratchet.per_s(), load.floor.per_s()),
        "service_cpu_per_turn_vs_floor": ratio(load.ratchet.service_ms(), load.floor.service_ms()),
        "restate_cpu_per_turn_vs_floor": ratio(load.ratchet.restate_ms(), load.floor.restate_ms()),
        "journal_bytes_vs_floor": ratio(journal_bytes["ratchet"].as_f64().unwrap_or(0.0), journal_bytes["floor"].as_f64().unwrap_or(0.0)),
        "throughput_vs_sized_floor": ratio(load.ratchet.per_s(), load.sized.per_s()),
        "restate_cpu_per_turn_vs_sized_floor": ratio(load.ratchet.restate_ms(), load.sized.restate_ms()),
        "sized_floor_restate_cpu_vs_floor": ratio(load.sized.restate_ms(), load.floor.restate_ms()),
        "restate_cpu_per_turn_vs_paced_floor": ratio(load.ratchet.restate_ms(), load.paced.restate_ms()),
        "paced_floor_throughput_vs_ratchet": ratio(load.paced.per_s(), load.ratchet.per_s()),
        "inline_sqlite_vs_memory_p50": ratio(inline_sqlite.p50_ms, inline_memory.p50_ms),
        "inline_sqlite_full_vs_normal_p50": ratio(inline_sqlite.p50_ms, inline_sqlite_normal.p50_ms),
        "journal_bytes_growth_10k_vs_10": ratio(g10k.journal_bytes_per_turn, g10.journal_bytes_per_turn),
        "turn_p50_growth_10k_vs_10": ratio(g10k.turn.p50_ms, g10.turn.p50_ms),
        "commit_p50_growth_10k_vs_10": ratio(g10k.commit.p50_ms, g10.commit.p50_ms),
        "service_rss_mb_1000_sessions": rss,
        "long_turn_per_step_vs_floor": long_turn.per_step_vs_floor(),
        "long_turn_journal_bytes_round_50_vs_1": long_turn.bytes_round_50_vs_1(),
        "long_turn_service_cpu_per_step_vs_floor": long_turn.cpu_vs_floor("service_us"),
        "long_turn_restate_cpu_per_step_vs_floor": long_turn.cpu_vs_floor("restate_us"),
        "deep_inbox_drain_10k_vs_10": deep_inbox.drain_10k_vs_10(),
        "view_p50_backlog_10k_vs_10": view_ratio(&deep_inbox.view_backlog_10k, &deep_inbox.view_backlog_10),
        "view_p50_history_10k_vs_10": view_ratio(&deep_inbox.view_history_10k, &deep_inbox.view_history_10),
        "raw": {
            "quick": opts.quick,
            "durable_turn": durable,
            "floor": floor,
            "floor_with_turn_sized_steps": floor_sized,
            "step_record_bytes": step_bytes,
            "journal_bytes_per_turn": journal_bytes,
            "under_load": {
                "ratchet": load.ratchet.report(),
                "floor": load.floor.report(),
                "floor_sized": load.sized.report(),
                "floor_paced": load.paced.report(),
                "pace_us_per_step": load.pace_us,
            },
            "timed_turns_checked": "every reply: outcome finished, six messages; the floor: nine steps",
            "journaled_steps_checked": steps_checked,
            "inline": {"sqlite": inline_sqlite, "sqlite_normal": inline_sqlite_normal, "memory": inline_memory},
            "growth": growth,
            "sessions_for_rss": per_caller * 32,
            "long_turn": long_turn,
            "deep_inbox": deep_inbox,
        }
    }))
}
