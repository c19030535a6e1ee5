//! Growth with history: sessions seeded with 10, 100, 1,000 and 10,000
//! prior messages; per size, journal bytes per turn (from Restate's admin
//! SQL), commit time (in-process, on the same SQLite file) and turn p50.

use super::stats::{Percentiles, percentiles, round};
use super::{Ingress, err};
use crate::harness::{HarnessResult, RestateServer};
use ratchet::model::{Message, Role, SessionId, TurnFinish, TurnInput, TurnOutcome, Usage};
use ratchet::store::prelude::*;
use ratchet::store::{ClaimTarget, CommitRequest, InboxPayload, NewInboxEntry, SqliteStore};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Figures at one history size.
#[derive(Clone, Debug, Serialize)]
pub struct GrowthPoint {
    /// Prior messages.
    pub prior_messages: usize,
    /// Journal bytes per turn invocation.
    pub journal_bytes_per_turn: f64,
    /// Store commit latency.
    pub commit: Percentiles,
    /// Turn latency through Restate.
    pub turn: Percentiles,
}

/// The sizes measured.
pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Commits `n` messages into `session` in batches, as prior turns.
async fn seed(store: &SqliteStore, session: &SessionId, n: usize) -> HarnessResult<()> {
    let mut left = n;
    let mut batch = 0;
    while left > 0 {
        let take = left.min(400);
        let (lease, claim) = enqueue_and_claim(store, session, &format!("seed-{batch}")).await?;
        let turn_id = format!("seed-{batch}");
        let messages = (0..take)
            .map(|i| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                Message::text(
                    format!("{turn_id}:msg:{i}"),
                    role,
                    format!("prior message {i} of batch {batch}, padded to a realistic length"),
                )
            })
            .collect();
        let mut req = commit(&lease, &turn_id, &claim, messages);
        req.base_version = store.head(session).await.map_err(err)?.version;
        store.commit(&req).await.map_err(err)?;
        left -= take;
        batch += 1;
    }
    Ok(())
}

async fn enqueue_and_claim(
    store: &SqliteStore,
    session: &SessionId,
    id: &str,
) -> HarnessResult<(ratchet::store::Lease, ratchet::store::Claim)> {
    let entry = NewInboxEntry {
        id: id.to_string(),
        turn_id: None,
        payload: InboxPayload::Input(TurnInput::text("seed")),
    };
    store.enqueue(session, entry).await.map_err(err)?;
    let lease = store
        .acquire_lease(session, "bench-seed", 60_000)
        .await
        .map_err(err)?;
    let claim = store
        .claim(&lease, ClaimTarget::Input(id.to_string()))
        .await
        .map_err(err)?
        .ok_or_else(|| err("seed input not claimable"))?;
    Ok((lease, claim))
}

fn commit(
    lease: &ratchet::store::Lease,
    turn_id: &str,
    claim: &ratchet::store::Claim,
    messages: Vec<Message>,
) -> CommitRequest {
    CommitRequest {
        session_id: lease.session_id.clone(),
        turn_id: turn_id.to_string(),
        lease: lease.clone(),
        base_version: 0,
        messages,
        outcome: TurnOutcome::Finished(TurnFinish::AssistantMessage { text: "ok".into() }),
        usage: Usage::default(),
        completed_entries: claim.entry_ids(),
        events: Vec::new(),
        settings: None,
        keep_lease: false,
        started_at_ms: 0,
        finished_at_ms: 0,
    }
}

/// Times `n` store commits of a five-message turn on a seeded session.
async fn commit_times(
    store: &SqliteStore,
    session: &SessionId,
    n: usize,
) -> HarnessResult<Percentiles> {
    let mut samples = Vec::new();
    for i in 0..n {
        let (lease, claim) = enqueue_and_claim(store, session, &format!("commit-{i}")).await?;
        let mut req = commit(&lease, &format!("commit-{i}"), &claim, Vec::new());
        req.base_version = store.head(session).await.map_err(err)?.version;
        req.messages = (0..5)
            .map(|k| {
                Message::text(
                    format!("commit-{i}:msg:{k}"),
                    Role::Assistant,
                    "a five-message turn",
                )
            })
            .collect();
        let start = Instant::now();
        store.commit(&req).await.map_err(err)?;
        samples.push(start.elapsed());
    }
    Ok(percentiles(&samples))
}

/// Average journal bytes of the `handler` invocations on object `service`,
/// key `key`.
pub async fn journal_bytes(
    server: &RestateServer,
    service: &str,
    key: &str,
    handler: &str,
) -> HarnessResult<f64> {
    let invocations = server
        .query(&format!(
            "SELECT id FROM sys_invocation WHERE target_service_name = '{service}' \
             AND target_service_key = '{key}' AND target_handler_name = '{handler}'"
        ))
        .await?;
    let ids: Vec<String> = invocations
        .iter()
        .filter_map(|r| r["id"].as_str().map(|id| format!("'{id}'")))
        .collect();
    if ids.is_empty() {
        return Err(err(format!("no {service}/{handler} invocations for {key}")));
    }
    let rows = server
        .query(&format!(
            "SELECT id, sum(raw_length) AS bytes FROM sys_journal WHERE id IN ({}) GROUP BY id",
            ids.join(", ")
        ))
        .await?;
    if rows.is_empty() {
        return Err(err(format!("no journal rows for {service}/{key}")));
    }
    let total: f64 = rows.iter().filter_map(|r| r["bytes"].as_f64()).sum();
    Ok(round(total / rows.len() as f64))
}

/// Measures every size.
pub async fn run(
    server: &RestateServer,
    ingress: &Ingress,
    db: &Path,
    turns: usize,
) -> HarnessResult<Vec<GrowthPoint>> {
    let store = SqliteStore::open(db).map_err(err)?;
    for n in SIZES {
        seed(&store, &SessionId::new(format!("g{n}")).map_err(err)?, n).await?;
        seed(&store, &SessionId::new(format!("c{n}")).map_err(err)?, n).await?;
    }
    // Sizes take turns round-robin, so drift and noise on this shared
    // machine fall on every size alike instead of on whichever ran last.
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); SIZES.len()];
    for t in 0..turns + 2 {
        for (k, n) in SIZES.iter().enumerate() {
            let d = ingress.turn(&format!("g{n}"), &format!("in-{t}")).await?;
            if t >= 2 {
                samples[k].push(d);
            }
        }
    }
    let mut points = Vec::new();
    for (k, n) in SIZES.iter().enumerate() {
        let commit_sid = SessionId::new(format!("c{n}")).map_err(err)?;
        points.push(GrowthPoint {
            prior_messages: *n,
            journal_bytes_per_turn: journal_bytes(server, "Session", &format!("g{n}"), "turn")
                .await?,
            commit: commit_times(&store, &commit_sid, turns).await?,
            turn: percentiles(&samples[k]),
        });
    }
    Ok(points)
}
