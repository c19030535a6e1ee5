//! The inbox reads a `Session` handler makes between turns, each a
//! journaled step of its invocation.

use super::session::{store_err, terminal_to_engine};
use crate::engine::service::{read_committed, read_next_input};
use crate::engine::{EngineError, NextInput, Runtime, SessionReads, TurnResult};
use crate::model::SessionId;
use async_trait::async_trait;
use restate_sdk::prelude::*;

/// The inbox reads between turns, each a journaled step of the invocation.
pub(super) struct RestateReads<'a> {
    ctx: &'a ObjectContext<'a>,
    rt: &'a Runtime,
}

impl<'a> RestateReads<'a> {
    pub(super) fn new(ctx: &'a ObjectContext<'a>, rt: &'a Runtime) -> Self {
        RestateReads { ctx, rt }
    }
}

#[async_trait]
impl SessionReads for RestateReads<'_> {
    async fn next_input(&self, session: &SessionId) -> Result<Option<NextInput>, EngineError> {
        let ctx: &ObjectContext<'_> = self.ctx;
        let store = self.rt.store.clone();
        let next = ctx
            .run(|| async move {
                let next = read_next_input(store.as_ref(), session)
                    .await
                    .map_err(store_err)?;
                Ok(Json(next))
            })
            .name("next_input")
            .await
            .map_err(terminal_to_engine)?;
        Ok(next.into_inner())
    }

    async fn committed(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> Result<Option<TurnResult>, EngineError> {
        let ctx: &ObjectContext<'_> = self.ctx;
        let rt = self.rt;
        let found = ctx
            .run(|| async move {
                let found = read_committed(rt, session, turn_id)
                    .await
                    .map_err(store_err)?;
                Ok(Json(found))
            })
            .name("committed")
            .await
            .map_err(terminal_to_engine)?;
        Ok(found.into_inner())
    }
}
