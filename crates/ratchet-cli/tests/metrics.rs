//! Prometheus metrics on `ratchet serve --http`: a durable turn cut by a
//! crash after its tool step and retried counts the steps the new process
//! replayed apart from the ones it ran, counts the turn once (also when the
//! same input is sent again), and reports the store's inbox depth.

mod support;

use serde_json::json;
use std::time::Duration;
use support::restate::{e2e_lock, free_port};
use support::rig::Rig;

/// The value of the sample `series` (name and labels, as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn scrape(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    resp.text().await.unwrap()
}

fn body(text: &str, id: &str) -> serde_json::Value {
    json!({"input": {"items": [{"type": "text", "text": text}], "input_id": id}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_and_retried_turn_counts_once_and_its_replayed_steps_apart() {
    let _g = e2e_lock().await;
    let addr = format!("127.0.0.1:{}", free_port().unwrap());
    let base = format!("http://{addr}");
    let http = [("RATCHET_HTTP", addr.as_str())];
    let faulty = [http[0], ("RATCHET_FAULT", "after:tool:0:call_0")];
    let mut rig = Rig::start(&faulty).await;
    let status = rig
        .turn_across_a_crash("m1", &body("What is 17*23+4?", "in-1"), &[], &http)
        .await;
    assert_eq!(status, 200, "{}", rig.diagnostics());
    let (status, again) = rig
        .server
        .call("m1", "turn", &body("What is 17*23+4?", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(again["receipt"]["replayed"], true, "{again}");

    let text = scrape(&base).await;
    let finished = r#"ratchet_turns_total{outcome="finished",reason=""}"#;
    assert_eq!(sample(&text, finished), Some(1.0), "{text}");
    // This process ran model:1, finalize and commit; the crashed one ran
    // the rest, which this one answered from the journal.
    let ran = |k: &str| {
        sample(
            &text,
            &format!("ratchet_step_duration_seconds_count{{kind=\"{k}\"}}"),
        )
    };
    let replayed = |k: &str| {
        sample(
            &text,
            &format!("ratchet_steps_replayed_total{{kind=\"{k}\"}}"),
        )
    };
    assert_eq!(ran("model"), Some(1.0), "{text}");
    assert_eq!(ran("commit"), Some(1.0), "{text}");
    assert_eq!(ran("tool"), None, "{text}");
    assert!(replayed("tool").is_some_and(|n| n >= 1.0), "{text}");
    assert!(replayed("model").is_some_and(|n| n >= 1.0), "{text}");
    assert!(replayed("claim").is_some_and(|n| n >= 1.0), "{text}");
    let inf = r#"ratchet_step_duration_seconds_bucket{kind="model",le="+Inf"}"#;
    assert_eq!(sample(&text, inf), Some(1.0), "{text}");
    assert_eq!(sample(&text, "ratchet_inbox_depth"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "ratchet_lease_takeovers_total"),
        Some(0.0),
        "{text}"
    );

    // Inputs waiting behind a paused turn are the inbox depth.
    let paused = [http[0], ("RATCHET_PAUSE", "3000@after:model:0")];
    rig.service.restart(&paused).unwrap();
    let running = rig
        .server
        .send("m2", "turn", &body("What is 17*23+4?", "a"))
        .await;
    assert!(running.is_ok(), "{running:?}");
    // Whether or not the turn has claimed `a` yet, `b` and `c` wait.
    for id in ["b", "c"] {
        let (status, _) = rig
            .server
            .call("m2", "submit", &body("hello", id))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    let text = scrape(&base).await;
    assert!(
        sample(&text, "ratchet_inbox_depth").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    rig.wait_for_version("m2", 3, Duration::from_secs(60)).await;
    let text = scrape(&base).await;
    assert_eq!(sample(&text, "ratchet_inbox_depth"), Some(0.0), "{text}");
    assert_eq!(sample(&text, finished), Some(3.0), "{text}");
}
