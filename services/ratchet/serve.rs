//! `ratchet serve`: the Restate endpoint with the `Session` object, on our
//! own accept loop so every connection has `TCP_NODELAY` (the SDK's server
//! does not set it, and replies spanning several writes then wait on the
//! peer's delayed ACK).

use crate::StoreArgs;
use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ratchet::restate::Session;
use ratchet::store::DurabilityTier;
use restate_sdk::endpoint::Endpoint;
use restate_sdk::hyper::HyperEndpoint;
use std::net::SocketAddr;

/// Serves the endpoint until SIGTERM or Ctrl-C.
pub async fn serve(
    args: &StoreArgs,
    listen: SocketAddr,
    restate_admin: String,
    with_floor: bool,
) -> Result<()> {
    let store = crate::setup::open_store(args).await?;
    if store.durability_tier() != DurabilityTier::Durable {
        // Serve anyway: every handler refuses with durable_store_required,
        // which tells the caller what is wrong where a crash loop would not.
        tracing::error!(
            backend = store.backend_name(),
            "the durable tier needs a durable store; every turn will be refused"
        );
    }
    let rt = crate::setup::runtime(store, args)?;
    let session = Session::new(rt).with_admin_url(restate_admin);
    let mut builder = Endpoint::builder().bind(session);
    if with_floor {
        builder = builder.bind(ratchet::restate::Floor);
    }
    let endpoint = builder.build();
    let service = HyperEndpoint::new(endpoint);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    // One line on stdout tells a supervisor (or a test) where we listen.
    println!("ratchet serve listening on {addr}");
    tracing::info!(%addr, "serving the Restate endpoint");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    Ok(())
}
