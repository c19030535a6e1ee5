//! The durable contract at the ends of an invocation's life, on a real
//! restate-server and the real `ratchet serve`: a killed turn and a killed
//! drain are settled in their FIFO place and the session goes on without a
//! further submit; re-sent inputs answer with what committed; inputs that
//! could never run are refused at the door; SIGTERM lets the running turn
//! finish; `view` stays one page whatever the backlog.

mod support;

use ratchet::model::{Message, Role, TurnInput};
use ratchet::store::prelude::*;
use ratchet::store::{ClaimTarget, CommitRequest, InboxPayload, NewInboxEntry};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::restate::e2e_lock;
use support::rig::{Rig, sid, turn_body};

const TWO_TOOLS: &str = "What is 2+3? Also remember eggs";
/// Paused after the first tool step of a turn: the window to kill it in.
const PAUSE_AFTER_TOOL: (&str, &str) = ("RATCHET_PAUSE", "8000@after:tool:0:call_0");
/// A lease TTL far longer than the tests wait: a takeover must not wait it out.
const LONG_LEASE: (&str, &str) = ("RATCHET_LEASE_TTL_MS", "120000");

async fn lease_owner(rig: &Rig, session: &str) -> String {
    rig.store()
        .current_lease(&sid(session))
        .await
        .unwrap()
        .expect("a running turn holds the lease")
        .owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_turn_is_settled_before_the_next_turn_and_its_keyed_tool_never_runs_twice() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[PAUSE_AFTER_TOOL, LONG_LEASE]).await;
    let killed = rig
        .server
        .send("k", "turn", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    rig.wait_for_effect("k", "tool:turn-in-1:call_0", Duration::from_secs(30))
        .await;
    assert_eq!(lease_owner(&rig, "k").await, killed);
    rig.server.kill_invocation(&killed).await.unwrap();

    // The next turn takes the lease over at once (not after its 120 s TTL),
    // settles the killed turn's input first, then runs its own.
    let started = Instant::now();
    let (status, next) = rig
        .server
        .call("k", "turn", &turn_body("What is 3+4?", "in-2"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{next}\n{}", rig.diagnostics());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited for the TTL"
    );
    assert_eq!(next["turn_id"], "turn-in-2");
    assert_eq!(next["outcome"]["status"], "finished");
    let outcomes = rig.outcomes("k").await;
    assert_eq!(
        outcomes,
        vec![
            ("turn-in-1".into(), "stopped".into(), "incomplete".into()),
            ("turn-in-2".into(), "finished".into(), String::new()),
        ]
    );
    let events = rig.store().events_after(&sid("k"), 0, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.event.turn_id == "turn-in-1"
            && matches!(&e.event.kind, ratchet::model::EventKind::Error { code, message }
                if code == "incomplete" && message.contains("ended without committing"))),
        "the settled turn says why: {events:?}"
    );

    // The client re-sends the killed input: it gets the settled result and
    // nothing runs again, so the keyed note is never written twice.
    let before = rig.store().effect_counts(&sid("k")).await.unwrap();
    let (status, again) = rig
        .server
        .call("k", "turn", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["turn_id"], "turn-in-1");
    assert_eq!(again["outcome"]["reason"], "incomplete");
    assert_eq!(rig.store().effect_counts(&sid("k")).await.unwrap(), before);
    assert!(before.values().all(|n| *n == 1), "{before:?}");
    let notes = rig.store().notes(&sid("k")).await.unwrap();
    assert!(notes.len() <= 1, "{notes:?}");
    rig.assert_settled("k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_drain_is_settled_and_the_session_goes_on_without_a_further_submit() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[PAUSE_AFTER_TOOL, LONG_LEASE]).await;
    let (status, reply) = rig
        .server
        .call("d", "submit", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    rig.wait_for_effect("d", "tool:turn-in-1:call_0", Duration::from_secs(30))
        .await;
    let drain = lease_owner(&rig, "d").await;
    rig.server.kill_invocation(&drain).await.unwrap();
    // Nobody submits again: the drain sent its successor before running.
    rig.wait_for_version("d", 1, Duration::from_secs(30)).await;
    assert_eq!(rig.outcomes("d").await[0].2, "incomplete");
    rig.assert_settled("d").await;
    // The session goes on in order.
    for id in ["in-2", "in-3"] {
        let (status, _) = rig
            .server
            .call("d", "submit", &turn_body("What is 1+1?", id))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    rig.wait_for_version("d", 3, Duration::from_secs(30)).await;
    let order: Vec<String> = rig.outcomes("d").await.into_iter().map(|o| o.0).collect();
    assert_eq!(order, ["turn-in-1", "turn-in-2", "turn-in-3"]);
    rig.assert_settled("d").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_sent_inputs_answer_with_their_committed_result_and_run_nothing_again() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let (status, first) = rig
        .server
        .call("r", "turn", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{first}");
    let effects = rig.store().effect_counts(&sid("r")).await.unwrap();
    let (status, again) = rig
        .server
        .call("r", "turn", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{again}");
    let without_replayed = |v: &Value| {
        let mut v = v.clone();
        v["receipt"]["replayed"] = json!(null);
        v
    };
    assert_eq!(without_replayed(&again), without_replayed(&first));
    assert_eq!(again["receipt"]["replayed"], true);
    let (status, dup) = rig
        .server
        .call("r", "submit", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    assert_eq!((status, &dup["duplicate"]), (200, &json!(true)), "{dup}");
    let (status, conflict) = rig
        .server
        .call("r", "turn", &turn_body("something else", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 409, "{conflict}");
    let text = conflict.to_string();
    assert_eq!(
        text.matches("input_conflict").count(),
        1,
        "code once: {text}"
    );
    assert_eq!(rig.store().effect_counts(&sid("r")).await.unwrap(), effects);
    assert_eq!(rig.store().head(&sid("r")).await.unwrap().version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_could_never_run_are_refused_at_the_door_and_change_nothing() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let (status, _) = rig
        .server
        .call("p", "turn", &turn_body("What is 1+1?", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let with_trace = |id: &str, trace: &str| json!({"input": {"items": [{"type": "text", "text": "hi"}], "input_id": id, "trace_turn_id": trace}});
    let cases = [
        (turn_body("hi", &"x".repeat(300)), 400, "invalid_input"),
        (turn_body("hi", "a\u{7}b"), 400, "invalid_input"),
        (turn_body("hi", "two words"), 400, "invalid_input"),
        (with_trace("in-2", ""), 400, "invalid_input"),
        (with_trace("in-3", "t:agent-frame:1"), 400, "invalid_input"),
        (with_trace("in-4", "turn-in-1"), 409, "turn_id_conflict"),
        (
            turn_body(&"y".repeat(70 * 1024), "in-5"),
            413,
            "payload_too_large",
        ),
    ];
    for handler in ["submit", "turn"] {
        for (body, want, code) in &cases {
            let (status, reply) = rig.server.call("p", handler, body).await.unwrap();
            assert_eq!(status, *want, "{handler}: {reply}");
            assert!(reply.to_string().contains(code), "{handler}: {reply}");
        }
    }
    let store = rig.store();
    assert!(store.inbox(&sid("p")).await.unwrap().is_empty());
    assert_eq!(store.head(&sid("p")).await.unwrap().version, 1);
    let (status, ok) = rig
        .server
        .call("p", "turn", &turn_body("What is 2+2?", "in-6"))
        .await
        .unwrap();
    assert_eq!(
        (status, &ok["outcome"]["status"]),
        (200, &json!("finished"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_answer_too_large_to_journal_stops_in_its_place_and_is_not_called_again() {
    let _g = e2e_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    let huge = "z".repeat(400 * 1024);
    std::fs::write(
        &script,
        json!({"turns": [[{"text": huge}], [{"text": "small"}]]}).to_string(),
    )
    .unwrap();
    let model = format!("scripted:{}", script.display());
    let rig = Rig::start(&[("RATCHET_MODEL", &model)]).await;
    for id in ["in-1", "in-2"] {
        let (status, _) = rig
            .server
            .call("big", "submit", &turn_body("hi", id))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    rig.wait_for_version("big", 2, Duration::from_secs(60))
        .await;
    let outcomes = rig.outcomes("big").await;
    assert_eq!(outcomes[0].2, "runtime_error", "{outcomes:?}");
    assert_eq!(outcomes[1].1, "finished", "{outcomes:?}");
    let effects = rig.store().effect_counts(&sid("big")).await.unwrap();
    assert_eq!(effects.get("model:turn-in-1:0"), Some(&1), "{effects:?}");
    rig.assert_settled("big").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_turn_finish_and_exits_zero() {
    let _g = e2e_lock().await;
    let mut rig = Rig::start(&[("RATCHET_PAUSE", "2000@after:model:0")]).await;
    let inv = rig
        .server
        .send("t", "turn", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    rig.wait_for_effect("t", "model:turn-in-1:0", Duration::from_secs(30))
        .await;
    let status = rig
        .service
        .terminate(Duration::from_secs(40))
        .expect("serve exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", rig.diagnostics());
    // The turn committed before the process exited.
    assert_eq!(rig.store().head(&sid("t")).await.unwrap().version, 1);
    let log = rig.service.log();
    assert!(log.contains("ratchet serve stopped"), "{log}");
    assert!(log.contains(" 0 cut at the deadline"), "{log}");
    let (status, result) = rig.server.attach(&inv).await.unwrap();
    assert_eq!(
        (status, &result["outcome"]["status"]),
        (200, &json!("finished"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_is_one_bounded_page_whatever_the_backlog_and_history() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let store = rig.store();
    let s = sid("v");
    // 120 messages of history, then 600 pending inputs of 60 KB each.
    store
        .enqueue(&s, entry("seed", "seed".into()))
        .await
        .unwrap();
    let lease = store.acquire_lease(&s, "seed", 60_000).await.unwrap();
    let claim = store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    let messages = (0..120)
        .map(|i| Message::text(format!("seed:msg:{i}"), Role::User, "hello"))
        .collect();
    store
        .commit(&CommitRequest {
            session_id: s.clone(),
            turn_id: "seed".into(),
            lease,
            base_version: 0,
            messages,
            outcome: ratchet::model::TurnOutcome::stopped(
                ratchet::model::StopReason::Incomplete,
                "seed",
            ),
            usage: Default::default(),
            completed_entries: claim.entry_ids(),
            events: Vec::new(),
            settings: None,
            keep_lease: false,
            started_at_ms: 0,
            finished_at_ms: 0,
        })
        .await
        .unwrap();
    for i in 0..600 {
        store
            .enqueue(&s, entry(&format!("in-{i}"), "p".repeat(60 * 1024)))
            .await
            .unwrap();
    }
    let (status, view) = rig.server.call("v", "view", &json!(null)).await.unwrap();
    assert_eq!(status, 200, "{}", rig.diagnostics());
    assert_eq!(view["pending_total"], 600);
    let pending = view["pending"].as_array().unwrap();
    assert!(
        !pending.is_empty() && pending.len() <= 20,
        "{}",
        pending.len()
    );
    assert_eq!(pending[0]["id"], "in-0", "oldest first");
    assert_eq!(view["recent_messages"].as_array().unwrap().len(), 50);
    assert_eq!(view["recent_messages"][49]["message"]["id"], "seed:msg:119");
    let bytes = serde_json::to_vec(&view).unwrap().len();
    assert!(bytes < 300 * 1024, "view is {bytes} bytes");
    // Unknown sessions are 404 for view and cancel alike.
    for handler in ["view", "cancel"] {
        let (status, reply) = rig
            .server
            .call("nobody", handler, &json!(null))
            .await
            .unwrap();
        assert_eq!(status, 404, "{handler}: {reply}");
    }
}

fn entry(id: &str, text: String) -> NewInboxEntry {
    NewInboxEntry {
        id: id.into(),
        turn_id: Some(format!("turn-{id}")),
        payload: InboxPayload::Input(TurnInput::text(text).with_input_id(id)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_the_admin_api_unreachable_fails_fast_and_clearly() {
    let _g = e2e_lock().await;
    // The service's admin URL points at a port nobody listens on.
    let closed = support::restate::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = support::restate::RestateServer::start().unwrap();
    let store = format!("sqlite:{}", dir.path().join("ratchet.db").display());
    let service = support::restate::Service::start(
        &support::restate::ratchet_bin(),
        &store,
        &format!("http://127.0.0.1:{closed}"),
        dir.path(),
        &[("RATCHET_PAUSE", "8000@after:model:0")],
    )
    .unwrap();
    server.register(&service.uri()).await.unwrap();
    let inv = server
        .send("c", "turn", &turn_body(TWO_TOOLS, "in-1"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !service.log().contains("pause point reached") {
        assert!(Instant::now() < deadline, "{}", service.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let (status, reply) = server.call("c", "cancel", &json!(null)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(6), "cancel blocked");
    assert_eq!(status, 503, "{reply}");
    assert!(
        reply.to_string().contains("restate_admin_unreachable"),
        "{reply}"
    );
    // The turn itself is untouched and finishes.
    let (status, done) = server.attach(&inv).await.unwrap();
    assert_eq!(
        (status, &done["outcome"]["status"]),
        (200, &json!("finished"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_queues_a_command_that_applies_with_the_next_input() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let body = json!({"command": {"command": "set_system_prompt", "prompt": "Answer in French."}, "command_id": "cmd-1"});
    let (status, reply) = rig.server.call("cfg", "configure", &body).await.unwrap();
    assert_eq!(
        (status, &reply["duplicate"]),
        (200, &json!(false)),
        "{reply}"
    );
    let (status, again) = rig.server.call("cfg", "configure", &body).await.unwrap();
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    let bad = json!({"command": {"command": "set_context_limit", "max_messages": 0}});
    let (status, refused) = rig.server.call("cfg", "configure", &bad).await.unwrap();
    assert_eq!(status, 400, "{refused}");
    let (status, _) = rig
        .server
        .call("cfg", "turn", &turn_body("What is 1+1?", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let head = rig.store().head(&sid("cfg")).await.unwrap();
    assert_eq!(
        head.settings.system_prompt.as_deref(),
        Some("Answer in French.")
    );
    rig.assert_settled("cfg").await;
}
