//! The timeline page in a real headless Chromium (Debian's, driven by
//! playwright-core; scripts/install-browser.sh): after a durable turn with
//! three tools and a service crash, the DOM shows each step as a bar, the
//! crash with the steps replayed after it, the outcome and the messages;
//! left open, the page draws the next turn as it happens. Keeps a
//! screenshot (`target/timeline.png`; `RATCHET_UPDATE_SCREENSHOT=1` also
//! writes docs/timeline.png, the one README shows).

mod support;

use serde_json::{Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::restate::{e2e_lock, free_port};
use support::rig::Rig;

const TOKEN: &str = "timeline-token-8d1f04c2";
const THREE_TOOLS: &str = "What is 2+3? What time is it? Also remember eggs";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn body(text: &str, id: &str) -> Value {
    json!({"input": {"items": [{"type": "text", "text": text}], "input_id": id}})
}

/// The driver script, placed beside its node_modules.
fn driver() -> PathBuf {
    let dir = root().join(".tools/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser is not installed: run scripts/install-browser.sh"
    );
    let script = dir.join("timeline.mjs");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/timeline.mjs");
    std::fs::copy(source, &script).unwrap();
    script
}

/// The driver's next report.
async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("the page reports within 2 minutes")
        .expect("the driver exited early");
    serde_json::from_str(&line).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_shows_a_crashed_turn_s_steps_and_replays_and_follows_the_next_live() {
    let _g = e2e_lock().await;
    let script = driver();
    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    let observe = [
        ("RATCHET_HTTP", addr.as_str()),
        ("RATCHET_HTTP_TOKEN", TOKEN),
    ];
    let faulty = [
        observe[0],
        observe[1],
        ("RATCHET_FAULT", "after:tool:0:call_1"),
    ];
    let mut rig = Rig::start(&faulty).await;
    let status = rig
        .turn_across_a_crash("tl", &body(THREE_TOOLS, "in-1"), &[], &observe)
        .await;
    assert_eq!(status, 200, "{}", rig.diagnostics());

    let shot = root().join("target/timeline.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("http://{addr}/sessions/tl/timeline?access_token={TOKEN}");
    let mut node = Command::new("node")
        .arg(&script)
        .env("URL", &url)
        .env("SCREENSHOT", &shot)
        .env("TURNS_FIRST", "1")
        .env("TURNS_LIVE", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = next(&mut rx).await;
    assert_eq!(first["stage"], "first");
    assert_eq!(first["errors"], json!([]), "{first:#}");
    let turn = &first["turns"][0];
    assert_eq!(turn["id"], "turn-in-1", "{first:#}");
    assert_eq!(turn["outcome"], "finished", "{first:#}");
    let steps: Vec<&str> = turn["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for want in [
        "claim",
        "prepare",
        "model:0",
        "tool:0:call_0",
        "tool:0:call_1",
        "tool:0:call_2",
        "model:1",
        "finalize",
        "commit",
    ] {
        assert!(steps.contains(&want), "no bar for {want}: {first:#}");
    }
    // Each step is drawn once: the ones the crashed process ran are not
    // drawn again for the retry, which replayed them from the journal.
    let mut unique = steps.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), steps.len(), "{first:#}");
    let markers = turn["markers"].as_array().unwrap();
    assert_eq!(markers.len(), 1, "one crash, one resume: {first:#}");
    assert!(
        markers[0].as_u64().unwrap() >= 5,
        "claim, prepare, model:0 and two tools replayed: {first:#}"
    );
    assert_eq!(turn["gaps"], json!(["crash"]), "{first:#}");
    let model1 = turn["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "model:1")
        .unwrap();
    assert!(
        model1["replayed_before"].as_u64().unwrap() >= 5,
        "{first:#}"
    );
    let said = |report: &Value, role: &str, text: &str| {
        report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == role && m["text"].as_str().unwrap_or("").contains(text))
    };
    assert!(said(&first, "user", "What is 2+3?"), "{first:#}");
    assert!(said(&first, "tool", "5"), "{first:#}");
    assert!(said(&first, "assistant", "5"), "{first:#}");

    // Left open, the page follows the next turn over the stream.
    let (status, _) = rig
        .server
        .call("tl", "turn", &body("What is 17*23+4?", "in-2"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let live = next(&mut rx).await;
    assert_eq!(live["stage"], "live");
    assert_eq!(live["connection"], "open", "{live:#}");
    let second = &live["turns"][1];
    assert_eq!(second["id"], "turn-in-2", "{live:#}");
    assert_eq!(second["outcome"], "finished", "{live:#}");
    assert!(second["markers"].as_array().unwrap().is_empty(), "{live:#}");
    assert!(said(&live, "assistant", "395"), "{live:#}");
    let status = node.wait().unwrap();
    assert!(status.success(), "the driver failed");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var("RATCHET_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        std::fs::copy(&shot, root().join("docs/timeline.png")).unwrap();
    }

    // Without the token the page's data is refused, the page itself too.
    let refused = reqwest::get(format!("http://{addr}/sessions/tl/timeline"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
