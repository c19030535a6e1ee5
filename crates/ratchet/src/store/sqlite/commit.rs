//! The SQLite final commit: one immediate transaction, each stage passing
//! its fault point, so a failure anywhere rolls everything back.

use super::rows::{exec, row};
use super::schema::map_err;
use super::{SqliteStore, clamp};
use crate::model::Usage;
use crate::store::rules;
use crate::store::{CommitReceipt, CommitRequest, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

impl SqliteStore {
    fn fault(&self, stage: &str) -> StoreResult<()> {
        self.options
            .faults
            .check(stage)
            .map_err(StoreError::Injected)
    }

    pub(super) fn existing_receipt(
        conn: &Connection,
        req: &CommitRequest,
        hash: &str,
    ) -> StoreResult<Option<CommitReceipt>> {
        let found: Option<(i64, String)> = row(
            conn,
            "SELECT version, commit_hash FROM turns WHERE session_id = ?1 AND turn_id = ?2",
            params![req.session_id.as_str(), req.turn_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(map_err)?;
        match found {
            None => Ok(None),
            Some((_, stored)) if stored != hash => Err(StoreError::CommitConflict {
                turn_id: req.turn_id.clone(),
            }),
            Some((version, _)) => Ok(Some(CommitReceipt {
                turn_id: req.turn_id.clone(),
                version: version as u64,
                commit_hash: hash.to_string(),
                replayed: true,
            })),
        }
    }

    pub(super) fn commit_in(
        &self,
        tx: &Transaction<'_>,
        req: &CommitRequest,
        hash: &str,
    ) -> StoreResult<CommitReceipt> {
        let session = req.session_id.as_str();
        if let Some(receipt) = Self::existing_receipt(tx, req, hash)? {
            return Ok(receipt);
        }
        if !rules::lease_is_current(Self::lease_row(tx, &req.session_id)?.as_ref(), &req.lease) {
            return Err(rules::lease_lost(&req.lease));
        }
        let (head, usage_json): (i64, String) = row(
            tx,
            "SELECT version, usage FROM sessions WHERE id = ?1",
            params![session],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(map_err)?
        .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
        if head as u64 != req.base_version {
            return Err(StoreError::VersionConflict {
                expected: req.base_version,
                actual: head as u64,
            });
        }
        let version = head as u64 + 1;
        for (ord, m) in req.messages.iter().enumerate() {
            let body = serde_json::to_string(m).map_err(|e| StoreError::Internal(e.to_string()))?;
            exec(tx,
                "INSERT INTO messages (session_id, version, ord, turn_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session, version as i64, ord as i64, req.turn_id, body],
            )
            .map_err(map_err)?;
        }
        self.fault(rules::COMMIT_STAGES[0])?;
        for id in &req.completed_entries {
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
        self.fault(rules::COMMIT_STAGES[1])?;
        Self::insert_events(tx, &req.session_id, &req.events)?;
        self.fault(rules::COMMIT_STAGES[2])?;
        let mut usage: Usage = rules::decode("session usage", &usage_json)?;
        usage.add(&req.usage);
        let usage_json =
            serde_json::to_string(&usage).map_err(|e| StoreError::Internal(e.to_string()))?;
        exec(
            tx,
            "UPDATE sessions SET version = ?2, usage = ?3 WHERE id = ?1",
            params![session, version as i64, usage_json],
        )
        .map_err(map_err)?;
        if let Some(settings) = &req.settings {
            let json =
                serde_json::to_string(settings).map_err(|e| StoreError::Internal(e.to_string()))?;
            exec(
                tx,
                "UPDATE sessions SET settings = ?2 WHERE id = ?1",
                params![session, json],
            )
            .map_err(map_err)?;
        }
        self.fault(rules::COMMIT_STAGES[3])?;
        if !req.keep_lease {
            exec(
                tx,
                "UPDATE leases SET owner = NULL WHERE session_id = ?1 AND fence = ?2",
                params![session, req.lease.fence as i64],
            )
            .map_err(map_err)?;
        }
        self.fault(rules::COMMIT_STAGES[4])?;
        let outcome =
            serde_json::to_string(&req.outcome).map_err(|e| StoreError::Internal(e.to_string()))?;
        let turn_usage =
            serde_json::to_string(&req.usage).map_err(|e| StoreError::Internal(e.to_string()))?;
        exec(
            tx,
            "INSERT INTO turns (session_id, turn_id, version, outcome, usage, commit_hash,
                                started_at_ms, finished_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                session,
                req.turn_id,
                version as i64,
                outcome,
                turn_usage,
                hash,
                clamp(req.started_at_ms),
                clamp(req.finished_at_ms)
            ],
        )
        .map_err(map_err)?;
        self.fault(rules::COMMIT_STAGES[5])?;
        Ok(CommitReceipt {
            turn_id: req.turn_id.clone(),
            version,
            commit_hash: hash.to_string(),
            replayed: false,
        })
    }
}
