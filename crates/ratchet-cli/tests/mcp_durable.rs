//! MCP tools on the durable tier: `ratchet serve --agents FILE` with an
//! `[[agent.mcp]]` stdio server (the reference server-everything from npm),
//! a real restate-server, and a SIGKILL of the service right after the turn's
//! first MCP call is journaled. The server dies with the service (nothing is
//! left running), the restarted service replays the `tools` step and the
//! journaled call from Restate's journal, starts a new server for the next
//! call, and the turn commits once with both results.

mod support;

use ratchet::store::prelude::*;
use serde_json::json;
use std::time::Duration;
use support::mcp::everything_js;
use support::restate::e2e_lock;
use support::rig::{Rig, sid, turn_body};

/// Whether a process of this user carries `RATCHET_TEST_TAG={tag}`.
fn tagged_alive(tag: &str) -> bool {
    !support::mcp::tagged(tag).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_turn_killed_after_its_first_call_replays_it_and_commits_once() {
    let _guard = e2e_lock().await;
    let files = tempfile::tempdir().unwrap();
    let tag = format!("mcp-durable-{}", std::process::id());
    let script = files.path().join("script.json");
    std::fs::write(
        &script,
        json!({"every_turn": [
            {"tool_calls": [
                {"id": "sum", "name": "everything__get-sum", "arguments": {"a": 2, "b": 3}},
                {"id": "echo", "name": "everything__echo", "arguments": {"message": "after"}}
            ]},
            {"text": "done"}
        ]})
        .to_string(),
    )
    .unwrap();
    let agents = files.path().join("agents.toml");
    std::fs::write(
        &agents,
        format!(
            r#"[[agent]]
name = "Session"
model = "scripted:{script}"
tools = ["calculator"]
[[agent.mcp]]
name = "everything"
command = "node"
args = ["{js}", "stdio"]
env = {{ RATCHET_TEST_TAG = "{tag}" }}
tool_idempotency = {{ get-sum = "pure" }}
timeout_ms = 20000
"#,
            script = script.display(),
            js = everything_js().display(),
        ),
    )
    .unwrap();
    let agents = agents.display().to_string();
    let mut rig = Rig::start(&[
        ("RATCHET_AGENTS", agents.as_str()),
        ("RATCHET_FAULT", "after:tool:0:sum"),
    ])
    .await;
    let id = rig
        .server
        .send("m", "turn", &turn_body("add, then echo", "in-1"))
        .await
        .unwrap();
    assert!(id.starts_with("inv_"), "{id}");
    assert!(
        rig.service.wait_exit(Duration::from_secs(60)),
        "the fault point was never reached\n{}",
        rig.diagnostics()
    );
    let mut gone = false;
    for _ in 0..100 {
        if !tagged_alive(&tag) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the MCP server died with the service that started it");

    rig.service
        .restart(&[("RATCHET_AGENTS", agents.as_str())])
        .unwrap();
    rig.wait_for_version("m", 1, Duration::from_secs(60)).await;
    let outcomes = rig.outcomes("m").await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes[0].1,
        "finished",
        "{outcomes:?}\n{}",
        rig.diagnostics()
    );

    let store = rig.store();
    let messages = store.messages(&sid("m"), u64::MAX).await.unwrap();
    let results: Vec<String> = messages
        .iter()
        .flat_map(|m| m.message.parts.iter())
        .filter_map(|p| match p {
            ratchet::model::Part::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(results, ["The sum of 2 and 3 is 5.", "Echo: after"]);
    let counts = store.effect_counts(&sid("m")).await.unwrap();
    let starts: Vec<_> = counts
        .iter()
        .filter(|(k, _)| k.starts_with("started:"))
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "only the unsafe echo counts its start, once: {counts:?}"
    );
    assert!(
        starts[0].0.ends_with(":echo") && *starts[0].1 == 1,
        "{counts:?}"
    );
    rig.assert_settled("m").await;
    drop(rig);
    assert!(!tagged_alive(&tag), "no MCP server outlives the test");
}

#[test]
fn agents_file_mcp_servers_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let check = |mcp: &str| {
        let toml = format!("[[agent]]\nname = \"a\"\nmodel = \"demo\"\n[[agent.mcp]]\n{mcp}\n");
        support::refused_agents_file(dir.path(), &toml, &[])
    };
    let cases = [
        (
            "name = \"x\"",
            "give exactly one of command (stdio) and url (HTTP)",
        ),
        (
            "name = \"x\"\ncommand = \"node\"\nurl = \"http://127.0.0.1:1/mcp\"",
            "exactly one",
        ),
        ("name = \"a__b\"\ncommand = \"node\"", "must be 1 to 24"),
        (
            "name = \"x\"\nurl = \"ftp://host\"",
            "is not an http(s) URL",
        ),
        (
            "name = \"x\"\ncommand = \"node\"\ncomand = \"typo\"",
            "unknown field `comand`",
        ),
        (
            "name = \"x\"\ncommand = \"node\"\nidempotency = \"sometimes\"",
            "unknown variant `sometimes`",
        ),
        (
            "name = \"x\"\ncommand = \"node\"\nenv_from = [\"RATCHET_SURELY_UNSET_VARIABLE\"]",
            "environment variable RATCHET_SURELY_UNSET_VARIABLE is not set",
        ),
    ];
    for (mcp, want) in cases {
        let err = check(mcp);
        assert!(err.contains(want), "{mcp}: {err}");
    }
}
