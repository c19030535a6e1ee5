//! Binding a [`Session`] under any object name. The SDK 0.13 macros fix a
//! service's name at compile time and its options cannot rename it, so the
//! object is dispatched here by handler name (as the macro's own dispatcher
//! does) and published with the macro's manifest under the chosen name.
//! Several agents can then share one endpoint, each its own object.

use super::Session;
use restate_sdk::endpoint::{ContextInternal, InputMetadata};
use restate_sdk::errors::HandlerError;
use restate_sdk::service::macro_support::{ServiceBoxFuture, service_definition};
use restate_sdk::service::{Discoverable, Service, ServiceDefinition};
use std::sync::Arc;
use tracing::Instrument;

/// The handler call's span, joined to the request's trace context.
fn invocation_span(ctx: &ContextInternal, metadata: &InputMetadata) -> tracing::Span {
    // Restate's attempt span when the request carried it, else the
    // caller's context from the invocation's own headers.
    let attempt = super::traced::attempt_traceparent();
    let traceparent = attempt
        .as_deref()
        .or_else(|| metadata.headers.get("traceparent").map(|v| v.as_str()));
    crate::trace::invocation_span(
        ctx.service_name(),
        ctx.handler_name(),
        &metadata.invocation_id,
        traceparent,
    )
}

/// Dispatches the object's handlers; the name lives in the manifest only.
struct NamedSession(Arc<Session>);

macro_rules! dispatch {
    ($ctx:ident, $session:ident, $($handler:literal => $method:ident($($input:tt)?)),* $(,)?) => {
        match $ctx.handler_name() {
            $($handler => {
                dispatch!(@call $ctx, $session, $method $(, $input)?)
            })*
            _ => {
                return Err(restate_sdk::endpoint::Error::unknown_handler(
                    $ctx.service_name(),
                    $ctx.handler_name(),
                ))
            }
        }
    };
    (@call $ctx:ident, $session:ident, $method:ident, input) => {{
        let (input, metadata) = $ctx.input().await;
        let span = invocation_span(&$ctx, &metadata);
        let res = Session::$method(&$session, (&$ctx, metadata).into(), input)
            .instrument(span)
            .await;
        $ctx.handle_handler_result(res.map_err(HandlerError::from));
    }};
    (@call $ctx:ident, $session:ident, $method:ident) => {{
        let (_, metadata) = $ctx.input::<()>().await;
        let span = invocation_span(&$ctx, &metadata);
        let res = Session::$method(&$session, (&$ctx, metadata).into())
            .instrument(span)
            .await;
        $ctx.handle_handler_result(res.map_err(HandlerError::from));
    }};
}

impl Service for NamedSession {
    type Future = ServiceBoxFuture;

    fn handle(&self, ctx: ContextInternal) -> Self::Future {
        let session = Arc::clone(&self.0);
        Box::pin(async move {
            dispatch!(ctx, session,
                "turn" => turn(input),
                "submit" => submit(input),
                "steer" => steer(input),
                "drain" => drain(input),
                "configure" => configure(input),
                "cancel" => cancel(input),
                "approve" => approve(input),
                "complete_tool" => complete_tool(input),
                "view" => view(input),
            );
            ctx.end();
            Ok(())
        })
    }
}

/// The object as a service definition named by [`Session::name`].
pub fn definition(session: Session) -> ServiceDefinition {
    let mut manifest = <Session as Discoverable>::discover();
    manifest.name = session
        .name()
        .to_string()
        .try_into()
        .expect("object names are checked when set");
    let mut handlers: Vec<&str> = manifest.handlers.iter().map(|h| h.name.as_str()).collect();
    handlers.sort_unstable();
    debug_assert_eq!(
        handlers,
        [
            "approve",
            "cancel",
            "complete_tool",
            "configure",
            "drain",
            "steer",
            "submit",
            "turn",
            "view"
        ]
    );
    service_definition(NamedSession(Arc::new(session)), manifest)
}
