//! The observation listener: a plain HTTP/1.1 server beside the Restate
//! endpoint (`ratchet serve --http ADDR`, or [`serve_observe`] in a team's
//! own binary) that a browser or `curl -N` can read.
//!
//! * `GET /sessions/{id}/events`: the session's events as Server-Sent
//!   Events. Each event's SSE `id` is its position in the session's log
//!   (the store's cursor, replay-safe: a replayed turn never appends an
//!   event twice), so a client that reconnects with `Last-Event-ID` (or
//!   `?after=N`) gets exactly the events after the last one it saw. The
//!   stream stays open and follows the log.
//! * `GET /sessions/{id}`: the session's view as JSON (the `view` handler's
//!   reply).
//! * `GET /metrics`: the process's metrics, Prometheus text format
//!   ([`crate::metrics`]).
//! * `GET /sessions/{id}/timeline`: an HTML page drawing each turn's steps
//!   on a time axis from the event stream (`step_ran` events), live.
//!
//! The stream also carries the session's live output ([`crate::live`]):
//! `model_delta` and `model_attempt_reset` events, with no id, never
//! stored and never sent twice.
//!
//! A session id holding `/` (`agent/key`) is written as is or with `%2F`.
//! With a bearer token set, every route answers 401 without
//! `Authorization: Bearer <token>` (or `?access_token=<token>`, for a
//! browser's `EventSource`). Errors are JSON `{code, message}`.

use crate::ErrorCode;
use crate::model::SessionId;
use crate::store::{SessionStore, StoreError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

type Body = BoxBody<Bytes, Infallible>;

/// The timeline page: one static file, no build step; it reads the event
/// stream and the view beside it.
const TIMELINE: &str = include_str!("timeline.html");

/// Events read per store query while catching up.
const PAGE: usize = 200;
/// An SSE comment this often keeps idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the listener serves, and to whom.
#[derive(Clone)]
pub struct ObserveApi {
    store: Arc<dyn SessionStore>,
    token: Option<Arc<str>>,
    poll: Duration,
}

impl ObserveApi {
    /// Serves the sessions of `store`, to anyone who can reach it.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        ObserveApi {
            store,
            token: None,
            poll: Duration::from_millis(200),
        }
    }

    /// Requires `Authorization: Bearer <token>` (registered as a secret, so
    /// no log line shows it).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        let _ = crate::secrets::register("the observation listener's bearer token", &token);
        self.token = Some(token.into());
        self
    }

    /// How often an open event stream looks for new events (default 200 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        // A browser's EventSource cannot set a header: the timeline page
        // passes the token as `?access_token=` instead.
        let from_query = || {
            let query = req.uri().query().unwrap_or("");
            query
                .split('&')
                .find_map(|p| p.strip_prefix("access_token="))
                .map(percent_decode)
        };
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .or_else(from_query)
            .unwrap_or_default();
        // Compared in time independent of where they differ.
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidRequest,
                "only GET is served here",
            );
        }
        if !self.authorized(&req) {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "a bearer token is required (Authorization: Bearer <token>)",
            );
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
        let path = req.uri().path().to_string();
        if path == "/metrics" {
            return self.metrics().await;
        }
        let Some(rest) = path.strip_prefix("/sessions/") else {
            return error(
                StatusCode::NOT_FOUND,
                ErrorCode::InvalidRequest,
                "no such route",
            );
        };
        if let Some(raw) = rest.strip_suffix("/timeline") {
            if let Err(e) = SessionId::new(percent_decode(raw)) {
                return error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    &e.to_string(),
                );
            }
            return bytes_of(StatusCode::OK, "text/html; charset=utf-8", TIMELINE);
        }
        let (raw, events) = match rest.strip_suffix("/events") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        let session = match SessionId::new(percent_decode(raw)) {
            Ok(s) => s,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    &e.to_string(),
                );
            }
        };
        if events {
            match after(&req) {
                Ok(cursor) => self.events(session, cursor),
                Err(message) => error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, &message),
            }
        } else {
            self.view(&session).await
        }
    }

    /// The process's metrics, with the store's inbox depth when it can be
    /// read (a store outage leaves the gauge out, not the scrape).
    async fn metrics(&self) -> Response<Body> {
        let depth = self.store.live_inputs_total().await.ok();
        let text = crate::metrics::render(depth);
        bytes_of(StatusCode::OK, "text/plain; version=0.0.4", text)
    }

    async fn view(&self, session: &SessionId) -> Response<Body> {
        match crate::engine::view_of(self.store.as_ref(), session).await {
            Ok(view) => json(StatusCode::OK, &view),
            Err(e @ StoreError::UnknownSession(_)) => {
                error(StatusCode::NOT_FOUND, e.code(), &e.to_string())
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.code(), &e.to_string()),
        }
    }

    fn events(&self, session: SessionId, mut cursor: u64) -> Response<Body> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        let store = self.store.clone();
        let poll = self.poll;
        tokio::spawn(async move {
            let send = |text: String| {
                let tx = tx.clone();
                async move { tx.send(Ok(Frame::data(Bytes::from(text)))).await.is_ok() }
            };
            // Subscribed before the first byte goes out, so a client that
            // has read it misses no live output.
            let mut live = crate::live::subscribe();
            if !send("retry: 1000\n\n".into()).await {
                return;
            }
            let mut last_sent = tokio::time::Instant::now();
            let mut next_poll = tokio::time::Instant::now();
            loop {
                // Live output published before this poll goes out before
                // the stored events the poll reads: a model step's tokens
                // precede its record and the turn's commit.
                loop {
                    match live.try_recv() {
                        Ok(ev) => {
                            if ev.session_id == session.as_str() && !send(live_frame(&ev)).await {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                if tokio::time::Instant::now() >= next_poll {
                    next_poll = tokio::time::Instant::now() + poll;
                    let batch = match store.events_after(&session, cursor, PAGE).await {
                        Ok(b) => b,
                        Err(StoreError::UnknownSession(_)) => Vec::new(),
                        Err(e) => {
                            let body =
                                serde_json::json!({"code": e.code(), "message": e.to_string()});
                            if !send(format!("event: error\ndata: {body}\n\n")).await {
                                return;
                            }
                            next_poll =
                                tokio::time::Instant::now() + poll.max(Duration::from_secs(1));
                            Vec::new()
                        }
                    };
                    if batch.len() == PAGE {
                        next_poll = tokio::time::Instant::now();
                    }
                    for e in batch {
                        cursor = e.cursor;
                        let data = serde_json::to_string(&e).unwrap_or_default();
                        let kind = serde_json::to_value(&e.event.kind)
                            .ok()
                            .and_then(|v| v["type"].as_str().map(str::to_string))
                            .unwrap_or_else(|| "event".into());
                        let frame = format!("id: {}\nevent: {kind}\ndata: {data}\n\n", e.cursor);
                        if !send(crate::secrets::redact_string(frame)).await {
                            return;
                        }
                        last_sent = tokio::time::Instant::now();
                    }
                }
                if last_sent.elapsed() >= KEEP_ALIVE {
                    if !send(": keep-alive\n\n".into()).await {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                tokio::select! {
                    biased;
                    got = live.recv() => match got {
                        Ok(ev) if ev.session_id == session.as_str() => {
                            if !send(live_frame(&ev)).await {
                                return;
                            }
                            last_sent = tokio::time::Instant::now();
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep_until(next_poll).await;
                        }
                    },
                    _ = tokio::time::sleep_until(next_poll) => {}
                }
            }
        });
        let stream = tokio_stream_of(rx);
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        let h = resp.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        resp
    }
}

/// A live frame has no id: it is not in the log, and a reconnect does
/// not ask for it again.
fn live_frame(ev: &crate::live::LiveEvent) -> String {
    let data = serde_json::to_string(ev).unwrap_or_default();
    format!("event: {}\ndata: {data}\n\n", ev.kind)
}

/// Where a stream starts: after `Last-Event-ID`, else after `?after=N`,
/// else from the first event.
fn after(req: &Request<Incoming>) -> Result<u64, String> {
    if let Some(v) = req.headers().get("last-event-id") {
        let v = v.to_str().unwrap_or("").trim();
        return v
            .parse()
            .map_err(|_| format!("Last-Event-ID '{v}' is not an event id (a number)"));
    }
    let query = req.uri().query().unwrap_or("");
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("after=") {
            return v
                .parse()
                .map_err(|_| format!("after '{v}' is not an event id (a number)"));
        }
    }
    Ok(0)
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    bytes_of(status, "application/json", body)
}

/// A whole body of `content_type`.
fn bytes_of(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"code": code, "message": crate::secrets::redact(message)}),
    )
}

/// Serves `api` on `listener` until `shutdown` resolves; then stops
/// accepting and closes every open stream (a client reconnects with
/// `Last-Event-ID` and misses nothing).
pub async fn serve_observe(
    api: ObserveApi,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let api = api.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "observation connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = &mut shutdown => break,
        }
    }
    connections.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_may_be_percent_encoded() {
        assert_eq!(percent_decode("support%2Fk1"), "support/k1");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
    }
}
