//! Starting a turn in SQLite: idempotent enqueue, the lease, fenced claims
//! and the head, each usable inside one transaction.

use super::SqliteStore;
use super::rows::{exec, row};
use super::schema::map_err;
use crate::model::SessionId;
use crate::store::rules;
use crate::store::{
    Claim, ClaimTarget, Enqueued, InboxEntry, InboxState, Lease, NewInboxEntry, SessionHead,
    StoreError, StoreResult,
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
        let existing = Self::entry_by_id(tx, session, &entry.id)?;
        let turn_taken = match (&existing, &entry.turn_id) {
            (None, Some(turn_id)) => row(
                tx,
                "SELECT EXISTS (SELECT 1 FROM inbox WHERE session_id = ?1 AND turn_id = ?2)
                     OR EXISTS (SELECT 1 FROM turns WHERE session_id = ?1 AND turn_id = ?2)",
                params![session.as_str(), turn_id],
                |r| r.get::<_, bool>(0),
            )
            .map_err(map_err)?,
            _ => false,
        };
        if let Some(found) = rules::decide_enqueue(entry, existing, turn_taken)? {
            return Ok(found);
        }
        let seq: i64 = row(
            tx,
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM inbox WHERE session_id = ?1",
            params![session.as_str()],
            |r| r.get(0),
        )
        .map_err(map_err)?;
        exec(
            tx,
            "INSERT INTO inbox (session_id, seq, id, payload, state, turn_id, steer)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
            params![
                session.as_str(),
                seq,
                entry.id,
                payload,
                entry.turn_id,
                entry.payload.is_steer()
            ],
        )
        .map_err(map_err)?;
        Ok(Enqueued {
            entry: InboxEntry {
                id: entry.id.clone(),
                seq: seq as u64,
                payload: entry.payload.clone(),
                state: InboxState::Pending,
                claim_fence: None,
                turn_id: entry.turn_id.clone(),
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
        let live = Self::claimable(tx, &lease.session_id)?;
        let mut taken = rules::select_claim(&live, lease.fence, target);
        let orphaned_from = rules::orphaned_from(&taken, lease.fence);
        for e in taken.iter_mut() {
            exec(tx,
                "UPDATE inbox SET state = 'claimed', claim_fence = ?3 WHERE session_id = ?1 AND id = ?2",
                params![lease.session_id.as_str(), e.id, lease.fence as i64],
            )
            .map_err(map_err)?;
            e.state = InboxState::Claimed;
            e.claim_fence = Some(lease.fence);
        }
        Ok(rules::into_claim(taken, orphaned_from))
    }

    /// Takes the lease (see `SessionStore::acquire_lease`).
    pub(super) fn acquire_in(
        tx: &Transaction<'_>,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Lease> {
        Self::ensure_session(tx, session)?;
        let current = Self::lease_row(tx, session)?;
        let acquired = rules::decide_acquire(session, current.as_ref(), owner, ttl_ms, now)?;
        if acquired.requeue_claims {
            exec(
                tx,
                "UPDATE inbox SET state = 'pending', claim_fence = NULL
                 WHERE session_id = ?1 AND state = 'claimed'",
                params![session.as_str()],
            )
            .map_err(map_err)?;
        }
        exec(
            tx,
            "INSERT INTO leases (session_id, owner, fence, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (session_id) DO UPDATE SET owner = ?2, fence = ?3, expires_at_ms = ?4",
            params![
                session.as_str(),
                owner,
                acquired.lease.fence as i64,
                acquired.lease.expires_at_ms as i64
            ],
        )
        .map_err(map_err)?;
        Ok(acquired.lease)
    }

    /// Reads the session head.
    pub(super) fn head_in(
        c: &rusqlite::Connection,
        session: &SessionId,
    ) -> StoreResult<SessionHead> {
        let (version, settings, usage): (i64, String, String) = row(
            c,
            "SELECT version, settings, usage FROM sessions WHERE id = ?1",
            params![session.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(map_err)?
        .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
        Ok(SessionHead {
            session_id: session.clone(),
            version: version as u64,
            settings: rules::decode("session settings", &settings)?,
            usage: rules::decode("session usage", &usage)?,
        })
    }
}
