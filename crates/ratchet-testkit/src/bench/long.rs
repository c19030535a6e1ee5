//! The long turn: one turn of 50 model calls with three tool calls each,
//! then the answer (205 journaled steps), served by the bench's `Long`
//! agent; against the floor making as many no-op steps. Per size: the
//! turn's time per step vs the floor's, and the journal bytes of the 50th
//! model round (its model step and three tool steps) vs the first's.

use super::probe::Cpu;
use super::stats::{Percentiles, percentiles, ratio, round};
use super::{Ingress, err, turn_body};
use crate::harness::{HarnessResult, RestateServer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Model calls that ask for tools.
pub const ROUNDS: usize = 50;
/// Tool calls per such model call.
const TOOLS_PER_ROUND: usize = 3;
/// Steps of the long turn: claim, prepare, 50 × (model + 3 tools), the
/// answering model call, finalize, commit.
pub const STEPS: usize = 4 + (ROUNDS + 1) + ROUNDS * TOOLS_PER_ROUND;
/// Messages it commits: the user's, 50 tool-call messages, 150 results,
/// the answer.
const MESSAGES: usize = 1 + ROUNDS + ROUNDS * TOOLS_PER_ROUND + 1;
const ANSWER: &str = "All 150 computed.";

/// The `Long` agent's script: the same long turn for every session.
pub fn script() -> Value {
    let mut entries: Vec<Value> = (0..ROUNDS)
        .map(|r| {
            let calls: Vec<Value> = (0..TOOLS_PER_ROUND)
                .map(|k| {
                    json!({"id": format!("c{r}_{k}"), "name": "calculator",
                           "arguments": {"expression": format!("{r}+{k}")}})
                })
                .collect();
            json!({"tool_calls": calls, "usage": {"input_tokens": 30, "output_tokens": 9}})
        })
        .collect();
    entries.push(json!({"text": ANSWER, "usage": {"input_tokens": 50, "output_tokens": 5}}));
    json!({ "every_turn": entries })
}

/// The step names the long turn journals, in order.
pub fn expected_steps() -> Vec<String> {
    let mut steps = vec!["claim".to_string(), "prepare".to_string()];
    for r in 0..ROUNDS {
        steps.push(format!("model:{r}"));
        steps.extend((0..TOOLS_PER_ROUND).map(|k| format!("tool:{r}:c{r}_{k}")));
    }
    steps.extend([
        format!("model:{ROUNDS}"),
        "finalize".into(),
        "commit".into(),
    ]);
    steps
}

/// What the section measured.
#[derive(Debug, serde::Serialize)]
pub struct LongTurn {
    /// Turn latency.
    pub turn: Percentiles,
    /// The floor's latency for as many steps.
    pub floor: Percentiles,
    /// Turn p50 per step, µs.
    pub per_step_us: f64,
    /// Floor p50 per step, µs.
    pub floor_per_step_us: f64,
    /// Journal bytes of model round 1 (model:0 and its tools).
    pub round_1_bytes: f64,
    /// Journal bytes of model round 50.
    pub round_50_bytes: f64,
    /// Journal bytes of the whole turn invocation.
    pub journal_bytes: f64,
    /// Turn invocations whose journal was read back and held the 205 steps.
    pub journaled_steps_checked: usize,
    /// CPU per journaled step, µs, of the service and of restate-server:
    /// over the timed long turns, and over the floor's runs.
    pub cpu_per_step_us: Value,
}

impl LongTurn {
    /// Per-step time vs the floor's (issue 16: ≤ 1.2).
    pub fn per_step_vs_floor(&self) -> f64 {
        ratio(self.turn.p50_ms, self.floor.p50_ms)
    }

    /// CPU per step of one process (`service_us` or `restate_us`) vs the
    /// floor's.
    pub fn cpu_vs_floor(&self, process: &str) -> f64 {
        let side = |s: &str| self.cpu_per_step_us[s][process].as_f64().unwrap_or(0.0);
        ratio(side("ratchet"), side("floor"))
    }

    /// Journal bytes per step at round 50 vs round 1 (issue 16: ≤ 1.1).
    pub fn bytes_round_50_vs_1(&self) -> f64 {
        ratio(self.round_50_bytes, self.round_1_bytes)
    }
}

impl Ingress {
    async fn long_turn(&self, session: &str) -> HarnessResult<Duration> {
        let (elapsed, turn) = self
            .post(&format!("Long/{session}/turn"), Some(&turn_body("in-1")))
            .await?;
        let finished = turn["outcome"]["status"] == "finished" && turn["outcome"]["text"] == ANSWER;
        let messages = turn["messages"].as_array().map_or(0, Vec::len);
        if !finished || messages != MESSAGES {
            return Err(err(format!(
                "a timed long turn is not the bench's long turn ({messages} messages): {}",
                turn["outcome"]
            )));
        }
        Ok(elapsed)
    }

    async fn floor_steps(&self, key: &str, steps: usize) -> HarnessResult<Duration> {
        let (elapsed, reply) = self
            .post(&format!("Floor/{key}/steps"), Some(&json!(steps)))
            .await?;
        let sum = (steps * (steps - 1) / 2) as u64;
        if reply.as_u64() != Some(sum) {
            return Err(err(format!(
                "the floor did not make its {steps} steps: {reply}"
            )));
        }
        Ok(elapsed)
    }
}

/// Journal bytes per step name of invocation `id`: each run's command
/// entry and its completion, joined by completion id, named by the step
/// record in the completion.
async fn bytes_by_step(server: &RestateServer, id: &str) -> HarnessResult<HashMap<String, f64>> {
    let rows = server
        .query(&format!(
            "SELECT index, raw_length, entry_json FROM sys_journal WHERE id = '{id}' ORDER BY index"
        ))
        .await?;
    let mut by_completion: HashMap<u64, f64> = HashMap::new();
    let mut names: HashMap<u64, String> = HashMap::new();
    for row in &rows {
        let entry: Value =
            serde_json::from_str(row["entry_json"].as_str().unwrap_or("null")).unwrap_or_default();
        let len = row["raw_length"].as_f64().unwrap_or(0.0);
        if let Some(n) = entry["Command"]["Run"]["completion_id"].as_u64() {
            *by_completion.entry(n).or_default() += len;
        }
        let done = &entry["Notification"]["Completion"]["Run"];
        if let Some(n) = done["completion_id"].as_u64() {
            *by_completion.entry(n).or_default() += len;
            let bytes: Vec<u8> = done["result"]["Success"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|b| b.as_u64().map(|b| b as u8))
                        .collect()
                })
                .unwrap_or_default();
            if let Ok(record) = serde_json::from_slice::<Value>(&bytes)
                && let Some(step) = record["step"].as_str()
            {
                names.insert(n, step.to_string());
            }
        }
    }
    Ok(by_completion
        .into_iter()
        .filter_map(|(n, bytes)| Some((names.get(&n)?.clone(), bytes)))
        .collect())
}

fn round_bytes(by_step: &HashMap<String, f64>, round: usize) -> HarnessResult<f64> {
    let model = format!("model:{round}");
    let tools = format!("tool:{round}:");
    let bytes: Vec<f64> = by_step
        .iter()
        .filter(|(name, _)| **name == model || name.starts_with(&tools))
        .map(|(_, b)| *b)
        .collect();
    if bytes.len() != 1 + TOOLS_PER_ROUND {
        return Err(err(format!(
            "model round {round} journaled {} steps, not {}",
            bytes.len(),
            1 + TOOLS_PER_ROUND
        )));
    }
    Ok(bytes.iter().sum())
}

/// Runs `turns` long turns on fresh sessions, each followed by the floor
/// with as many steps, then reads the journal of the first one back.
pub async fn run(
    server: &RestateServer,
    ingress: &Ingress,
    turns: usize,
    pids: (u32, u32),
) -> HarnessResult<LongTurn> {
    let (mut timed, mut floor) = (Vec::new(), Vec::new());
    let (mut turn_cpu, mut floor_cpu) = (Cpu::default(), Cpu::default());
    // One warm-up pair.
    for i in 0..turns + 1 {
        let before = Cpu::now(pids.0, pids.1)?;
        let t = ingress.long_turn(&format!("long-{i}")).await?;
        let between = Cpu::now(pids.0, pids.1)?;
        let f = ingress.floor_steps(&format!("long-{i}"), STEPS).await?;
        let after = Cpu::now(pids.0, pids.1)?;
        if i > 0 {
            timed.push(t);
            floor.push(f);
            turn_cpu.add(between - before);
            floor_cpu.add(after - between);
        }
    }
    let steps = (STEPS * turns.max(1)) as f64;
    let per_step = |cpu: &Cpu| {
        json!({
            "service_us": round(cpu.service_total() * 1e6 / steps),
            "restate_us": round(cpu.restate_total() * 1e6 / steps),
        })
    };
    let cpu_per_step_us = json!({"ratchet": per_step(&turn_cpu), "floor": per_step(&floor_cpu)});
    let (turn, floor) = (percentiles(&timed), percentiles(&floor));
    let admin = ratchet::restate::admin::AdminClient::at(&server.admin).map_err(err)?;
    let expected = expected_steps();
    let (mut checked, mut first) = (0, None);
    for i in 1..turns + 1 {
        let rows = server
            .query(&format!(
                "SELECT id FROM sys_invocation WHERE target_service_name = 'Long' \
                 AND target_service_key = 'long-{i}' AND target_handler_name = 'turn'"
            ))
            .await?;
        let id = rows
            .first()
            .and_then(|r| r["id"].as_str())
            .ok_or_else(|| err(format!("no turn invocation of long-{i}")))?
            .to_string();
        let steps = admin.step_names(&id).await.map_err(err)?;
        if steps != expected {
            return Err(err(format!(
                "long turn invocation {id} journaled {} steps, not the long turn's {STEPS}",
                steps.len()
            )));
        }
        checked += 1;
        first.get_or_insert(id);
    }
    let by_step = bytes_by_step(server, first.as_deref().unwrap_or_default()).await?;
    Ok(LongTurn {
        per_step_us: round(turn.p50_ms * 1000.0 / STEPS as f64),
        floor_per_step_us: round(floor.p50_ms * 1000.0 / STEPS as f64),
        turn,
        floor,
        round_1_bytes: round_bytes(&by_step, 0)?,
        round_50_bytes: round_bytes(&by_step, ROUNDS - 1)?,
        journal_bytes: by_step.values().sum(),
        journaled_steps_checked: checked,
        cpu_per_step_us,
    })
}
