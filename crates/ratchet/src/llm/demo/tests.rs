//! Unit tests for the demo model's rules and its answers from tool results.

use super::*;
use crate::llm::ToolSpec;

fn tools(names: &[&str]) -> Vec<ToolSpec> {
    names
        .iter()
        .map(|n| ToolSpec {
            name: (*n).to_string(),
            description: format!("the {n} tool"),
            parameters: json!({"type": "object"}),
        })
        .collect()
}

fn all_tools() -> Vec<ToolSpec> {
    tools(&["calculator", "notes", "clock"])
}

fn ask(question: &str) -> ModelRequest {
    ModelRequest {
        messages: vec![
            Message::text("s", Role::System, "You are helpful."),
            Message::text("u", Role::User, question),
        ],
        tools: all_tools(),
        iteration: 0,
    }
}

fn calls(r: &ModelResponse) -> Vec<(String, String, Value)> {
    r.parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some((id.clone(), name.clone(), arguments.clone())),
            _ => None,
        })
        .collect()
}

fn text(r: &ModelResponse) -> String {
    Message {
        id: String::new(),
        role: Role::Assistant,
        parts: r.parts.clone(),
    }
    .text_content()
}

/// The request after the model's calls and the tools' results.
fn follow_up(mut request: ModelRequest, first: &ModelResponse, results: &[&str]) -> ModelRequest {
    request.messages.push(Message {
        id: "a".into(),
        role: Role::Assistant,
        parts: first.parts.clone(),
    });
    for ((id, _, _), content) in calls(first).iter().zip(results) {
        request.messages.push(Message {
            id: format!("t{id}"),
            role: Role::Tool,
            parts: vec![Part::ToolResult {
                tool_call_id: id.clone(),
                content: (*content).to_string(),
                is_error: false,
            }],
        });
    }
    request.iteration = 1;
    request
}

#[tokio::test]
async fn arithmetic_question_calls_the_calculator_then_answers_with_its_result() {
    let request = ask("What is 17*23+4?");
    let first = DemoModel.complete(&request).await.unwrap();
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        calls(&first),
        vec![(
            "call_0".into(),
            "calculator".into(),
            json!({"expression": "17*23+4"})
        )]
    );
    let second = DemoModel
        .complete(&follow_up(request, &first, &["395"]))
        .await
        .unwrap();
    assert_eq!(second.finish_reason, FinishReason::Stop);
    assert_eq!(text(&second), "17*23+4 = 395");
}

#[tokio::test]
async fn several_rules_make_one_call_each_in_rule_order() {
    let request = ask("What is 2+2 and what time is it? Also remember milk.");
    let first = DemoModel.complete(&request).await.unwrap();
    assert_eq!(
        calls(&first),
        vec![
            (
                "call_0".into(),
                "calculator".into(),
                json!({"expression": "2+2"})
            ),
            ("call_1".into(), "notes".into(), json!({"text": "milk"})),
            ("call_2".into(), "clock".into(), json!({})),
        ]
    );
    let second = DemoModel
        .complete(&follow_up(
            request,
            &first,
            &["4", "saved", "2025-01-01T00:00:00Z"],
        ))
        .await
        .unwrap();
    assert_eq!(
        text(&second),
        "2+2 = 4\nNoted: milk\nThe time is 2025-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn remember_is_case_insensitive_and_keeps_the_rest_of_the_message() {
    let first = DemoModel
        .complete(&ask("REMEMBER that the door code is 12-34!"))
        .await
        .unwrap();
    assert_eq!(
        calls(&first),
        vec![(
            "call_0".into(),
            "notes".into(),
            json!({"text": "the door code is 12-34"})
        )]
    );
}

#[tokio::test]
async fn what_time_calls_the_clock_with_no_arguments() {
    let first = DemoModel
        .complete(&ask("Hey, what time is it?"))
        .await
        .unwrap();
    assert_eq!(
        calls(&first),
        vec![("call_0".into(), "clock".into(), json!({}))]
    );
}

#[tokio::test]
async fn plain_message_gets_a_reply_saying_it_is_the_offline_demo_model() {
    let r = DemoModel.complete(&ask("Tell me a story")).await.unwrap();
    assert_eq!(r.finish_reason, FinishReason::Stop);
    assert!(calls(&r).is_empty());
    assert!(text(&r).contains("offline demo model"), "{}", text(&r));
    assert!(DemoModel.name().contains("no LLM"));
}

#[tokio::test]
async fn a_rule_whose_tool_is_not_offered_makes_no_call_and_says_so() {
    let mut request = ask("What is 6*7?");
    request.tools = tools(&["clock"]);
    let r = DemoModel.complete(&request).await.unwrap();
    assert!(calls(&r).is_empty());
    assert!(text(&r).contains("calculator"), "{}", text(&r));
}

#[tokio::test]
async fn failed_tool_result_is_reported_not_hidden() {
    let request = ask("What is 1/0?");
    let first = DemoModel.complete(&request).await.unwrap();
    let mut next = follow_up(request, &first, &["division by zero"]);
    if let Some(Part::ToolResult { is_error, .. }) =
        next.messages.last_mut().unwrap().parts.first_mut()
    {
        *is_error = true;
    }
    let r = DemoModel.complete(&next).await.unwrap();
    assert_eq!(text(&r), "The calculator tool failed: division by zero");
}

#[tokio::test]
async fn usage_counts_words_deterministically() {
    let request = ask("Tell me a story");
    let a = DemoModel.complete(&request).await.unwrap();
    let b = DemoModel.complete(&request).await.unwrap();
    assert_eq!(a, b);
    // "You are helpful." + "Tell me a story"
    assert_eq!(a.usage.input_tokens, 7);
    assert_eq!(
        a.usage.output_tokens,
        text(&a).split_whitespace().count() as u64
    );
    assert_eq!(a.usage.model_calls, 1);
}

#[test]
fn expression_extraction_ignores_plain_numbers_and_trims_punctuation() {
    assert_eq!(
        find_expression("What is 17*23+4?").as_deref(),
        Some("17*23+4")
    );
    assert_eq!(
        find_expression("Compute (2 + 3) * 4.").as_deref(),
        Some("(2 + 3) * 4")
    );
    assert_eq!(find_expression("(see 10/4)").as_deref(), Some("10/4"));
    assert_eq!(
        find_expression("what is -3 + 1.5").as_deref(),
        Some("-3 + 1.5")
    );
    assert_eq!(find_expression("I have 3 cats and 2.5 dogs."), None);
    assert_eq!(find_expression("an e-mail - today"), None);
}
