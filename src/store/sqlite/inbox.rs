//! Inbox writes in SQLite: idempotent enqueue and fenced claims.

use super::rows::{exec, row};
use super::schema::map_err;
use super::{SqliteStore, parse_state};
use crate::model::SessionId;
use crate::store::rules;
use crate::store::{
    Claim, ClaimTarget, Enqueued, InboxEntry, InboxState, Lease, NewInboxEntry, StoreResult,
};
use rusqlite::{OptionalExtension, Transaction, params};

impl SqliteStore {
    /// Enqueues `entry` (its payload already encoded) unless its id is known.
    pub(super) fn enqueue_in(
        tx: &Transaction<'_>,
        session: &SessionId,
        entry: &NewInboxEntry,
        payload: &str,
    ) -> StoreResult<Enqueued> {
        Self::ensure_session(tx, session)?;
        let existing: Option<(i64, String, String, Option<i64>)> = row(
            tx,
            "SELECT seq, payload, state, claim_fence FROM inbox WHERE session_id = ?1 AND id = ?2",
            params![session.as_str(), entry.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(map_err)?;
        if let Some((seq, payload, state, fence)) = existing {
            return Ok(Enqueued {
                entry: InboxEntry {
                    id: entry.id.clone(),
                    seq: seq as u64,
                    payload: rules::decode("inbox payload", &payload)?,
                    state: parse_state(&state)?,
                    claim_fence: fence.map(|f| f as u64),
                },
                duplicate: true,
            });
        }
        let seq: i64 = row(
            tx,
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM inbox WHERE session_id = ?1",
            params![session.as_str()],
            |r| r.get(0),
        )
        .map_err(map_err)?;
        exec(tx,
            "INSERT INTO inbox (session_id, seq, id, payload, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
            params![session.as_str(), seq, entry.id, payload],
        )
        .map_err(map_err)?;
        Ok(Enqueued {
            entry: InboxEntry {
                id: entry.id.clone(),
                seq: seq as u64,
                payload: entry.payload.clone(),
                state: InboxState::Pending,
                claim_fence: None,
            },
            duplicate: false,
        })
    }

    /// Claims work under a current lease (see `SessionStore::claim`).
    pub(super) fn claim_in(
        tx: &Transaction<'_>,
        lease: &Lease,
        target: &ClaimTarget,
    ) -> StoreResult<Option<Claim>> {
        Self::require_session(tx, &lease.session_id)?;
        if !rules::lease_is_current(Self::lease_row(tx, &lease.session_id)?.as_ref(), lease) {
            return Err(rules::lease_lost(lease));
        }
        let live = Self::live_entries(tx, &lease.session_id)?;
        let mut taken = rules::select_claim(&live, lease.fence, target);
        for e in taken.iter_mut() {
            exec(tx,
                "UPDATE inbox SET state = 'claimed', claim_fence = ?3 WHERE session_id = ?1 AND id = ?2",
                params![lease.session_id.as_str(), e.id, lease.fence as i64],
            )
            .map_err(map_err)?;
            e.state = InboxState::Claimed;
            e.claim_fence = Some(lease.fence);
        }
        Ok(rules::into_claim(taken))
    }
}
