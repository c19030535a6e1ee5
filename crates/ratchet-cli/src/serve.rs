//! `ratchet serve`: the Restate endpoint with the `Session` object, served
//! by the library's accept loop (`TCP_NODELAY`, graceful shutdown).

use crate::StoreArgs;
use anyhow::{Context, Result, bail};
use ratchet::AgentError;
use ratchet::restate::{DurableOptions, OnMaxAttempts, Session};
use ratchet::store::DurabilityTier;
use restate_sdk::endpoint::Endpoint;
use std::net::SocketAddr;
use std::time::Duration;

/// What `serve` was asked for, beyond the store and model.
pub struct ServeSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the observation API listens, if anywhere.
    pub http: Option<SocketAddr>,
    /// The bearer token it requires, if any.
    pub http_token: Option<String>,
    /// The agents file, if any.
    pub agents: Option<std::path::PathBuf>,
    /// The Restate admin API (`cancel`).
    pub admin: ratchet::restate::admin::AdminConfig,
    /// Restate request identity public keys; empty: requests unchecked.
    pub identity_keys: Vec<String>,
    /// Also bind the `Floor` benchmark object.
    pub with_floor: bool,
    /// How long in-flight handlers may run on after SIGTERM or Ctrl-C.
    pub shutdown_timeout: Duration,
    /// The object's retry policy and timers.
    pub durable: DurableOptions,
}

/// The retry policy the flags ask for.
pub fn durable_options(
    max_interval_ms: u64,
    max_attempts: Option<u64>,
    on_max: &str,
    inactivity_timeout_ms: u64,
) -> Result<DurableOptions> {
    if inactivity_timeout_ms < 1000 {
        bail!("--inactivity-timeout-ms must be at least 1000");
    }
    let on_max_attempts = match on_max {
        "pause" => OnMaxAttempts::Pause,
        "kill" => OnMaxAttempts::Kill,
        other => bail!("unknown --on-max-attempts '{other}': use pause or kill"),
    };
    if max_interval_ms == 0 || max_attempts == Some(0) {
        bail!("--retry-max-interval-ms and --retry-max-attempts must be positive");
    }
    Ok(DurableOptions {
        max_interval: Duration::from_millis(max_interval_ms),
        max_attempts,
        on_max_attempts,
        timer_margin: Duration::from_millis(inactivity_timeout_ms),
        ..DurableOptions::default()
    })
}

/// The Restate request identity public key of an ed25519 private key in
/// PKCS#8 PEM: `publickeyv1_` and the base58 of the raw public key.
pub fn identity_public_key(pem: &std::path::Path) -> Result<String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_file(pem)
        .map_err(|e| anyhow::anyhow!("{} holds no PEM private key: {e}", pem.display()))?;
    let PrivateKeyDer::Pkcs8(der) = key else {
        bail!(
            "{} is not a PKCS#8 key (make one with: openssl genpkey -algorithm ed25519)",
            pem.display()
        );
    };
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|_| anyhow::anyhow!("{} is not an ed25519 key", pem.display()))?;
    use ring::signature::KeyPair;
    Ok(format!(
        "publickeyv1_{}",
        bs58::encode(pair.public_key().as_ref()).into_string()
    ))
}

/// Serves the endpoint until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(args: &StoreArgs, settings: ServeSettings) -> Result<()> {
    let mut builder = Endpoint::builder();
    for key in &settings.identity_keys {
        builder = builder.identity_key(key.trim()).map_err(|e| {
            anyhow::anyhow!(
                "invalid_identity_key: '{}' is not a Restate request identity public key (publickeyv1_…): {e}",
                key.trim()
            )
        })?;
    }
    if settings.identity_keys.is_empty() && !settings.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %settings.listen,
            "listening beyond loopback without --identity-key: anyone who can reach this port can register it with their own restate-server and call every handler"
        );
    }
    let store = crate::setup::open_store(args).await?;
    if store.durability_tier() != DurabilityTier::Durable {
        // Serve anyway: every handler refuses with durable_store_required,
        // which tells the caller what is wrong where a crash loop would not.
        tracing::error!(
            backend = store.backend_name(),
            "the durable tier needs a durable store; every turn will be refused"
        );
    }
    let observe = match settings.http {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--http)"))?;
            let mut api = ratchet::observe::ObserveApi::new(store.clone());
            match settings.http_token.as_deref() {
                Some("") => bail!("--http-token is empty"),
                Some(token) => api = api.bearer_token(token),
                None if !addr.ip().is_loopback() => tracing::warn!(
                    %addr,
                    "the observation API listens beyond loopback without --http-token: anyone who can reach it reads every session"
                ),
                None => {}
            }
            let at = listener.local_addr()?;
            Some((
                at,
                tokio::spawn(ratchet::observe::serve_observe(
                    api,
                    listener,
                    ratchet::restate::termination(),
                )),
            ))
        }
    };
    for agent in crate::agents::load(settings.agents.as_deref(), store, args)? {
        let agent = agent
            .live_events(settings.http.is_some())
            .admin(settings.admin.clone())
            .durable_options(settings.durable.clone());
        tracing::info!(agent = agent.name(), "binding agent");
        let session = match agent.session() {
            Ok(session) => session,
            // Bind it anyway: every handler refuses with
            // durable_store_required, which tells the caller what is wrong
            // where a crash loop would not.
            Err(AgentError::DurableStoreRequired { .. }) => Session::new(agent.runtime()?)
                .with_name(agent.name())
                .with_options(settings.durable.clone()),
            Err(e) => return Err(e.into()),
        };
        builder = builder.bind(session.definition());
    }
    if settings.with_floor {
        builder = builder.bind(ratchet_testkit::Floor);
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // One line on stdout tells a supervisor (or a test) where we listen.
    println!("ratchet serve listening on {addr}");
    if let Some((at, _)) = &observe {
        // After the endpoint's line, which supervisors read first.
        println!("ratchet http (observation API) on {at}");
    }
    tracing::info!(%addr, "serving the Restate endpoint");
    let report = ratchet::restate::serve(
        builder.build(),
        listener,
        ratchet::restate::termination(),
        settings.shutdown_timeout,
    )
    .await;
    if let Some((_, task)) = observe {
        task.abort();
    }
    let cut = report.open - report.finished;
    // Always said, whatever the log level: a supervisor's record of the stop.
    eprintln!(
        "ratchet serve stopped: {} connection(s) open at shutdown, {} finished, {cut} cut at the deadline (Restate retries those)",
        report.open, report.finished
    );
    Ok(())
}
