//! Unit tests for the scripted provider: both modes, failures, and the
//! errors a bad script file produces.

use super::*;
use crate::model::Message;
use serde_json::json;

fn request(users: usize, iteration: u32) -> ModelRequest {
    let mut messages = vec![Message::text("s", Role::System, "be brief")];
    for i in 0..users {
        messages.push(Message::text(format!("u{i}"), Role::User, "hi"));
        messages.push(Message::text(format!("a{i}"), Role::Assistant, "hello"));
    }
    ModelRequest {
        messages,
        tools: vec![],
        iteration,
    }
}

fn text_of(r: &ModelResponse) -> String {
    r.parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn responses_mode_serves_entries_in_call_order_then_runs_out() {
    let p = ScriptedProvider::from_json_str(r#"{"responses": [{"text": "one"}, {"text": "two"}]}"#)
        .unwrap();
    let r = request(1, 0);
    assert_eq!(text_of(&p.complete(&r).await.unwrap()), "one");
    assert_eq!(text_of(&p.complete(&r).await.unwrap()), "two");
    let err = p.complete(&r).await.unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains("out of responses"), "{err}");
}

#[tokio::test]
async fn turns_mode_picks_by_user_count_and_iteration_regardless_of_call_order() {
    let p = ScriptedProvider::from_json_str(
        r#"{"turns": [
            [{"text": "t0i0"}, {"text": "t0i1"}],
            [{"text": "t1i0"}]
        ]}"#,
    )
    .unwrap();
    // Out of order and repeated, as after a crash and restart.
    assert_eq!(text_of(&p.complete(&request(2, 0)).await.unwrap()), "t1i0");
    assert_eq!(text_of(&p.complete(&request(1, 1)).await.unwrap()), "t0i1");
    assert_eq!(text_of(&p.complete(&request(1, 0)).await.unwrap()), "t0i0");
    assert_eq!(text_of(&p.complete(&request(1, 0)).await.unwrap()), "t0i0");
    let missing = p.complete(&request(2, 1)).await.unwrap_err();
    assert!(missing.message.contains("turns[1][1]"), "{missing}");
    let no_user = p.complete(&request(0, 0)).await.unwrap_err();
    assert!(!no_user.retryable);
}

#[tokio::test]
async fn entry_becomes_parts_usage_finish_reason_and_directive() {
    let p = ScriptedProvider::from_json_str(
        r#"{"responses": [
            {"reasoning": "r", "text": "t",
             "tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}},
                            {"id": "mine", "name": "clock"}],
             "usage": {"input_tokens": 7, "output_tokens": 3}},
            {"final_value": {"answer": 42}},
            {"switch_frame": {"frame_id": "f", "task": "do it"}},
            {"submit_error": "nope"},
            {"final_value": null}
        ]}"#,
    )
    .unwrap();
    let r = request(1, 0);
    let first = p.complete(&r).await.unwrap();
    assert_eq!(
        first.parts,
        vec![
            Part::Reasoning { text: "r".into() },
            Part::Text { text: "t".into() },
            Part::ToolCall {
                id: "call_0".into(),
                name: "calculator".into(),
                arguments: json!({"expression": "1+1"}),
            },
            Part::ToolCall {
                id: "mine".into(),
                name: "clock".into(),
                arguments: json!({}),
            },
        ]
    );
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        first.usage,
        Usage {
            input_tokens: 7,
            output_tokens: 3,
            model_calls: 1
        }
    );
    assert_eq!(first.directive, None);

    let second = p.complete(&r).await.unwrap();
    assert_eq!(second.finish_reason, FinishReason::Stop);
    assert_eq!(second.usage.model_calls, 1);
    assert_eq!(
        second.directive,
        Some(ModelDirective::FinalValue {
            value: json!({"answer": 42})
        })
    );
    assert_eq!(
        p.complete(&r).await.unwrap().directive,
        Some(ModelDirective::SwitchFrame {
            frame_id: "f".into(),
            task: "do it".into()
        })
    );
    assert_eq!(
        p.complete(&r).await.unwrap().directive,
        Some(ModelDirective::SubmitError {
            message: "nope".into()
        })
    );
    assert_eq!(
        p.complete(&r).await.unwrap().directive,
        Some(ModelDirective::FinalValue { value: json!(null) })
    );
}

#[tokio::test]
async fn fail_times_fails_retryably_that_many_times_then_serves_the_entry() {
    let p = ScriptedProvider::from_json_str(
        r#"{"responses": [{"text": "finally", "fail_times": 2}, {"text": "next"}]}"#,
    )
    .unwrap();
    let r = request(1, 0);
    for _ in 0..2 {
        let err = p.complete(&r).await.unwrap_err();
        assert!(err.retryable, "{err}");
    }
    assert_eq!(text_of(&p.complete(&r).await.unwrap()), "finally");
    assert_eq!(text_of(&p.complete(&r).await.unwrap()), "next");
}

#[tokio::test]
async fn fail_times_counts_attempts_per_turns_entry() {
    let p = ScriptedProvider::from_json_str(
        r#"{"turns": [[{"text": "a", "fail_times": 1}], [{"text": "b", "fail_times": 1}]]}"#,
    )
    .unwrap();
    assert!(p.complete(&request(1, 0)).await.unwrap_err().retryable);
    assert!(p.complete(&request(2, 0)).await.unwrap_err().retryable);
    assert_eq!(text_of(&p.complete(&request(1, 0)).await.unwrap()), "a");
    assert_eq!(text_of(&p.complete(&request(2, 0)).await.unwrap()), "b");
    assert_eq!(text_of(&p.complete(&request(2, 0)).await.unwrap()), "b");
}

#[tokio::test]
async fn error_entry_returns_that_provider_error_and_is_consumed() {
    let p = ScriptedProvider::from_json_str(
        r#"{"responses": [
            {"error": {"retryable": true, "message": "overloaded"}},
            {"error": {"message": "bad request"}},
            {"text": "ok"}
        ]}"#,
    )
    .unwrap();
    let r = request(1, 0);
    assert_eq!(
        p.complete(&r).await.unwrap_err(),
        ProviderError::retryable("overloaded")
    );
    assert_eq!(
        p.complete(&r).await.unwrap_err(),
        ProviderError::terminal("bad request")
    );
    assert_eq!(text_of(&p.complete(&r).await.unwrap()), "ok");
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    for bad in [
        r#"{"responses": [], "extra": 1}"#,
        r#"{"responses": [{"txt": "typo"}]}"#,
        r#"{"responses": [{"tool_calls": [{"name": "x", "args": {}}]}]}"#,
        r#"{"responses": [{"usage": {"input_tokens": 1, "total": 2}}]}"#,
        r#"{"turns": [[{"error": {"message": "m", "code": 5}}]]}"#,
    ] {
        let err = ScriptedProvider::from_json_str(bad).unwrap_err();
        assert_eq!(err.code(), "script_malformed", "{bad}");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}

#[test]
fn malformed_json_is_a_typed_error_with_position() {
    let err = ScriptedProvider::from_json_str(r#"{"responses": [{"text": "x"}"#).unwrap_err();
    assert!(matches!(err, ScriptError::Malformed { .. }));
    assert!(err.to_string().contains("line 1"), "{err}");
    let wrong_type = ScriptedProvider::from_json_str(r#"{"responses": {"text": "x"}}"#);
    assert!(matches!(wrong_type, Err(ScriptError::Malformed { .. })));
}

#[test]
fn scripts_breaking_format_rules_are_invalid() {
    for (bad, needle) in [
        (r#"{}"#, "needs a `responses`, a `turns` or an `every_turn`"),
        (r#"{"responses": [], "turns": []}"#, "set one of"),
        (r#"{"turns": [], "every_turn": []}"#, "set one of"),
        (
            r#"{"turns": [[{}, {"final_value": 1, "submit_error": "x"}]]}"#,
            "turns[0][1]",
        ),
        (
            r#"{"responses": [{"text": "t", "error": {"message": "m"}}]}"#,
            "no other keys",
        ),
        (
            r#"{"responses": [{"tool_calls": [{"name": "a"}, {"id": "call_0", "name": "b"}]}]}"#,
            "used twice",
        ),
        (
            r#"{"responses": [{"tool_calls": [{"name": " "}]}]}"#,
            "empty name",
        ),
    ] {
        let err = ScriptedProvider::from_json_str(bad).unwrap_err();
        assert_eq!(err.code(), "script_invalid", "{bad}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn from_file_reads_a_script_and_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.json");
    std::fs::write(
        &path,
        r#"{"turns": [[{"tool_calls": [{"name": "calculator"}, {"name": "notes"}]}, {"text": "done"}],
                      [{"tool_calls": [{"name": "clock"}]}]]}"#,
    )
    .unwrap();
    let p = ScriptedProvider::from_file(&path).unwrap();
    assert_eq!(p.name(), "scripted");
    assert_eq!(
        p.tool_names().into_iter().collect::<Vec<_>>(),
        vec!["calculator", "clock", "notes"]
    );

    let missing = dir.path().join("absent.json");
    let err = ScriptedProvider::from_file(&missing).unwrap_err();
    assert_eq!(err.code(), "script_unreadable");
    assert!(err.to_string().contains("absent.json"), "{err}");
}

#[tokio::test]
async fn every_turn_mode_answers_every_turn_of_every_session_alike() {
    let p = ScriptedProvider::from_json_str(
        r#"{"every_turn": [{"tool_calls": [{"name": "calculator"}]}, {"text": "done"}]}"#,
    )
    .unwrap();
    assert!(p.tool_names().contains("calculator"));
    let users = |n: usize, iteration: u32| ModelRequest {
        messages: (0..n)
            .map(|i| Message::text(format!("m{i}"), Role::User, "q"))
            .collect(),
        tools: Vec::new(),
        iteration,
    };
    for n in [1, 7, 500] {
        let first = p.complete(&users(n, 0)).await.unwrap();
        assert_eq!(first.finish_reason, FinishReason::ToolCalls, "{n}");
        let second = p.complete(&users(n, 1)).await.unwrap();
        assert_eq!(second.finish_reason, FinishReason::Stop, "{n}");
    }
    let past = p.complete(&users(1, 2)).await.unwrap_err();
    assert!(past.message.contains("every_turn[2]"), "{}", past.message);
}
