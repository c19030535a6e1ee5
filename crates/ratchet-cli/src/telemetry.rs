//! Traces over OTLP/HTTP: ratchet's spans (invocation, turn, phase, step,
//! model and tool attempts) exported by a batch processor on its own
//! thread. The spans join the trace of the incoming Restate request (see
//! `ratchet::trace`). Only spans leave the process, never log events, and
//! their fields are ids, names and counters: no message text, no secret.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The trace pipeline; [`Traces::shutdown`] flushes what is queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Whether an OTLP variable names an endpoint.
fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

impl Traces {
    /// The pipeline `--otlp-endpoint` (a base URL; `/v1/traces` is added)
    /// or the standard OTLP variables ask for; `None` when neither names an
    /// endpoint, or `OTEL_SDK_DISABLED=true`.
    pub fn from_config(flag: Option<&str>) -> Result<Option<Traces>> {
        if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let from_env =
            env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let endpoint = match flag.map(str::trim) {
            Some("") => anyhow::bail!("--otlp-endpoint is empty"),
            Some(base) => {
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    // Not echoed: an endpoint may carry credentials.
                    anyhow::bail!("--otlp-endpoint must be an http:// or https:// URL");
                }
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            None if from_env => None,
            None => return Ok(None),
        };
        // reqwest 0.13 is built without a crypto provider (see the MCP
        // client): ring is the process default, for an https endpoint.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if let Some(url) = endpoint {
            builder = builder.with_endpoint(url);
        }
        let exporter = builder
            .build()
            .context("cannot set up the OTLP trace exporter")?;
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "ratchet".into());
        let provider = SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service).build())
            .with_batch_exporter(exporter)
            .build();
        Ok(Some(Traces { provider }))
    }

    /// The layer that turns ratchet's spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("ratchet");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("ratchet")
            }))
    }

    /// Exports what is queued and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces not all exported: {e}");
        }
    }
}
