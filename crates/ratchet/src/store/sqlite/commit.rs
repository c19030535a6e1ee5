//! The SQLite final commit: one immediate transaction that reads what
//! [`commit_plan::decide`] needs and applies the plan's stages, each passing
//! its fault point, so a failure anywhere rolls everything back.

use super::rows::{exec, row};
use super::schema::map_err;
use super::{SqliteStore, clamp};
use crate::model::{SessionId, Usage};
use crate::store::commit_plan::{self, CommitReads, Decision, Stage};
use crate::store::rules;
use crate::store::{CommitReceipt, CommitRequest, StoreError, StoreResult};
use rusqlite::{OptionalExtension, Transaction, params};

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(e.to_string()))
}

impl SqliteStore {
    fn fault(&self, stage: &str) -> StoreResult<()> {
        self.options
            .faults
            .check(stage)
            .map_err(StoreError::Injected)
    }

    fn commit_reads(tx: &Transaction<'_>, req: &CommitRequest) -> StoreResult<CommitReads> {
        let session = req.session_id.as_str();
        let receipt = row(
            tx,
            "SELECT version, commit_hash FROM turns WHERE session_id = ?1 AND turn_id = ?2",
            params![session, req.turn_id],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(map_err)?;
        let head = row(
            tx,
            "SELECT version, usage FROM sessions WHERE id = ?1",
            params![session],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(map_err)?
        .map(|(v, usage)| {
            Ok::<_, StoreError>((v, rules::decode::<Usage>("session usage", &usage)?))
        })
        .transpose()?;
        Ok(CommitReads {
            receipt,
            lease: Self::lease_row(tx, &req.session_id)?,
            head,
        })
    }

    fn apply(tx: &Transaction<'_>, sid: &SessionId, stage: &Stage<'_>) -> StoreResult<()> {
        let session = sid.as_str();
        match stage {
            Stage::Messages {
                version,
                turn_id,
                messages,
            } => {
                for (ord, m) in messages.iter().enumerate() {
                    exec(tx,
                        "INSERT INTO messages (session_id, version, ord, turn_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![session, *version as i64, ord as i64, turn_id, json(m)?],
                    )
                    .map_err(map_err)?;
                }
            }
            Stage::Inbox { completed } => {
                for id in completed.iter() {
                    let n = exec(
                        tx,
                        "UPDATE inbox SET state = 'completed' WHERE session_id = ?1 AND id = ?2",
                        params![session, id],
                    )
                    .map_err(map_err)?;
                    if n == 0 {
                        return Err(StoreError::InvalidArgument(format!(
                            "unknown inbox entry '{id}'"
                        )));
                    }
                }
            }
            Stage::Events { events } => Self::insert_events(tx, sid, events)?,
            Stage::Head {
                version,
                usage,
                settings,
            } => {
                exec(
                    tx,
                    "UPDATE sessions SET version = ?2, usage = ?3 WHERE id = ?1",
                    params![session, *version as i64, json(usage)?],
                )
                .map_err(map_err)?;
                if let Some(settings) = settings {
                    exec(
                        tx,
                        "UPDATE sessions SET settings = ?2 WHERE id = ?1",
                        params![session, json(settings)?],
                    )
                    .map_err(map_err)?;
                }
            }
            Stage::ReleaseLease { fence } => {
                exec(
                    tx,
                    "UPDATE leases SET owner = NULL WHERE session_id = ?1 AND fence = ?2",
                    params![session, *fence as i64],
                )
                .map_err(map_err)?;
            }
            Stage::Receipt { req, version, hash } => {
                exec(
                    tx,
                    "INSERT INTO turns (session_id, turn_id, version, outcome, usage, commit_hash,
                                        started_at_ms, finished_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        session,
                        req.turn_id,
                        *version as i64,
                        json(&req.outcome)?,
                        json(&req.usage)?,
                        hash,
                        clamp(req.started_at_ms),
                        clamp(req.finished_at_ms)
                    ],
                )
                .map_err(map_err)?;
            }
        }
        Ok(())
    }

    pub(super) fn commit_in(
        &self,
        tx: &Transaction<'_>,
        req: &CommitRequest,
        hash: &str,
    ) -> StoreResult<CommitReceipt> {
        let reads = Self::commit_reads(tx, req)?;
        let plan = match commit_plan::decide(req, hash.to_string(), reads)? {
            Decision::Replayed(receipt) => return Ok(receipt),
            Decision::Apply(plan) => plan,
        };
        for stage in plan.stages() {
            Self::apply(tx, &req.session_id, &stage)?;
            self.fault(stage.fault_point())?;
        }
        Ok(plan.receipt())
    }
}
