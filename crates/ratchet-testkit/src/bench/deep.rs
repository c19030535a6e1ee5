//! The deep inbox: how fast `drain` works through a session's backlog when
//! 10,000 inputs wait vs when 10 do (no scan over the backlog per turn),
//! and `view` latency with a deep backlog or a long history vs a short one.
//!
//! Inputs are enqueued straight into the service's SQLite file (as `submit`
//! would store them, through the engine's own admission), then one `drain`
//! is sent to each session; each drain runs one input and sends the next.
//! Both sessions drain side by side, and both rates are counted over one
//! window, from when both have committed once (so no drain's start is in
//! it) until one has committed K more. The shallow inbox is topped up to
//! 10 after every commit. Every turn committed in those sessions is checked afterwards:
//! finished, the bench turn's answer, six messages each.

use super::stats::{Percentiles, percentiles, ratio, round};
use super::{Ingress, err};
use crate::harness::HarnessResult;
use ratchet::engine::admit;
use ratchet::model::{SessionId, TurnFinish, TurnInput, TurnOutcome};
use ratchet::store::prelude::*;
use ratchet::store::{SqliteStore, SqliteSync, StoreError, rules::StoreOptions};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The deep backlog.
pub const DEEP: usize = 10_000;
/// The shallow one.
const SHALLOW: usize = 10;

/// What the section measured.
#[derive(Debug, Serialize)]
pub struct DeepInbox {
    /// Turns drained per second with 10 waiting.
    pub drain_per_s_10: f64,
    /// Turns drained per second with 10,000 waiting.
    pub drain_per_s_10k: f64,
    /// Turns timed on each side.
    pub turns_timed: usize,
    /// `view` with 10 inputs waiting.
    pub view_backlog_10: Percentiles,
    /// `view` with 10,000 inputs waiting.
    pub view_backlog_10k: Percentiles,
    /// `view` of a session with 10 prior messages (growth's `g10`).
    pub view_history_10: Percentiles,
    /// `view` of a session with 10,000 prior messages (growth's `g10000`).
    pub view_history_10k: Percentiles,
    /// Committed turns of the two drained sessions checked (finished, six
    /// messages each).
    pub turns_checked: usize,
}

impl DeepInbox {
    /// Drain rate at 10,000 waiting vs at 10 (issue 16: ≥ 0.9).
    pub fn drain_10k_vs_10(&self) -> f64 {
        ratio(self.drain_per_s_10k, self.drain_per_s_10)
    }
}

async fn enqueue(store: &SqliteStore, sid: &SessionId, n: usize) -> HarnessResult<()> {
    let input = TurnInput::text("Compute 1+1, 2*3 and 10/4.").with_input_id(format!("in-{n}"));
    let admitted = admit(input, usize::MAX, || unreachable!("the input has an id")).map_err(err)?;
    store
        .enqueue(sid, admitted.into_entry())
        .await
        .map_err(err)?;
    Ok(())
}

async fn committed(store: &SqliteStore, sid: &SessionId) -> HarnessResult<u64> {
    match store.head(sid).await {
        Ok(head) => Ok(head.version),
        Err(StoreError::UnknownSession(_)) => Ok(0),
        Err(e) => Err(err(e)),
    }
}

/// Sends one drain to each session, then counts both sessions' commits
/// over one window: from the moment both have committed once until one of
/// them has committed `turns` more. The two drain side by side, so drift
/// in this shared machine's speed falls on both alike. The shallow inbox
/// is topped up to `SHALLOW` waiting after every commit. Returns turns per
/// second of each, (deep, shallow).
async fn drain_rates(
    ingress: &Ingress,
    store: &SqliteStore,
    (deep, shallow): (&str, &str),
    turns: usize,
) -> HarnessResult<(f64, f64)> {
    let sids = (
        SessionId::new(deep).map_err(err)?,
        SessionId::new(shallow).map_err(err)?,
    );
    for key in [deep, shallow] {
        ingress
            .post(
                &format!("Session/{key}/drain/send"),
                Some(&serde_json::json!({})),
            )
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut first, mut next) = (None, SHALLOW);
    loop {
        let done = (
            committed(store, &sids.0).await? as usize,
            committed(store, &sids.1).await? as usize,
        );
        if done.0 >= 1 && done.1 >= 1 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if let Some((start, at)) = first
            && (done.0 >= at.0 + turns || done.1 >= at.1 + turns)
        {
            let secs = start.elapsed().as_secs_f64();
            return Ok(((done.0 - at.0) as f64 / secs, (done.1 - at.1) as f64 / secs));
        }
        while next < done.1 + SHALLOW {
            enqueue(store, &sids.1, next).await?;
            next += 1;
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "{} and {} turns drained in 2 minutes",
                done.0, done.1
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every committed turn of `key` is the finished bench turn.
async fn check_turns(store: &SqliteStore, key: &str) -> HarnessResult<usize> {
    let sid = SessionId::new(key).map_err(err)?;
    let turns = store.turns(&sid).await.map_err(err)?;
    let messages = store
        .messages(&sid, turns.len() as u64)
        .await
        .map_err(err)?;
    let answer = TurnOutcome::Finished(TurnFinish::AssistantMessage {
        text: "2, 6 and 2.5.".into(),
    });
    if let Some(bad) = turns.iter().find(|t| t.outcome != answer) {
        return Err(err(format!(
            "{key}: drained turn {} ended {:?}",
            bad.turn_id, bad.outcome
        )));
    }
    if messages.len() != turns.len() * super::BENCH_TURN_MESSAGES {
        return Err(err(format!(
            "{key}: {} messages for {} drained turns",
            messages.len(),
            turns.len()
        )));
    }
    Ok(turns.len())
}

/// `view` p50 of each `(key, inputs waiting)`, round-robin.
async fn view_p50(
    ingress: &Ingress,
    keys: &[(&str, Option<u64>)],
    n: usize,
) -> HarnessResult<Vec<Percentiles>> {
    let mut samples = vec![Vec::new(); keys.len()];
    for i in 0..n + 5 {
        for (k, (key, waiting)) in keys.iter().enumerate() {
            let (elapsed, view) = ingress
                .post(&format!("Session/{key}/view"), Some(&serde_json::json!({})))
                .await?;
            let total = view["pending_total"].as_u64();
            if view["head"].is_null() || waiting.is_some_and(|w| total != Some(w)) {
                return Err(err(format!(
                    "{key}: view shows {total:?} inputs waiting, not {waiting:?}"
                )));
            }
            if i >= 5 {
                samples[k].push(elapsed);
            }
        }
    }
    Ok(samples.iter().map(|s| percentiles(s)).collect())
}

/// Seeds the backlogs, times `view`, then the two drains side by side.
/// Leaves both sessions draining their tails: run it last.
pub async fn run(
    ingress: &Ingress,
    db: &Path,
    turns: usize,
    views: usize,
) -> HarnessResult<DeepInbox> {
    // Seeding only: the service's own connection keeps its FULL sync.
    let options = StoreOptions {
        sqlite_sync: SqliteSync::Normal,
        ..Default::default()
    };
    let store = SqliteStore::open_with(db, options).map_err(err)?;
    let (deep, shallow) = ("deep-10000", "deep-10");
    let deep_sid = SessionId::new(deep).map_err(err)?;
    for n in 0..DEEP {
        enqueue(&store, &deep_sid, n).await?;
    }
    let shallow_sid = SessionId::new(shallow).map_err(err)?;
    for n in 0..SHALLOW {
        enqueue(&store, &shallow_sid, n).await?;
    }
    let keys = [
        (shallow, Some(SHALLOW as u64)),
        (deep, Some(DEEP as u64)),
        ("g10", None),
        ("g10000", None),
    ];
    let views = view_p50(ingress, &keys, views).await?;
    let (drain_per_s_10k, drain_per_s_10) =
        drain_rates(ingress, &store, (deep, shallow), turns).await?;
    let turns_checked = check_turns(&store, shallow).await? + check_turns(&store, deep).await?;
    Ok(DeepInbox {
        drain_per_s_10: round(drain_per_s_10),
        drain_per_s_10k: round(drain_per_s_10k),
        turns_timed: turns,
        view_backlog_10: views[0],
        view_backlog_10k: views[1],
        view_history_10: views[2],
        view_history_10k: views[3],
        turns_checked,
    })
}
