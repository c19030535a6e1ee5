//! The session service both tiers wrap: run an input as a turn (after every
//! earlier live input, FIFO), run the next live input, and answer an input
//! that already committed with the result it has. The Restate handlers and
//! the inline runner differ only in their journal and in how they read the
//! inbox between turns ([`SessionReads`]: a journaled step on Restate, a
//! plain read inline).

use super::{CancelToken, Deferred, EngineError, RunMode, Runtime, TurnRequest, TurnResult};
use crate::journal::Journal;
use crate::model::{SessionId, TurnId, TurnInput};
use crate::store::{CommitReceipt, InboxEntry, SessionStore, StoreError, rules};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The earliest live input of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextInput {
    /// Its inbox id.
    pub input_id: String,
    /// The turn it runs as.
    pub turn_id: String,
}

/// How a tier reads the store between turns. On Restate each read is a
/// journaled step, so a replayed invocation sees the answer it saw first.
#[async_trait]
pub trait SessionReads: Send + Sync {
    /// The earliest live (pending or orphaned) input, if any.
    async fn next_input(&self, session: &SessionId) -> Result<Option<NextInput>, EngineError>;

    /// The result of a committed turn (with its agent frames).
    async fn committed(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> Result<Option<TurnResult>, EngineError>;
}

/// [`SessionReads`] straight from the store: the inline tier's.
pub struct StoreReads<'a>(pub &'a Runtime);

#[async_trait]
impl SessionReads for StoreReads<'_> {
    async fn next_input(&self, session: &SessionId) -> Result<Option<NextInput>, EngineError> {
        Ok(read_next_input(self.0.store.as_ref(), session).await?)
    }

    async fn committed(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> Result<Option<TurnResult>, EngineError> {
        Ok(read_committed(self.0, session, turn_id).await?)
    }
}

/// Reads the earliest live input. Commands are rare, so a short first page
/// almost always holds it; the whole inbox is read only when it does not.
/// Nothing here grows with the backlog behind the first page.
pub async fn read_next_input(
    store: &dyn SessionStore,
    session: &SessionId,
) -> Result<Option<NextInput>, StoreError> {
    const PAGE: usize = 16;
    let head = match store.live_head(session, PAGE).await {
        Ok(h) => h,
        Err(StoreError::UnknownSession(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let first = match rules::next_live_input(&head) {
        Some(e) => Some(e),
        None if head.len() == PAGE => rules::next_live_input(&store.inbox(session).await?),
        None => None,
    };
    Ok(first.map(|e| NextInput {
        turn_id: turn_id_of(&e),
        input_id: e.id,
    }))
}

/// The turn an inbox entry runs as: stored with it, or (entries written by
/// older builds) derived as it was then. An id that cannot make a turn id
/// gets one derived from its hash, so even such an entry can be settled.
fn turn_id_of(e: &InboxEntry) -> String {
    if let Some(t) = &e.turn_id {
        return t.clone();
    }
    let trace = e.payload.input().and_then(|i| i.trace_turn_id.as_deref());
    TurnRequest::turn_id_for(&e.id, trace)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| {
            format!(
                "turn-h{}",
                &crate::hash::digest_bytes(e.id.as_bytes())[..16]
            )
        })
}

/// Rebuilds the result of a committed turn and its agent frames.
pub async fn read_committed(
    rt: &Runtime,
    session: &SessionId,
    turn_id: &str,
) -> Result<Option<TurnResult>, StoreError> {
    let Ok(root) = TurnId::new(turn_id) else {
        return Ok(None);
    };
    let mut chain = Vec::new();
    for n in 0..=rt.config.max_frames {
        let turn = super::driver::frame_turn_id(&root, n);
        match rt.store.committed_turn(session, turn.as_str()).await? {
            Some(c) => chain.push(c),
            None => break,
        }
    }
    let mut results = chain.into_iter().map(|c| {
        let r = c.record;
        TurnResult {
            session_id: session.to_string(),
            turn_id: r.turn_id.clone(),
            turn_index: r.version.saturating_sub(1),
            outcome: r.outcome,
            messages: c.messages,
            usage: r.usage,
            receipt: CommitReceipt {
                turn_id: r.turn_id,
                version: r.version,
                commit_hash: r.commit_hash,
                replayed: true,
            },
            started_at_ms: r.started_at_ms,
            duration_ms: r.finished_at_ms.saturating_sub(r.started_at_ms),
            frames: Vec::new(),
        }
    });
    let Some(mut first) = results.next() else {
        return Ok(None);
    };
    first.frames = results.collect();
    Ok(Some(first))
}

/// Runs a session's inputs as turns, in FIFO order, as one lease owner.
pub struct Sessions<'a> {
    /// The runtime.
    pub rt: &'a Runtime,
    /// Where the turns' steps are recorded.
    pub journal: &'a dyn Journal,
    /// How the inbox is read between turns.
    pub reads: &'a dyn SessionReads,
    /// The lease owner.
    pub owner: &'a str,
    /// Stops the running turn (it commits `Stopped(Cancelled)`).
    pub cancel: &'a CancelToken,
}

impl Sessions<'_> {
    /// Runs input `input_id` as turn `turn_id` (enqueueing `enqueue` in the
    /// turn's claim step, when given) and returns its result. Earlier live
    /// inputs run first, each as its own turn; an input that committed
    /// before is answered with its committed result.
    pub async fn run_input(
        &self,
        session: &SessionId,
        input_id: &str,
        turn_id: &TurnId,
        enqueue: Option<&TurnInput>,
    ) -> Result<TurnResult, EngineError> {
        loop {
            let request = TurnRequest {
                session_id: session.clone(),
                input_id: input_id.to_string(),
                enqueue: enqueue.cloned(),
                turn_id: turn_id.clone(),
                owner: self.owner.to_string(),
            };
            let err =
                match super::run_turn(self.rt, self.journal, &request, self.cancel, RunMode::Live)
                    .await
                {
                    Ok(result) => return Ok(result),
                    Err(e) => e,
                };
            match err.deferred() {
                Some(Deferred::AlreadyCommitted(turn)) => {
                    return self.reads.committed(session, &turn).await?.ok_or_else(|| {
                        EngineError::InvalidRequest(format!(
                            "input '{input_id}' completed, but its turn '{turn}' is not in the store"
                        ))
                    });
                }
                Some(Deferred::NotNext) => {
                    if self.run_next(session).await?.is_none() {
                        // The earlier input vanished between two reads: an
                        // inline owner took it. Try again later.
                        return Err(EngineError::Store(StoreError::SessionBusy {
                            session: session.to_string(),
                            expires_in_ms: 0,
                        }));
                    }
                }
                None => return Err(err),
            }
        }
    }

    /// Runs the earliest live input, if there is one.
    pub async fn run_next(&self, session: &SessionId) -> Result<Option<TurnResult>, EngineError> {
        let Some(next) = self.reads.next_input(session).await? else {
            return Ok(None);
        };
        let turn =
            TurnId::new(&next.turn_id).map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        Box::pin(self.run_input(session, &next.input_id, &turn, None))
            .await
            .map(Some)
    }
}
