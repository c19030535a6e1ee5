//! `ratchet serve`: the Restate endpoint with the `Session` object, on our
//! own accept loop so every connection has `TCP_NODELAY` (the SDK's server
//! does not set it, and replies spanning several writes then wait on the
//! peer's delayed ACK).

use anyhow::{Context, Result, bail};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ratchet::restate::Session;
use ratchet::store::DurabilityTier;
use restate_sdk::endpoint::Endpoint;
use restate_sdk::hyper::HyperEndpoint;
use std::net::SocketAddr;

/// Serves the endpoint until SIGTERM or Ctrl-C.
pub async fn serve(db: &std::path::Path, model: &str, listen: SocketAddr) -> Result<()> {
    let store = crate::setup::open_store(db)?;
    if store.durability_tier() != DurabilityTier::Durable {
        bail!("durable_store_required: the durable tier needs a durable store");
    }
    let rt = crate::setup::runtime(store, model)?;
    let endpoint = Endpoint::builder().bind(Session::new(rt)).build();
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
