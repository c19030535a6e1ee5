//! The checked-in corpus of recorded turns (inline checkpoints and Restate
//! journals) replays against this build. Built with the `reorder-steps`
//! feature (a build that runs tool calls in another order), every recording
//! with two or more tool calls must fail at the first reordered step.
//!
//! Regenerate the inline recordings with
//! `RATCHET_UPDATE_CORPUS=1 cargo test --test replay_corpus`.

mod support;

use ratchet::engine::CancelToken;
use ratchet::engine::inline::{ReplayReport, replay};
use ratchet::journal::Recording;
use ratchet::model::{SessionId, TurnId, TurnInput};
use ratchet::store::MemoryStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay-corpus")
}

async fn regenerate_inline_recordings() {
    for s in ratchet_testkit::chaos::scenarios::all() {
        let rt = support::scripted_runtime(Arc::new(MemoryStore::new()), s.script.clone());
        let runner = support::runner(rt);
        let sid = SessionId::new(format!("corpus-{}", s.name)).unwrap();
        let input = TurnInput::text(s.text).with_input_id("in-1");
        let t = runner.turn(&sid, input, &CancelToken::new()).await.unwrap();
        let rec = runner
            .recording(&sid, &TurnId::new(&t.turn_id).unwrap())
            .await
            .unwrap();
        let path = corpus_dir().join(format!("inline-{}.json", s.name));
        std::fs::write(path, serde_json::to_string_pretty(&rec).unwrap() + "\n").unwrap();
    }
}

/// The first step of a recording that a reordered build runs differently:
/// the last call of the first model response with two or more tool calls.
fn first_reordered_step(rec: &Recording) -> Option<String> {
    let mut prev: Option<&str> = None;
    for step in &rec.steps {
        let name = step.step.as_str();
        let tool_prefix = name.find("tool:").map(|i| &name[..i + 7]);
        if let (Some(p), Some(prefix)) = (prev, tool_prefix)
            && p.starts_with(prefix)
        {
            let calls: Vec<&str> = rec
                .steps
                .iter()
                .map(|s| s.step.as_str())
                .filter(|s| s.starts_with(prefix))
                .collect();
            return calls.last().map(|s| s.to_string());
        }
        prev = tool_prefix.map(|_| name);
    }
    None
}

#[tokio::test]
async fn every_recorded_turn_replays_or_diverges_where_the_build_changed() {
    if std::env::var("RATCHET_UPDATE_CORPUS").is_ok_and(|v| v == "1") {
        regenerate_inline_recordings().await;
    }
    let rt = support::runtime_with(
        Arc::new(MemoryStore::new()),
        Arc::new(ratchet::llm::DemoModel::new()),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the corpus is missing: {files:?}");
    let mut reordered = 0;
    for file in files {
        let rec: Recording =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let report = replay(&rt, &rec).await.unwrap();
        let expected_divergence = if cfg!(feature = "reorder-steps") {
            first_reordered_step(&rec)
        } else {
            None
        };
        match (report, expected_divergence) {
            (ReplayReport::Ok { steps }, None) => assert_eq!(steps, rec.steps.len()),
            (ReplayReport::Diverged { step, expected, .. }, Some(want)) => {
                reordered += 1;
                assert_eq!(step, want, "{}", file.display());
                assert!(expected.contains("tool:"), "{expected}");
            }
            (report, want) => panic!(
                "{}: got {report:?}, expected divergence at {want:?}",
                file.display()
            ),
        }
    }
    if cfg!(feature = "reorder-steps") {
        assert!(
            reordered >= 2,
            "the corpus must hold turns with several tool calls"
        );
    }
}
