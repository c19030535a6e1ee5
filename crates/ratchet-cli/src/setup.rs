//! Building what commands need: logging, the store, the model, the runtime.

use crate::StoreArgs;
use anyhow::{Context, Result, bail};
use ratchet::clock;
use ratchet::engine::{EngineConfig, Runtime};
use ratchet::plugins::PluginSet;
use ratchet::store::prelude::*;
use ratchet::store::rules::StoreOptions;
use ratchet::store::{
    MemoryStore, PostgresStore, SqliteStore, SqliteSync, SslMode, redact_postgres_url,
};
use ratchet::tools::builtin_registry;
use std::path::Path;
use std::sync::Arc;

/// Logs to stderr, filtered by `RATCHET_LOG` (default `warn`), coloured
/// only when stderr is a terminal and `NO_COLOR` is unset: a log file or a
/// collector gets plain lines. With an OTLP endpoint (`--otlp-endpoint`,
/// or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), ratchet's spans are also exported
/// as traces; `RATCHET_LOG` does not filter those.
pub fn init_logging(otlp_endpoint: Option<&str>) -> Result<Option<crate::telemetry::Traces>> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RATCHET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // RATCHET_LOG_SPANS=1 prints each span's busy (our CPU) and idle
    // (waiting, e.g. on the orchestrator) time when it closes: a per-phase
    // profile of a turn.
    let spans = if std::env::var("RATCHET_LOG_SPANS").is_ok_and(|v| v == "1") {
        tracing_subscriber::fmt::format::FmtSpan::CLOSE
    } else {
        tracing_subscriber::fmt::format::FmtSpan::NONE
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_span_events(spans)
        .with_ansi(ansi)
        // Every log line passes the redaction layer on its way out.
        .with_writer(|| ratchet::secrets::RedactingLine::new(std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    let traces = crate::telemetry::Traces::from_config(otlp_endpoint)?;
    let layer = traces.as_ref().map(|t| t.layer());
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(layer)
        .try_init();
    Ok(traces)
}

/// Opens the store `--store` names, else the SQLite file `--db` names.
pub async fn open_store(args: &StoreArgs) -> Result<Arc<dyn SessionStore>> {
    let Some(spec) = args.store.as_deref() else {
        return open_sqlite(&args.db, &args.sqlite_sync);
    };
    if spec == "memory" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return open_sqlite(Path::new(path), &args.sqlite_sync);
    }
    if let Some(url) = spec.strip_prefix("postgres:") {
        // `postgres:postgres://...` or `postgres://...` after the prefix;
        // the URL is never printed, only its redacted form.
        let url = if url.starts_with("//") {
            format!("postgres:{url}")
        } else {
            url.to_string()
        };
        let mode = args
            .pg_sslmode
            .as_deref()
            .map(str::parse::<SslMode>)
            .transpose()?;
        let store = PostgresStore::connect_with_tls(
            &url,
            mode,
            args.pg_ssl_root_cert.clone(),
            StoreOptions::default(),
            args.pg_pool_size,
        )
        .await
        .with_context(|| {
            format!(
                "cannot open the PostgreSQL store {}",
                redact_postgres_url(&url)
            )
        })?;
        return Ok(Arc::new(store));
    }
    bail!(
        "unknown store '{}': use sqlite:PATH, postgres:URL or memory",
        spec.split(':').next().unwrap_or("")
    )
}

/// Opens a SQLite store, creating its directory when needed.
fn open_sqlite(path: &Path, sync: &str) -> Result<Arc<dyn SessionStore>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
    }
    let options = StoreOptions {
        sqlite_sync: sqlite_sync(sync)?,
        ..StoreOptions::default()
    };
    Ok(Arc::new(SqliteStore::open_with(path, options)?))
}

fn sqlite_sync(spec: &str) -> Result<SqliteSync> {
    match spec {
        "full" => Ok(SqliteSync::Full),
        "normal" => Ok(SqliteSync::Normal),
        other => bail!("unknown --sqlite-sync '{other}': use full or normal"),
    }
}

/// The runtime for the inline tier.
pub fn runtime(store: Arc<dyn SessionStore>, args: &StoreArgs) -> Result<Runtime> {
    let tools = builtin_registry();
    if args.lease_ttl_ms < 100 {
        bail!("--lease-ttl-ms must be at least 100");
    }
    if args.model_timeout_ms == 0 || args.tool_timeout_ms == 0 {
        bail!("--model-timeout-ms and --tool-timeout-ms must be positive");
    }
    if args.max_step_record_bytes < 4096 {
        bail!("--max-step-record-bytes must be at least 4096");
    }
    if args.approval_timeout_ms == 0 {
        bail!("--approval-timeout-ms must be positive");
    }
    let known = tools.names();
    if let Some(t) = args.approve_tools.iter().find(|t| !known.contains(t)) {
        bail!(
            "--approve-tools names '{t}', which is not a tool ({})",
            known.join(", ")
        );
    }
    Ok(Runtime {
        store,
        model: crate::models::model_from_spec(&args.model, &tools, None)?,
        tools,
        plugins: PluginSet::new(),
        clock: clock::system(),
        config: EngineConfig {
            lease_ttl_ms: args.lease_ttl_ms,
            model_timeout_ms: args.model_timeout_ms,
            tool_timeout_ms: args.tool_timeout_ms,
            max_step_record_bytes: args.max_step_record_bytes,
            effect_ledger: args.effect_ledger,
            approval: ratchet::engine::ApprovalPolicy {
                tools: args.approve_tools.iter().cloned().collect(),
                timeout_ms: args.approval_timeout_ms,
            },
            ..EngineConfig::default()
        },
    })
}
