//! The trace context of the HTTP request restate-server opens for an
//! invocation attempt. Restate's invoker puts its `invocation-attempt`
//! span in that request's `traceparent` header, which the SDK does not
//! hand to handlers (they see the invocation's own headers, from the
//! ingress call). The endpoint is wrapped so that while a request's
//! response body is polled (which is when its handler runs) the header is
//! in a task-local the handler's span reads.

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use restate_sdk::endpoint::ResponseBody;
use restate_sdk::hyper::HyperEndpoint;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

tokio::task_local! {
    static TRACEPARENT: Option<Arc<str>>;
}

/// The `traceparent` of the invocation attempt being polled, if any.
pub(crate) fn attempt_traceparent() -> Option<Arc<str>> {
    TRACEPARENT.try_with(|t| t.clone()).ok().flatten()
}

/// The SDK's hyper service, with each response body polled in the scope
/// of its request's `traceparent`.
#[derive(Clone)]
pub struct TracedEndpoint(HyperEndpoint);

impl TracedEndpoint {
    /// Wraps the SDK's service.
    pub fn new(inner: HyperEndpoint) -> Self {
        TracedEndpoint(inner)
    }
}

impl hyper::service::Service<Request<Incoming>> for TracedEndpoint {
    type Response = Response<TracedBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let traceparent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(Arc::from);
        let Ok(resp) = self.0.call(req).into_inner();
        ready(Ok(resp.map(|body| TracedBody {
            inner: Box::pin(body),
            traceparent,
        })))
    }
}

/// A response body polled in its request's trace context.
pub struct TracedBody {
    inner: Pin<Box<ResponseBody>>,
    traceparent: Option<Arc<str>>,
}

impl Body for TracedBody {
    type Data = <ResponseBody as Body>::Data;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let inner = this.inner.as_mut();
        TRACEPARENT.sync_scope(this.traceparent.clone(), || inner.poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
