//! The scripted scenarios the crash matrix runs: deterministic models, so a
//! crashed run must commit exactly what the crash-free run commits.

use serde_json::{Value, json};

/// One scenario: a script for the scripted model and the turn's input.
pub struct Scenario {
    /// Short name, used in session ids and the report.
    pub name: &'static str,
    /// The scripted model's script (turns mode: replay-safe).
    pub script: Value,
    /// The user's text.
    pub text: &'static str,
    /// More service environment.
    pub env: Vec<(&'static str, &'static str)>,
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output})
}

/// The scenarios: a plain answer; three tool calls over two model calls;
/// an agent frame switch whose frame calls a tool; a tool call that waits
/// for approval (the turn suspends; the matrix's resolver approves it).
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "plain",
            text: "Say hello.",
            script: json!({"turns": [[{"text": "Hello there.", "usage": usage(12, 3)}]]}),
            env: Vec::new(),
        },
        Scenario {
            name: "tools",
            text: "What is 17*23+4, remember milk, and what time is it?",
            script: json!({"turns": [[
                {"tool_calls": [
                    {"id": "call_0", "name": "calculator", "arguments": {"expression": "17*23+4"}},
                    {"id": "call_1", "name": "notes", "arguments": {"text": "milk"}},
                    {"id": "call_2", "name": "clock", "arguments": {}}
                ], "usage": usage(40, 12)},
                {"text": "395; noted milk; and I told you the time.", "usage": usage(70, 11)}
            ]]}),
            env: Vec::new(),
        },
        Scenario {
            name: "frame",
            text: "Hand this to the researcher.",
            script: json!({"turns": [
                [{"switch_frame": {"frame_id": "researcher", "task": "Compute 6*7."}, "usage": usage(20, 5)}],
                [
                    {"tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "6*7"}}], "usage": usage(30, 6)},
                    {"text": "It is 42.", "usage": usage(36, 4)}
                ]
            ]}),
            env: Vec::new(),
        },
        Scenario {
            name: "approval",
            text: "Remember eggs, and what is 6*7?",
            script: json!({"turns": [[
                {"tool_calls": [
                    {"id": "call_0", "name": "notes", "arguments": {"text": "eggs"}},
                    {"id": "call_1", "name": "calculator", "arguments": {"expression": "6*7"}}
                ], "usage": usage(30, 9)},
                {"text": "Noted eggs; 42.", "usage": usage(50, 4)}
            ]]}),
            env: vec![
                ("RATCHET_APPROVE_TOOLS", "notes"),
                ("RATCHET_INACTIVITY_TIMEOUT_MS", "1000"),
            ],
        },
    ]
}
