//! The CLI at its edges: Ctrl-C on `ratchet drain` stops after the running
//! turn and leaves the rest pending; input the CLI cannot run is refused
//! with exit code 2 and nothing stored; a re-sent input answers with what
//! committed.

mod support;

use ratchet::model::{SessionId, TurnInput};
use ratchet::store::prelude::*;
use ratchet::store::{InboxPayload, InboxState, NewInboxEntry, SqliteStore};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::ratchet_cli as ratchet;

fn sid() -> SessionId {
    SessionId::new("s").unwrap()
}

fn db(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join(".ratchet/ratchet.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_drain_cancels_the_running_turn_and_leaves_the_rest_pending() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".ratchet")).unwrap();
    let store = db(dir.path());
    for i in 0..200 {
        let id = format!("in-{i:03}");
        store
            .enqueue(
                &sid(),
                NewInboxEntry {
                    id: id.clone(),
                    turn_id: Some(format!("turn-{id}")),
                    payload: InboxPayload::Input(
                        TurnInput::text("What is 1+1?").with_input_id(&id),
                    ),
                },
            )
            .await
            .unwrap();
    }
    let mut child = ratchet(dir.path(), &["drain", "--session", "s"])
        .env("RATCHET_PAUSE", "3000@after:model:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = store.effect_counts(&sid()).await.unwrap();
        if counts.contains_key("model:turn-in-000:0") {
            break;
        }
        assert!(Instant::now() < deadline, "the first turn never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: signalling the child we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let turns = store.turns(&sid()).await.unwrap();
    assert_eq!(turns.len(), 1, "only the running turn ends: {turns:?}");
    assert_eq!(
        turns[0].outcome.stop_reason(),
        Some(ratchet::model::StopReason::Cancelled)
    );
    let live = store.inbox(&sid()).await.unwrap();
    assert_eq!(live.len(), 199);
    assert!(live.iter().all(|e| e.state == InboxState::Pending));
    assert!(store.current_lease(&sid()).await.unwrap().is_none());
}

#[test]
fn input_the_cli_cannot_run_exits_2_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ok = ratchet(
        dir.path(),
        &[
            "turn",
            "--session",
            "s",
            "--input-id",
            "in-1",
            "What is 1+1?",
        ],
    )
    .output()
    .unwrap();
    assert!(ok.status.success());
    let long = "x".repeat(300);
    let big = "y".repeat(70 * 1024);
    let refused: [(&[&str], &str); 4] = [
        (&["--input-id", "has space", "hi"], "invalid_input"),
        (&["--input-id", &long, "hi"], "invalid_input"),
        (&["--input-id", "in-1", "other text"], "input_conflict"),
        (&["--input-id", "in-2", &big], "payload_too_large"),
    ];
    for (args, code) in refused {
        for cmd in ["turn", "submit"] {
            let mut all = vec![cmd, "--session", "s"];
            all.extend_from_slice(args);
            let o = ratchet(dir.path(), &all).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{cmd} {code}: {err}");
            assert!(err.contains(code), "{cmd}: {err}");
            assert!(
                !err.contains("panicked") && !err.contains("backtrace"),
                "{err}"
            );
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = db(dir.path());
        assert!(store.inbox(&sid()).await.unwrap().is_empty());
        assert_eq!(store.head(&sid()).await.unwrap().version, 1);
    });
}

#[test]
fn a_bad_otlp_endpoint_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "",
        "ftp://user:hunter2-pass@collector:4318",
        "collector:4318",
    ] {
        let o = ratchet(
            dir.path(),
            &["--otlp-endpoint", bad, "turn", "--session", "s", "hi"],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("--otlp-endpoint"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the endpoint's credentials echoed: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        !dir.path().join(".ratchet").exists(),
        "nothing ran, nothing stored"
    );
}

#[test]
fn logs_to_a_pipe_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let o = ratchet(dir.path(), &["turn", "--session", "s", "What is 6*7?"])
        .env("RATCHET_LOG", "debug")
        .output()
        .unwrap();
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("turn committed"),
        "the turn's log expected: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log: {log:?}"
    );
}

#[test]
fn a_re_sent_input_answers_with_its_committed_turn() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "turn",
        "--session",
        "s",
        "--json",
        "--input-id",
        "in-1",
        "What is 6*7? Also remember tea",
    ];
    let run = || {
        let o = ratchet(dir.path(), &args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    // The inline tier answers from the turn's checkpoints: the same result,
    // byte for byte, and no effect runs again.
    let first = run();
    assert_eq!(run(), first);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let counts = db(dir.path()).effect_counts(&sid()).await.unwrap();
        assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    });
}

#[test]
fn configure_sets_the_system_prompt_of_the_next_turn() {
    let dir = tempfile::tempdir().unwrap();
    let o = ratchet(
        dir.path(),
        &[
            "configure",
            "--session",
            "s",
            "--system-prompt",
            "Be brief.",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ratchet(dir.path(), &["turn", "--session", "s", "hi"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = ratchet(dir.path(), &["configure", "--session", "s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "a command is required");
    let o = ratchet(dir.path(), &["view", "--session", "s"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let view: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(view["head"]["version"], 1);
    assert_eq!(view["head"]["settings"]["system_prompt"], "Be brief.");
    assert_eq!(view["pending_total"], 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let head = db(dir.path()).head(&sid()).await.unwrap();
        assert_eq!(head.settings.system_prompt.as_deref(), Some("Be brief."));
    });
}
