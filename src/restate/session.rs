//! The `Session` virtual object, keyed by session id. `turn` and `drain`
//! are exclusive and run turns; `submit`, `view` and `cancel` are shared.
//! The lease owner is the invocation id, stable across retries, so a
//! re-invoked turn re-acquires its own lease.

use super::RestateJournal;
use crate::engine::{
    CancelToken, EngineError, RunMode, Runtime, TurnRequest, TurnResult, run_turn,
};
use crate::model::{SessionId, TurnInput};
use crate::store::SessionStore;
use crate::store::{
    DurabilityTier, InboxEntry, InboxPayload, InboxState, NewInboxEntry, SessionHead, StoredMessage,
};
use restate_sdk::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Request of `turn` and `submit`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnBody {
    /// The input.
    pub input: TurnInput,
}

/// Reply of `submit`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubmitReply {
    /// The input id (given, or derived from the invocation).
    pub input_id: String,
    /// Whether the id was already known.
    pub duplicate: bool,
    /// FIFO position in the session's inbox.
    pub position: u64,
}

/// Reply of `cancel`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CancelReply {
    /// Whether a running turn was asked to stop.
    pub cancelled: bool,
    /// The invocation running the turn, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// What happened.
    pub message: String,
}

/// Reply of `view`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SessionView {
    /// The head.
    pub head: SessionHead,
    /// The most recent messages (up to 50).
    pub recent_messages: Vec<StoredMessage>,
    /// Inputs and commands not yet completed.
    pub pending: Vec<InboxEntry>,
}

/// The Restate virtual object running a session's turns.
pub struct Session {
    rt: Runtime,
    admin_url: String,
    http: reqwest::Client,
}

impl Session {
    /// A session object over a runtime whose store must be durable.
    pub fn new(rt: Runtime) -> Self {
        Session {
            rt,
            admin_url: "http://127.0.0.1:9070".into(),
            http: reqwest::Client::new(),
        }
    }

    /// The Restate admin API `cancel` uses (default `http://127.0.0.1:9070`).
    pub fn with_admin_url(mut self, url: impl Into<String>) -> Self {
        self.admin_url = url.into().trim_end_matches('/').to_string();
        self
    }
}

fn terminal(e: EngineError) -> HandlerError {
    let code = e.code();
    let status = match code.as_str() {
        "invalid_request" | "input_not_pending" | "durable_store_required" | "invalid_argument" => {
            400
        }
        "unknown_session" => 404,
        "payload_too_large" => 413,
        "journal_mismatch" => 500,
        "session_execution_lease_lost" => 409,
        _ => 500,
    };
    if e.is_retryable() {
        return HandlerError::from(format!("{code}: {e}"));
    }
    TerminalError::new_with_code(status, format!("{code}: {e}")).into()
}

fn store_err(e: crate::store::StoreError) -> HandlerError {
    terminal(EngineError::Store(e))
}

fn session_id(key: &str) -> Result<SessionId, HandlerError> {
    SessionId::new(key).map_err(|e| TerminalError::new_with_code(400, e.to_string()).into())
}

impl Session {
    /// Refuses to run on a store that does not survive crashes.
    fn require_durable(&self) -> Result<(), HandlerError> {
        if self.rt.store.durability_tier() != DurabilityTier::Durable {
            return Err(terminal(EngineError::DurableStoreRequired {
                facet: "session".into(),
                backend: self.rt.store.backend_name().into(),
            }));
        }
        Ok(())
    }

    /// Finds the invocation holding the session's lease and cancels it
    /// through the admin API.
    async fn cancel_running(&self, sid: SessionId) -> HandlerResult<Json<CancelReply>> {
        let reply = |cancelled, invocation_id: Option<String>, message: &str| {
            Ok(Json(CancelReply {
                cancelled,
                invocation_id,
                message: message.to_string(),
            }))
        };
        let lease = match self.rt.store.current_lease(&sid).await {
            Ok(l) => l,
            Err(crate::store::StoreError::UnknownSession(_)) => None,
            Err(e) => return Err(store_err(e)),
        };
        let Some(lease) = lease else {
            return reply(false, None, "no turn is running");
        };
        if !lease.owner.starts_with("inv_") {
            return reply(false, None, "the running turn is not a Restate invocation");
        }
        let url = format!("{}/invocations/{}/cancel", self.admin_url, lease.owner);
        let resp =
            self.http.patch(&url).send().await.map_err(|e| {
                HandlerError::from(format!("cannot reach the Restate admin API: {e}"))
            })?;
        let status = resp.status();
        if status.is_success() {
            reply(true, Some(lease.owner), "cancellation requested")
        } else if status.as_u16() == 404 {
            reply(
                false,
                Some(lease.owner),
                "the invocation is no longer running",
            )
        } else {
            Err(HandlerError::from(format!(
                "the Restate admin API answered {status} to cancel"
            )))
        }
    }

    async fn run(
        &self,
        ctx: &ObjectContext<'_>,
        sid: &SessionId,
        input_id: String,
        trace: Option<String>,
        enqueue: Option<TurnInput>,
    ) -> Result<TurnResult, HandlerError> {
        let request = TurnRequest {
            session_id: sid.clone(),
            turn_id: TurnRequest::turn_id_for(&input_id, trace.as_deref()).map_err(terminal)?,
            input_id,
            owner: ctx.invocation_id().to_string(),
            enqueue,
        };
        let journal = RestateJournal::new(ctx);
        run_turn(
            &self.rt,
            &journal,
            &request,
            &CancelToken::new(),
            RunMode::Live,
        )
        .await
        .map_err(terminal)
    }
}

/// The input id of a request: the caller's, or one derived from the
/// invocation (`ctx.rand_uuid()` is seeded by it, so stable on retry).
fn input_id_of(input: &TurnInput, derived: impl FnOnce() -> String) -> String {
    input
        .input_id
        .clone()
        .unwrap_or_else(|| format!("in-{}", derived()))
}

/// Refuses an input over the size limit before anything is stored.
fn check_size(input: &TurnInput, max_input_bytes: usize) -> Result<(), HandlerError> {
    let size = serde_json::to_vec(input)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_input_bytes {
        return Err(TerminalError::new_with_code(
            413,
            format!(
                "payload_too_large: input is {size} bytes, over the limit of {max_input_bytes}"
            ),
        )
        .into());
    }
    Ok(())
}

/// The body of `submit`'s `enqueue` step. An input over the size limit is
/// refused before anything is stored.
async fn enqueue(
    store: Arc<dyn SessionStore>,
    sid: SessionId,
    mut input: TurnInput,
    input_id: String,
    max_input_bytes: usize,
) -> HandlerResult<Json<SubmitReply>> {
    check_size(&input, max_input_bytes)?;
    input.input_id = Some(input_id.clone());
    let entry = NewInboxEntry {
        id: input_id,
        payload: InboxPayload::Input(input),
    };
    let enqueued = store.enqueue(&sid, entry).await.map_err(store_err)?;
    Ok(Json(SubmitReply {
        input_id: enqueued.entry.id,
        duplicate: enqueued.duplicate,
        position: enqueued.entry.seq,
    }))
}

// Journals of completed turns are kept a day so `ratchet export` and
// `ratchet replay --invocation` can read them after the fact.
#[restate_sdk::object(
    journal_retention = "1 day",
    invocation_retry_policy(
        max_attempts = 30,
        initial_interval = "100ms",
        max_interval = "2s",
        on_max_attempts = "kill"
    )
)]
impl Session {
    /// Runs one turn now (following agent frames) and returns it.
    #[handler]
    async fn turn(
        &self,
        mut ctx: ObjectContext<'_>,
        body: Json<TurnBody>,
    ) -> Result<Json<TurnResult>, HandlerError> {
        self.require_durable()?;
        let sid = session_id(ctx.key())?;
        let TurnBody { input } = body.into_inner();
        check_size(&input, self.rt.config.max_input_bytes)?;
        let trace = input.trace_turn_id.clone();
        let input_id = input_id_of(&input, || ctx.rand_uuid().to_string());
        // The claim step enqueues the input itself: one journaled step less.
        let result = self.run(&ctx, &sid, input_id, trace, Some(input)).await?;
        Ok(Json(result))
    }

    /// Adds an input to the inbox (idempotent by input id) and asks `drain`
    /// to run it; returns at once.
    #[handler]
    async fn submit(
        &self,
        mut ctx: SharedObjectContext<'_>,
        body: Json<TurnBody>,
    ) -> Result<Json<SubmitReply>, HandlerError> {
        self.require_durable()?;
        let sid = session_id(ctx.key())?;
        let TurnBody { input } = body.into_inner();
        let input_id = input_id_of(&input, || ctx.rand_uuid().to_string());
        let reply = ctx
            .run(|| {
                let max = self.rt.config.max_input_bytes;
                enqueue(self.rt.store.clone(), sid.clone(), input, input_id, max)
            })
            .name("enqueue")
            .await?
            .into_inner();
        ctx.object_client::<SessionClient>(ctx.key()).drain().send();
        Ok(Json(reply))
    }

    /// Runs the oldest pending input as a turn; re-sends itself while more wait.
    #[handler]
    async fn drain(
        &self,
        ctx: ObjectContext<'_>,
    ) -> Result<Json<Option<TurnResult>>, HandlerError> {
        self.require_durable()?;
        let sid = session_id(ctx.key())?;
        let next = ctx
            .run(|| async {
                let inbox = self.rt.store.inbox(&sid).await.map_err(store_err)?;
                let next = inbox.into_iter().find(|e| {
                    e.state == InboxState::Pending && matches!(e.payload, InboxPayload::Input(_))
                });
                Ok(Json(next.map(|e| {
                    let trace = match &e.payload {
                        InboxPayload::Input(i) => i.trace_turn_id.clone(),
                        InboxPayload::Command(_) => None,
                    };
                    (e.id, trace)
                })))
            })
            .name("next_input")
            .await?
            .into_inner();
        let Some((input_id, trace)) = next else {
            return Ok(Json(None));
        };
        let result = self.run(&ctx, &sid, input_id, trace, None).await?;
        let more = ctx
            .run(|| async {
                let inbox = self.rt.store.inbox(&sid).await.map_err(store_err)?;
                Ok(inbox.iter().any(|e| {
                    e.state == InboxState::Pending && matches!(e.payload, InboxPayload::Input(_))
                }))
            })
            .name("more_pending")
            .await?;
        if more {
            ctx.object_client::<SessionClient>(ctx.key()).drain().send();
        }
        Ok(Json(Some(result)))
    }

    /// Asks the running turn to stop: it commits `Stopped(Cancelled)`, keeps
    /// the tool results it has, releases its lease, and the session goes on.
    #[handler]
    async fn cancel(
        &self,
        ctx: SharedObjectContext<'_>,
    ) -> Result<Json<CancelReply>, HandlerError> {
        let sid = session_id(ctx.key())?;
        let reply = ctx
            .run(|| self.cancel_running(sid.clone()))
            .name("cancel")
            .await?;
        Ok(reply)
    }

    /// The session's head, recent messages and pending inputs.
    #[handler]
    async fn view(&self, ctx: SharedObjectContext<'_>) -> Result<Json<SessionView>, HandlerError> {
        let sid = session_id(ctx.key())?;
        let head = self.rt.store.head(&sid).await.map_err(store_err)?;
        let all = self
            .rt
            .store
            .messages(&sid, head.version)
            .await
            .map_err(store_err)?;
        let recent = all[all.len().saturating_sub(50)..].to_vec();
        let pending = self.rt.store.inbox(&sid).await.map_err(store_err)?;
        Ok(Json(SessionView {
            head,
            recent_messages: recent,
            pending,
        }))
    }
}
