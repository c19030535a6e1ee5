//! Spans that join the orchestrator's traces. Every Restate handler call
//! runs in an `invocation` span carrying the invocation id; with the `otel`
//! feature its parent is the W3C trace context (`traceparent`) of the
//! incoming request, so an OpenTelemetry layer in the process (see
//! `tracing-opentelemetry`) exports ratchet's turn, phase, step and
//! attempt spans into the trace restate-server (or the client calling its
//! ingress) started. Without an OpenTelemetry layer the spans are ordinary
//! `tracing` spans and the header is ignored.

/// The span a handler call of `service`/`handler` runs in.
pub fn invocation_span(
    service: &str,
    handler: &str,
    invocation_id: &str,
    traceparent: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: "ratchet::invocation",
        "invocation",
        otel.name = %format!("{service}/{handler}"),
        otel.kind = "server",
        rpc.service = %service,
        rpc.method = %handler,
        restate.invocation_id = %invocation_id,
    );
    join(&span, traceparent);
    span
}

#[cfg(feature = "otel")]
fn join(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        let cx = opentelemetry::Context::new().with_remote_span_context(remote);
        let _ = span.set_parent(cx);
    }
}

#[cfg(not(feature = "otel"))]
fn join(_: &tracing::Span, _: Option<&str>) {}

/// A `traceparent` header (`00-{trace id}-{parent span id}-{flags}`) as a
/// remote span context; `None` for anything malformed or all-zero, which
/// the W3C spec says to ignore.
#[cfg(feature = "otel")]
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    // Version 00 has exactly four fields; a later version may add more.
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    Some(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        TraceState::default(),
    ))
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn a_traceparent_is_read_and_a_bad_one_ignored() {
        let sc = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} was accepted");
        }
        let unsampled =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
        assert!(!unsampled.expect("valid").is_sampled());
    }
}
