//! What the bench reads besides latency: the CPU time a process has used
//! (to put each side's CPU per turn against the floor's), and the steps a
//! sample of timed turns journaled in Restate (to prove each timed turn was
//! the 9-step bench turn, not a shorter failed one).

use super::err;
use crate::harness::HarnessResult;
use ratchet::restate::admin::AdminClient;
use std::ops::Sub;

/// The steps the bench turn journals, in order.
pub const BENCH_STEPS: [&str; 9] = [
    "claim",
    "prepare",
    "model:0",
    "tool:0:call_0",
    "tool:0:call_1",
    "tool:0:call_2",
    "model:1",
    "finalize",
    "commit",
];

/// CPU seconds (user, system) that process `pid` has used so far.
pub fn cpu_secs(pid: u32) -> HarnessResult<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(err)?;
    // Fields after the command name (which may hold spaces) start at field 3;
    // utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| err("malformed /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> HarnessResult<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| err("malformed /proc stat"))
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? / hz, ticks(12)? / hz))
}

/// CPU seconds of the service and of restate-server, each as (user,
/// system): the service's system time holds its fsyncs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// The ratchet service (which also serves the floor object).
    pub service: (f64, f64),
    /// restate-server.
    pub restate: (f64, f64),
}

impl Cpu {
    /// Both processes now.
    pub fn now(service_pid: u32, restate_pid: u32) -> HarnessResult<Self> {
        Ok(Cpu {
            service: cpu_secs(service_pid)?,
            restate: cpu_secs(restate_pid)?,
        })
    }

    /// Adds another span of CPU time.
    pub fn add(&mut self, other: Cpu) {
        self.service = (
            self.service.0 + other.service.0,
            self.service.1 + other.service.1,
        );
        self.restate = (
            self.restate.0 + other.restate.0,
            self.restate.1 + other.restate.1,
        );
    }

    /// The service's user + system seconds.
    pub fn service_total(&self) -> f64 {
        self.service.0 + self.service.1
    }

    /// restate-server's user + system seconds.
    pub fn restate_total(&self) -> f64 {
        self.restate.0 + self.restate.1
    }
}

impl Sub for Cpu {
    type Output = Cpu;
    fn sub(self, rhs: Cpu) -> Cpu {
        Cpu {
            service: (
                self.service.0 - rhs.service.0,
                self.service.1 - rhs.service.1,
            ),
            restate: (
                self.restate.0 - rhs.restate.0,
                self.restate.1 - rhs.restate.1,
            ),
        }
    }
}

/// Checks, through the admin API, that every turn invocation of each
/// session in `sessions` (at most `per_session` of them) journaled exactly
/// the bench turn's nine steps; returns how many invocations it checked.
pub async fn check_journaled_steps(
    admin_url: &str,
    sessions: &[String],
    per_session: usize,
) -> HarnessResult<usize> {
    let admin = AdminClient::at(admin_url).map_err(err)?;
    let mut checked = 0;
    for session in sessions {
        let rows = admin
            .query(&format!(
                "SELECT id FROM sys_invocation WHERE target_service_name = 'Session' \
                 AND target_service_key = '{session}' AND target_handler_name = 'turn' \
                 LIMIT {per_session}"
            ))
            .await
            .map_err(err)?;
        if rows.is_empty() {
            return Err(err(format!("no turn invocation of {session} to check")));
        }
        for id in rows.iter().filter_map(|r| r["id"].as_str()) {
            let steps = admin.step_names(id).await.map_err(err)?;
            if steps != BENCH_STEPS {
                return Err(err(format!(
                    "turn invocation {id} of {session} journaled {steps:?}, not the bench turn's nine steps"
                )));
            }
            checked += 1;
        }
    }
    Ok(checked)
}
