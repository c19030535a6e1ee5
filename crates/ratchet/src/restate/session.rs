//! The `Session` virtual object, keyed by session id. `turn` and `drain`
//! are exclusive and run turns through the engine's session service;
//! `submit`, `view` and `cancel` are shared. The lease owner is the
//! invocation id, stable across retries, so a re-invoked turn re-acquires
//! its own lease, and one found held by another invocation id belongs to an
//! invocation that has ended (Restate never overlaps exclusive handlers of
//! one key): its claimed input is settled before any later input runs.

use super::RestateJournal;
use super::admin::{AdminClient, AdminConfig};
use super::options::DurableOptions;
use super::reads::RestateReads;
pub use super::wire::{
    ApproveBody, ApproveReply, CancelReply, CompleteToolBody, CompleteToolReply, ConfigureBody,
    ConfigureReply, Empty, Reply, Request, SubmitReply, TurnBody,
};
use crate::ErrorCode;
use crate::engine::{
    Admitted, CancelToken, EngineError, Runtime, SessionReads, Sessions, TurnResult, admit,
    admit_command,
};
use crate::engine::{SessionView, view_of};
use crate::model::{SessionId, TurnId, TurnInput};
use crate::store::{DurabilityTier, StoreError};
use restate_sdk::prelude::*;
use std::time::Duration;

/// The Restate virtual object running a session's turns.
pub struct Session {
    rt: Runtime,
    name: String,
    admin: AdminClient,
    options: DurableOptions,
}

/// The object name a [`Session`] gets unless it is given another.
pub const DEFAULT_OBJECT_NAME: &str = "Session";

/// The store's session id for key `key` of object `object`: the key itself
/// for the default object, else `{object}/{key}`, so two agents in one
/// store never share a session, its history or its lease.
pub fn store_session_id(object: &str, key: &str) -> Result<SessionId, crate::model::IdError> {
    if object == DEFAULT_OBJECT_NAME {
        SessionId::new(key)
    } else {
        SessionId::new(format!("{object}/{key}"))
    }
}

impl Session {
    /// A session object over a runtime whose store must be durable.
    pub fn new(rt: Runtime) -> Self {
        let admin = AdminClient::new(AdminConfig {
            timeout: Duration::from_secs(5),
            ..AdminConfig::new("http://127.0.0.1:9070")
        })
        .expect("the default admin config is valid");
        Session {
            rt,
            name: DEFAULT_OBJECT_NAME.into(),
            admin,
            options: DurableOptions::default(),
        }
    }

    /// The Restate admin API `cancel` uses (default `http://127.0.0.1:9070`,
    /// no token, 5 s timeout). A URL that is not http(s) is ignored with an
    /// error logged; use [`with_admin`](Self::with_admin) to see the error.
    pub fn with_admin_url(self, url: impl Into<String>) -> Self {
        let url = url.into();
        match AdminClient::new(AdminConfig {
            timeout: Duration::from_secs(5),
            ..AdminConfig::new(url)
        }) {
            Ok(admin) => self.with_admin(admin),
            Err(e) => {
                tracing::error!(error = %e, "admin URL refused; keeping the previous one");
                self
            }
        }
    }

    /// The admin API client `cancel` uses (token, timeout, https).
    pub fn with_admin(mut self, admin: AdminClient) -> Self {
        self.admin = admin;
        self
    }

    /// The virtual object's name (default `Session`). Sessions of a named
    /// object live in the store as `{name}/{key}`. The name must be a valid
    /// Restate service name: see [`check_object_name`].
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The runtime its turns run with.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// How Restate retries the object's invocations and times its handlers.
    pub fn with_options(mut self, options: DurableOptions) -> Self {
        self.options = options;
        self
    }

    /// The object as a service definition to bind into an endpoint, with
    /// its retry policy and its handler timers derived from the engine's
    /// model and tool timeouts (see [`DurableOptions::service_options`]).
    pub fn definition(self) -> restate_sdk::service::ServiceDefinition {
        let options = self.options.service_options(&self.rt);
        super::named::definition(self).options(options)
    }

    /// The store session of this object's key `key`.
    pub(super) fn session_of(&self, key: &str) -> Result<SessionId, HandlerError> {
        store_session_id(&self.name, key)
            .map_err(|e| TerminalError::new_with_code(400, format!("invalid_request: {e}")).into())
    }

    /// Sends `drain` to this object's own key (one-way).
    fn send_drain<'c>(&self, ctx: &impl ContextClient<'c>, key: &str) {
        let target = restate_sdk::context::RequestTarget::object(&self.name, key, "drain");
        ctx.request::<Empty, ()>(target, Empty::none()).send();
    }
}

/// Checks an object name: 1 to 64 ASCII letters, digits and `_`, starting
/// with a letter, as Restate service names must be.
pub fn check_object_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_well
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "'{name}' is not a valid object name: use 1 to 64 ASCII letters, digits and '_', starting with a letter"
        ));
    }
    Ok(())
}

/// An error message that names its code once.
fn coded(code: ErrorCode, message: String) -> String {
    if message.starts_with(code.as_str()) {
        message
    } else {
        format!("{code}: {message}")
    }
}

fn handler_error(e: EngineError) -> HandlerError {
    let code = e.code();
    let message = crate::secrets::redact_string(coded(code, e.to_string()));
    if e.is_retryable() {
        return HandlerError::from(message);
    }
    TerminalError::new_with_code(code.http_status(), message).into()
}

pub(super) fn store_err(e: StoreError) -> HandlerError {
    handler_error(EngineError::Store(e))
}

/// Whether a turn only settled an ended invocation's input.
fn is_settled_orphan(result: &TurnResult) -> bool {
    matches!(&result.outcome, crate::model::TurnOutcome::Stopped(s)
        if s.message == crate::engine::driver::ORPHANED)
}

pub(super) fn terminal_to_engine(e: TerminalError) -> EngineError {
    EngineError::InvalidRequest(e.message().to_string())
}

impl Session {
    /// Refuses to run on a store that does not survive crashes.
    fn require_durable(&self) -> Result<(), HandlerError> {
        if self.rt.store.durability_tier() != DurabilityTier::Durable {
            return Err(handler_error(EngineError::DurableStoreRequired {
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
        let Some(lease) = self.rt.store.current_lease(&sid).await.map_err(store_err)? else {
            return reply(false, None, "no turn is running");
        };
        if !lease.owner.starts_with("inv_") {
            return reply(false, None, "the running turn is not a Restate invocation");
        }
        let status = self.admin.cancel(&lease.owner).await.map_err(|e| {
            let code = ErrorCode::RestateAdminUnreachable;
            TerminalError::new_with_code(code.http_status(), format!("{code}: {e}"))
        })?;
        if status.is_success() {
            reply(true, Some(lease.owner), "cancellation requested")
        } else if status.as_u16() == 404 {
            reply(
                false,
                Some(lease.owner),
                "the invocation is no longer running",
            )
        } else {
            let code = ErrorCode::RestateAdminError;
            Err(TerminalError::new_with_code(
                code.http_status(),
                format!("{code}: the Restate admin API answered {status} to cancel"),
            )
            .into())
        }
    }

    /// Admits an input for this object's key `key`, refusing it (400/413,
    /// nothing stored) when it could never run; `derived` is its input id
    /// when it has none.
    fn admit_at(
        &self,
        key: &str,
        input: TurnInput,
        derived: String,
    ) -> Result<(SessionId, Admitted), HandlerError> {
        self.require_durable()?;
        let sid = self.session_of(key)?;
        let admitted =
            admit(input, self.rt.config.max_input_bytes, || derived).map_err(handler_error)?;
        Ok((sid, admitted))
    }

    /// Runs through the session service as this invocation.
    fn sessions<'a>(
        &'a self,
        journal: &'a RestateJournal<'a>,
        reads: &'a RestateReads<'a>,
        owner: &'a str,
        cancel: &'a CancelToken,
    ) -> Sessions<'a> {
        Sessions {
            rt: &self.rt,
            journal,
            reads,
            owner,
            cancel,
        }
    }
}

// Journals of completed turns are kept a day so `ratchet export` and
// `ratchet replay --invocation` can read them after the fact. The retry
// policy and the handler timers are set at bind time: see `definition`.
#[restate_sdk::object(journal_retention = "1 day")]
impl Session {
    /// Runs one turn now (following agent frames) and returns it. Earlier
    /// inputs of the session run first; an input id that already committed
    /// answers with its committed result.
    #[handler]
    pub(super) async fn turn(
        &self,
        mut ctx: ObjectContext<'_>,
        body: Request<TurnBody>,
    ) -> Result<Reply<TurnResult>, HandlerError> {
        let derived = format!("in-{}", ctx.rand_uuid());
        let (sid, admitted) = self.admit_at(ctx.key(), body.into_inner()?.input, derived)?;
        let owner = ctx.invocation_id().to_string();
        let (journal, reads) = (RestateJournal::new(&ctx), RestateReads::new(&ctx, &self.rt));
        let cancel = CancelToken::new();
        // The claim step enqueues the input itself: one journaled step less.
        let result = self
            .sessions(&journal, &reads, &owner, &cancel)
            .run_input(
                &sid,
                &admitted.input_id,
                &admitted.turn_id,
                Some(&admitted.input),
            )
            .await
            .map_err(handler_error)?;
        Ok(Reply(result))
    }

    /// Adds an input to the inbox (idempotent by input id) and asks `drain`
    /// to run it; returns at once. Refuses, storing nothing, an input that
    /// could never run, an id already used for other content, and a turn id
    /// already taken.
    #[handler]
    pub(super) async fn submit(
        &self,
        ctx: SharedObjectContext<'_>,
        body: Request<TurnBody>,
    ) -> Result<Reply<SubmitReply>, HandlerError> {
        self.enqueue_input(ctx, body, false).await
    }

    /// Adds a user message to the running turn: its next model call takes
    /// it, after the tool results before that call, and the model sees it
    /// (a `steered` event records which call). With no turn running, or
    /// none that calls the model again, it runs as an ordinary input in its
    /// FIFO place. The same input body and checks as `submit`.
    #[handler]
    pub(super) async fn steer(
        &self,
        ctx: SharedObjectContext<'_>,
        body: Request<TurnBody>,
    ) -> Result<Reply<SubmitReply>, HandlerError> {
        self.enqueue_input(ctx, body, true).await
    }

    /// Runs the earliest live input as a turn, then sends the next `drain`
    /// while more wait. An input whose invocation ended without committing
    /// is settled first, and does not count: the drain goes on to the next.
    #[handler]
    pub(super) async fn drain(
        &self,
        ctx: ObjectContext<'_>,
        input: Empty,
    ) -> Result<Reply<Option<TurnResult>>, HandlerError> {
        input.check()?;
        self.require_durable()?;
        let sid = self.session_of(ctx.key())?;
        let owner = ctx.invocation_id().to_string();
        let (journal, reads) = (RestateJournal::new(&ctx), RestateReads::new(&ctx, &self.rt));
        let cancel = CancelToken::new();
        let sessions = self.sessions(&journal, &reads, &owner, &cancel);
        let mut ran = None;
        while let Some(next) = reads.next_input(&sid).await.map_err(handler_error)? {
            if ran.is_some() {
                // More wait: the next drain runs the next one.
                self.send_drain(&ctx, ctx.key());
                break;
            }
            let turn = TurnId::new(&next.turn_id)
                .map_err(|e| handler_error(EngineError::InvalidRequest(e.to_string())))?;
            let result = sessions
                .run_input(&sid, &next.input_id, &turn, None)
                .await
                .map_err(handler_error)?;
            if !is_settled_orphan(&result) {
                ran = Some(result);
            }
        }
        Ok(Reply(ran))
    }

    /// Queues a session command (a system prompt, a context limit): it
    /// applies when the session's next input is claimed, so a running turn
    /// never changes under it. Idempotent by `command_id`.
    #[handler]
    pub(super) async fn configure(
        &self,
        mut ctx: SharedObjectContext<'_>,
        body: Request<ConfigureBody>,
    ) -> Result<Reply<ConfigureReply>, HandlerError> {
        self.require_durable()?;
        let sid = self.session_of(ctx.key())?;
        let derived = format!("cmd-{}", ctx.rand_uuid());
        let ConfigureBody {
            command,
            command_id,
        } = body.into_inner()?;
        let max = self.rt.config.max_input_bytes;
        let entry = admit_command(command, command_id, max, || derived).map_err(handler_error)?;
        let store = self.rt.store.clone();
        let reply = ctx
            .run(|| async move {
                let enqueued = store.enqueue(&sid, entry).await.map_err(store_err)?;
                Ok(Json(ConfigureReply {
                    command_id: enqueued.entry.id,
                    duplicate: enqueued.duplicate,
                    position: enqueued.entry.seq,
                }))
            })
            .name("enqueue_command")
            .await?
            .into_inner();
        Ok(Reply(reply))
    }

    /// Asks the running turn to stop: it commits `Stopped(Cancelled)`, keeps
    /// the tool results it has, releases its lease, and the session goes on.
    /// An unknown session is 404.
    #[handler]
    pub(super) async fn cancel(
        &self,
        ctx: SharedObjectContext<'_>,
        input: Empty,
    ) -> Result<Reply<CancelReply>, HandlerError> {
        input.check()?;
        let sid = self.session_of(ctx.key())?;
        let reply = ctx
            .run(|| self.cancel_running(sid.clone()))
            .name("cancel")
            .await?;
        Ok(Reply(reply.into_inner()))
    }

    /// Decides a tool call that waits for approval: `{call_id, decision,
    /// note}`. Idempotent; an unknown call is 404, one already decided
    /// otherwise (or expired) is 409. The waiting turn resumes at once.
    #[handler]
    pub(super) async fn approve(
        &self,
        ctx: SharedObjectContext<'_>,
        body: Request<ApproveBody>,
    ) -> Result<Reply<ApproveReply>, HandlerError> {
        self.require_durable()?;
        Ok(Reply(self.decide(&ctx, body.into_inner()?).await?))
    }

    /// Completes a tool call that answered "pending": `{call_id, result:
    /// {content, is_error?, value?}}`. Idempotent; an unknown call is 404,
    /// one completed otherwise (or expired) is 409. The turn resumes at once.
    #[handler]
    pub(super) async fn complete_tool(
        &self,
        ctx: SharedObjectContext<'_>,
        body: Request<CompleteToolBody>,
    ) -> Result<Reply<CompleteToolReply>, HandlerError> {
        self.require_durable()?;
        Ok(Reply(self.complete(&ctx, body.into_inner()?).await?))
    }

    /// The session's head, its most recent messages and the first page of
    /// its live inputs with their total count: one page, whatever the
    /// history or backlog, capped in bytes. An unknown session is 404.
    #[handler]
    pub(super) async fn view(
        &self,
        ctx: SharedObjectContext<'_>,
        input: Empty,
    ) -> Result<Reply<SessionView>, HandlerError> {
        input.check()?;
        let sid = self.session_of(ctx.key())?;
        let view = view_of(self.rt.store.as_ref(), &sid)
            .await
            .map_err(store_err)?;
        Ok(Reply(view))
    }
}

impl Session {
    /// `submit` and `steer`: admit, enqueue (step `enqueue`), send drains.
    async fn enqueue_input(
        &self,
        mut ctx: SharedObjectContext<'_>,
        body: Request<TurnBody>,
        steer: bool,
    ) -> Result<Reply<SubmitReply>, HandlerError> {
        let derived = format!("in-{}", ctx.rand_uuid());
        let (sid, admitted) = self.admit_at(ctx.key(), body.into_inner()?.input, derived)?;
        let store = self.rt.store.clone();
        let reply = ctx
            .run(|| async move {
                let entry = if steer {
                    admitted.into_steer_entry()
                } else {
                    admitted.into_entry()
                };
                let enqueued = store.enqueue(&sid, entry).await.map_err(store_err)?;
                Ok(Json(SubmitReply {
                    input_id: enqueued.entry.id,
                    duplicate: enqueued.duplicate,
                    position: enqueued.entry.seq,
                }))
            })
            .name("enqueue")
            .await?
            .into_inner();
        // Two drains: the second is a backstop, queued behind the first on
        // this key. Killing an invocation kills what it sent, so a killed
        // drain's own successor never comes; this one, sent by `submit`,
        // still does, and settles the killed drain's input.
        self.send_drain(&ctx, ctx.key());
        self.send_drain(&ctx, ctx.key());
        Ok(Reply(reply))
    }
}
