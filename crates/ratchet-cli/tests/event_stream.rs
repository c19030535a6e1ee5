//! The observation API (`ratchet::observe`) on a real SQLite store, served
//! on a free loopback port and read over real HTTP: the event stream
//! (Server-Sent Events) follows a session live, resumes exactly after
//! `Last-Event-ID`, the view is JSON, a bearer token guards both, and bad
//! requests get typed errors; and `ratchet serve --http` on a real
//! restate-server streams a durable turn as it runs.

mod support;

use ratchet::model::SessionId;
use ratchet::store::prelude::*;
use serde_json::Value;
use support::sse::{Frame, TOKEN, names, read_events, rig};

#[tokio::test]
async fn the_stream_follows_a_session_live_and_resumes_exactly_after_last_event_id() {
    let rig = rig().await;
    rig.turn("s", "in-1").await;
    let mut resp = rig.get("/sessions/s/events").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let first = read_events(&mut resp, &mut buf, 3).await;
    assert_eq!(
        names(&first),
        ["turn_started", "tool_executed", "turn_committed"]
    );
    assert_eq!(
        first.iter().map(|f| f.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "ids are the log's positions"
    );
    assert_eq!(first[1].2["name"], "calculator");
    assert_eq!(
        first[0].2["id"], "turn-in-1:0",
        "the store's event id rides along"
    );

    // The open stream follows the session: the next turn's events arrive.
    rig.turn("s", "in-2").await;
    let live = read_events(&mut resp, &mut buf, 3).await;
    assert_eq!(live.iter().map(|f| f.0).collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(live[2].2["version"], 2);
    drop(resp);

    // A reconnect after event 2 gets 3.. and nothing before.
    let mut again = rig
        .get("/sessions/s/events")
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let resumed = read_events(&mut again, &mut buf, 4).await;
    assert_eq!(
        resumed.iter().map(|f| f.0).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    let mut by_query = rig.get("/sessions/s/events?after=5").send().await.unwrap();
    let mut buf = String::new();
    assert_eq!(read_events(&mut by_query, &mut buf, 1).await[0].0, 6);

    // A stream opened before a session exists waits for its first event.
    let mut early = rig.get("/sessions/later/events").send().await.unwrap();
    assert_eq!(early.status(), 200);
    rig.turn("later", "in-1").await;
    let mut buf = String::new();
    assert_eq!(
        read_events(&mut early, &mut buf, 1).await[0].1,
        "turn_started"
    );
}

#[tokio::test]
async fn the_view_is_json_and_bad_requests_get_typed_errors() {
    let rig = rig().await;
    rig.turn("agent/k1", "in-1").await;
    for path in ["/sessions/agent/k1", "/sessions/agent%2Fk1"] {
        let resp = rig.get(path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let view: Value = resp.json().await.unwrap();
        assert_eq!(view["head"]["version"], 1, "{view}");
        assert_eq!(view["recent_messages"].as_array().unwrap().len(), 4);
    }
    let check = |resp: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    let url = |p: &str| format!("{}{p}", rig.base);
    check(
        rig.http
            .get(url("/sessions/s/events"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let wrong = rig.http.get(url("/sessions/agent/k1")).bearer_auth("nope");
    check(wrong.send().await.unwrap(), 401, "unauthorized").await;
    check(
        rig.get("/sessions/nobody").send().await.unwrap(),
        404,
        "unknown_session",
    )
    .await;
    check(
        rig.get("/sessions/").send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    check(
        rig.get("/elsewhere").send().await.unwrap(),
        404,
        "invalid_request",
    )
    .await;
    let bad_id = rig.get("/sessions/s/events").header("Last-Event-ID", "abc");
    check(bad_id.send().await.unwrap(), 400, "invalid_request").await;
    let post = rig.http.post(url("/sessions/s")).bearer_auth(TOKEN);
    check(post.send().await.unwrap(), 405, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratchet_serve_http_streams_a_durable_turn_as_it_runs() {
    let _guard = support::restate::e2e_lock().await;
    let port = ratchet_testkit::harness::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let rig = support::rig::Rig::start(&[
        ("RATCHET_HTTP", addr.as_str()),
        ("RATCHET_HTTP_TOKEN", TOKEN),
        // The second tool step waits 1.5 s first: the stream must show the
        // first one before the turn commits.
        ("RATCHET_PAUSE", "1500@after:tool:0:call_0"),
    ])
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/sessions/d/events");
    let unauthorized = http.get(&url).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let mut resp = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = rig
        .server
        .send(
            "d",
            "turn",
            &support::rig::turn_body("What is 17*23+4 and what time is it?", "in-1"),
        )
        .await
        .unwrap();
    assert!(id.starts_with("inv_"), "{id}");
    let mut buf = String::new();
    let early = read_events(&mut resp, &mut buf, 2).await;
    assert_eq!(names(&early), ["turn_started", "tool_executed"]);
    let head = rig.store().head(&SessionId::new("d").unwrap()).await;
    assert!(
        head.map_or(true, |h| h.version == 0),
        "seen before the turn committed"
    );
    let mut rest = Vec::new();
    while rest.last().is_none_or(|f: &Frame| f.1 != "turn_committed") {
        rest.extend(read_events(&mut resp, &mut buf, 1).await);
    }
    // Every stored event but the timeline's step_ran (read_events skips
    // those), in the log's order, each once.
    let ids: Vec<u64> = early.iter().chain(&rest).map(|f| f.0).collect();
    let stored: Vec<u64> = rig
        .store()
        .events_after(&SessionId::new("d").unwrap(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !matches!(e.event.kind, ratchet::model::EventKind::StepRan { .. }))
        .map(|e| e.cursor)
        .collect();
    assert_eq!(ids, stored, "no gaps, no repeats");
    let view: Value = http
        .get(format!("http://{addr}/sessions/d"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["head"]["version"], 1, "{view}");
}
