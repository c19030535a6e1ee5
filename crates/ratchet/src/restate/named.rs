//! Binding a [`Session`] under any object name. The SDK 0.13 macros fix a
//! service's name at compile time and its options cannot rename it, so the
//! object is dispatched here by handler name (as the macro's own dispatcher
//! does) and published with the macro's manifest under the chosen name.
//! Several agents can then share one endpoint, each its own object.

use super::Session;
use restate_sdk::endpoint::ContextInternal;
use restate_sdk::errors::HandlerError;
use restate_sdk::service::macro_support::{ServiceBoxFuture, service_definition};
use restate_sdk::service::{Discoverable, Service, ServiceDefinition};
use std::sync::Arc;

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
        let res = Session::$method(&$session, (&$ctx, metadata).into(), input).await;
        $ctx.handle_handler_result(res.map_err(HandlerError::from));
    }};
    (@call $ctx:ident, $session:ident, $method:ident) => {{
        let (_, metadata) = $ctx.input::<()>().await;
        let res = Session::$method(&$session, (&$ctx, metadata).into()).await;
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
