//! The `ratchet` CLI on the embedded default: a real binary, a real SQLite
//! file, and a real process killed at a fault point then resumed.

mod support;

use ratchet::model::SessionId;
use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::ratchet_cli as ratchet;

fn run(dir: &Path, args: &[&str]) -> Output {
    ratchet(dir, args).output().expect("run ratchet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_turn_answers_arithmetic_with_a_calculator_call_and_history_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &["turn", "--session", "s", "--json", "What is 17*23+4?"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let turn: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(turn["outcome"]["status"], "finished");
    assert!(turn["outcome"]["text"].as_str().unwrap().contains("395"));
    for key in ["messages", "usage", "turn_index", "duration_ms"] {
        assert!(turn.get(key).is_some(), "missing {key}");
    }
    assert!(dir.path().join(".ratchet/ratchet.db").exists());

    let o = run(dir.path(), &["history", "--session", "s", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let h: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let parts: Vec<&Value> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["message"]["parts"].as_array().unwrap())
        .collect();
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["text", "tool_call", "tool_result", "text"]);
    assert_eq!(parts[1]["name"], "calculator");
    assert_eq!(parts[2]["content"], "395");
}

fn effect_counts(db: &Path) -> std::collections::BTreeMap<String, u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db).unwrap();
        store
            .effect_counts(&SessionId::new("s").unwrap())
            .await
            .unwrap()
    })
}

#[test]
fn a_turn_killed_after_a_tool_resumes_without_running_the_tool_again() {
    let dir = tempfile::tempdir().unwrap();
    let text = "What is 2+3 and what time is it? Also remember milk";
    let o = ratchet(
        dir.path(),
        &["turn", "--session", "s", "--input-id", "in-1", text],
    )
    .env("RATCHET_FAULT", "after:tool:0:call_0")
    .output()
    .unwrap();
    assert!(!o.status.success(), "the fault point must kill the process");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "killed as by SIGKILL");
    let db = dir.path().join(".ratchet/ratchet.db");
    let before = effect_counts(&db);
    assert_eq!(before.get("tool:turn-in-1:call_0"), Some(&1));
    assert_eq!(
        before.get("tool:turn-in-1:call_1"),
        None,
        "the crash came before call_1"
    );

    let o = run(dir.path(), &["resume", "--session", "s", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let turn: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(turn["outcome"]["status"], "finished", "{turn}");
    let after = effect_counts(&db);
    for call in ["call_0", "call_1", "call_2"] {
        assert_eq!(
            after.get(&format!("tool:turn-in-1:{call}")),
            Some(&1),
            "{call}: {after:?}"
        );
    }
    assert_eq!(after.get("model:turn-in-1:0"), Some(&1));
    let o = run(dir.path(), &["resume", "--session", "s"]);
    assert_eq!(stdout(&o).trim(), "nothing to resume");
}

#[test]
fn an_exported_turn_replays_ok() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "turn",
            "--session",
            "s",
            "--input-id",
            "in-1",
            "What is 6*7?",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        dir.path(),
        &["export", "--session", "s", "--turn", "turn-in-1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let file = dir.path().join("turn.json");
    std::fs::write(&file, o.stdout).unwrap();
    let o = run(
        dir.path(),
        &["replay", "--recording", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("replay ok"), "{}", stdout(&o));
}

#[test]
fn user_errors_are_one_clear_line_and_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("junk.db"),
        b"not a database at all, just text".repeat(64),
    )
    .unwrap();
    std::fs::write(dir.path().join("bad-script.json"), b"{\"responses\": [").unwrap();
    std::fs::write(
        dir.path().join("ghost-tool.json"),
        br#"{"responses": [{"tool_calls": [{"id": "c", "name": "rocket", "arguments": {}}]}]}"#,
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["history", "--session", "nope"],
            "unknown session 'nope'",
        ),
        (
            vec!["turn", "--session", "s", "--db", "junk.db", "hi"],
            "not a readable SQLite database",
        ),
        (
            vec!["turn", "--session", "s", "--model", "gpt9", "hi"],
            "unknown model 'gpt9'",
        ),
        (
            vec![
                "turn",
                "--session",
                "s",
                "--model",
                "scripted:bad-script.json",
                "hi",
            ],
            "bad-script.json",
        ),
        (
            vec![
                "turn",
                "--session",
                "s",
                "--model",
                "scripted:ghost-tool.json",
                "hi",
            ],
            "rocket",
        ),
        // A bad session id is a refused input (exit 2): see the corpus,
        // tests/bad-input/cli.toml.
        (
            vec!["replay", "--recording", "missing.json"],
            "cannot read missing.json",
        ),
    ];
    for (args, expected) in cases {
        let o = run(dir.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("junk.db")).unwrap().len(),
        32 * 64,
        "junk untouched"
    );
}
