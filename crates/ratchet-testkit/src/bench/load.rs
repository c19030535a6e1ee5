//! The throughput section: 32 concurrent sessions, in alternating rounds of
//! the durable turn, the floor, the floor whose steps journal a turn's
//! bytes, and the paced floor (a turn's bytes, and steps that sleep so that
//! it runs as slowly as the turn did), so drift on this shared machine falls
//! on every side. Each side's CPU (the service's, restate-server's) is read
//! around its own rounds only.
//!
//! The paced floor asks what restate-server's CPU per turn follows: the
//! bytes a turn journals, or how long its invocation stays in flight.

use super::{Ingress, err, probe, stats::round};
use crate::harness::{HarnessError, HarnessResult};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds per side.
const ROUNDS: u64 = 5;

/// What one side did over its rounds.
#[derive(Default)]
pub struct Side {
    /// Operations done.
    pub n: f64,
    /// Seconds they took.
    pub secs: f64,
    /// CPU both processes spent meanwhile.
    pub cpu: probe::Cpu,
}

impl Side {
    /// Operations per second.
    pub fn per_s(&self) -> f64 {
        self.n / self.secs.max(f64::EPSILON)
    }

    /// The service's CPU ms per operation.
    pub fn service_ms(&self) -> f64 {
        self.per_op_ms(self.cpu.service_total())
    }

    /// restate-server's CPU ms per operation.
    pub fn restate_ms(&self) -> f64 {
        self.per_op_ms(self.cpu.restate_total())
    }

    fn per_op_ms(&self, cpu_secs: f64) -> f64 {
        round(cpu_secs * 1000.0 / self.n.max(1.0))
    }

    /// The raw figures, CPU split into user and system time.
    pub fn report(&self) -> Value {
        json!({
            "per_s": round(self.per_s()),
            "service_ms": self.service_ms(),
            "service_user_ms": self.per_op_ms(self.cpu.service.0),
            "service_system_ms": self.per_op_ms(self.cpu.service.1),
            "restate_ms": self.restate_ms(),
            "restate_user_ms": self.per_op_ms(self.cpu.restate.0),
            "restate_system_ms": self.per_op_ms(self.cpu.restate.1),
        })
    }
}

/// The three sides of the throughput section.
pub struct Load {
    /// The durable bench turn.
    pub ratchet: Side,
    /// The floor: nine no-op steps.
    pub floor: Side,
    /// The floor with each step journaling `step_bytes`.
    pub sized: Side,
    /// The sized floor, each step sleeping [`Load::pace_us`].
    pub paced: Side,
    /// The last pace, in microseconds per step: set so that the paced
    /// floor's latency under load follows the turn's.
    pub pace_us: u64,
}

fn latency_s(n: f64, secs: f64) -> f64 {
    32.0 * secs / n.max(1.0)
}

impl Load {
    /// The next pace: the first from how much longer a turn took under
    /// load than the floor, per step; later ones corrected by how far the
    /// last paced round's latency fell from the turn's.
    fn next_pace(&self, last_paced: Option<(f64, f64)>) -> u64 {
        let ratchet = latency_s(self.ratchet.n, self.ratchet.secs);
        let (base, from) = match last_paced {
            None => (0.0, latency_s(self.floor.n, self.floor.secs)),
            Some((n, secs)) => (self.pace_us as f64, latency_s(n, secs)),
        };
        (base + (ratchet - from) * 1e6 / 9.0).max(0.0) as u64
    }
}

/// Runs `secs` seconds per side, in [`ROUNDS`] alternating rounds.
pub async fn run(
    ingress: &Arc<Ingress>,
    secs: u64,
    step_bytes: u32,
    pids: (u32, u32),
) -> HarnessResult<Load> {
    let mut load = Load {
        ratchet: Side::default(),
        floor: Side::default(),
        sized: Side::default(),
        paced: Side::default(),
        pace_us: 0,
    };
    let span = secs / ROUNDS;
    let mut last_paced = None;
    for round in 0..ROUNDS {
        let ing = ingress.clone();
        measure(&mut load.ratchet, pids, span, move |c, n| {
            let ing = ing.clone();
            async move {
                ing.turn(&format!("tp-{c}"), &format!("in-{round}-{n}"))
                    .await
            }
        })
        .await?;
        let ing = ingress.clone();
        measure(&mut load.floor, pids, span, move |c, _| {
            let ing = ing.clone();
            async move { ing.floor(&format!("tp-{c}")).await }
        })
        .await?;
        let ing = ingress.clone();
        measure(&mut load.sized, pids, span, move |c, _| {
            let ing = ing.clone();
            async move { ing.floor_sized(&format!("tps-{c}"), step_bytes).await }
        })
        .await?;
        load.pace_us = load.next_pace(last_paced);
        let (ing, pace) = (ingress.clone(), Some(load.pace_us));
        let before = (load.paced.n, load.paced.secs);
        measure(&mut load.paced, pids, span, move |c, _| {
            let ing = ing.clone();
            async move { ing.floor_paced(&format!("tpp-{c}"), step_bytes, pace).await }
        })
        .await?;
        last_paced = Some((load.paced.n - before.0, load.paced.secs - before.1));
    }
    Ok(load)
}

async fn measure<F, Fut>(side: &mut Side, pids: (u32, u32), secs: u64, op: F) -> HarnessResult<()>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = HarnessResult<Duration>> + Send,
{
    let before = probe::Cpu::now(pids.0, pids.1)?;
    let (n, took) = throughput(secs, op).await?;
    side.cpu.add(probe::Cpu::now(pids.0, pids.1)? - before);
    side.n += n;
    side.secs += took;
    Ok(())
}

/// Runs `op` from 32 concurrent callers, each on its own key, for `secs`;
/// returns the operations done and the seconds they took.
pub async fn throughput<F, Fut>(secs: u64, op: F) -> HarnessResult<(f64, f64)>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = HarnessResult<Duration>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..32 {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline {
                op(caller, n).await?;
                n += 1;
            }
            Ok::<usize, HarnessError>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(err)??;
    }
    Ok((total as f64, start.elapsed().as_secs_f64()))
}
