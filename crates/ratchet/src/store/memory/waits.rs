//! The memory store's durable waits.

use super::MemoryStore;
use crate::model::wait::{decide, settle, wait_for_call};
use crate::model::{Decided, SessionId, Wait, WaitKind, WaitState};
use crate::store::{StoreError, StoreResult, WaitStore, rules};
use async_trait::async_trait;

#[async_trait]
impl WaitStore for MemoryStore {
    async fn open_wait(&self, session: &SessionId, wait: &Wait) -> StoreResult<Wait> {
        rules::check_wait(wait, self.options.max_payload_bytes)?;
        self.with_session_or_new(session, |s| {
            if let Some(found) = s.waits.iter().find(|w| w.wait_id == wait.wait_id) {
                return Ok(found.clone());
            }
            s.waits.push(wait.clone());
            Ok(wait.clone())
        })
    }

    async fn decide_wait(
        &self,
        session: &SessionId,
        kind: WaitKind,
        call_id: &str,
        value: &serde_json::Value,
    ) -> StoreResult<Decided> {
        let decided = self.with_session(session, |s| {
            let Some(wait) = wait_for_call(&s.waits, kind, call_id) else {
                return Ok(Decided::Unknown);
            };
            let decided = decide(wait, value);
            if let Decided::Recorded(row) = &decided
                && let Some(w) = s.waits.iter_mut().find(|w| w.wait_id == row.wait_id)
            {
                *w = row.clone();
            }
            Ok(decided)
        });
        match decided {
            Err(StoreError::UnknownSession(_)) => Ok(Decided::Unknown),
            other => other,
        }
    }

    async fn settle_wait(
        &self,
        session: &SessionId,
        wait_id: &str,
        woke_with: Option<&serde_json::Value>,
    ) -> StoreResult<Option<Wait>> {
        self.with_session(session, |s| {
            let Some(w) = s.waits.iter_mut().find(|w| w.wait_id == wait_id) else {
                return Ok(None);
            };
            if let Some(row) = settle(w, woke_with) {
                *w = row;
            }
            Ok(Some(w.clone()))
        })
    }

    async fn waits(&self, session: &SessionId, pending_only: bool) -> StoreResult<Vec<Wait>> {
        let all = self.with_session(session, |s| Ok(s.waits.clone()));
        let all = match all {
            Err(StoreError::UnknownSession(_)) => Vec::new(),
            other => other?,
        };
        Ok(all
            .into_iter()
            .filter(|w| !pending_only || w.state == WaitState::Pending)
            .collect())
    }
}
