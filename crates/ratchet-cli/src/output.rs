//! How commands print turns and history: readable by default, one JSON
//! object with `--json`.

use anyhow::Result;
use ratchet::engine::TurnResult;
use ratchet::model::{Message, Part, Role, TurnOutcome};
use ratchet::store::{SessionHead, StoredMessage, TurnRecord};
use serde_json::json;

fn describe(m: &Message) -> Vec<String> {
    let who = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
        Role::Event => "event",
    };
    m.parts
        .iter()
        .map(|p| match p {
            Part::Text { text } => format!("{who}: {text}"),
            Part::Image { uri, .. } => format!("{who}: [image {uri}]"),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => format!("{who} → {name}({arguments}) [{id}]"),
            Part::ToolResult {
                tool_call_id,
                content,
                is_error,
            } => format!(
                "{who} [{tool_call_id}]{}: {content}",
                if *is_error { " error" } else { "" }
            ),
            Part::Reasoning { text } => format!("{who} (reasoning): {text}"),
        })
        .collect()
}

fn outcome_line(o: &TurnOutcome) -> String {
    serde_json::to_string(o).unwrap_or_default()
}

/// Prints a turn (and its agent frames).
pub fn turn(t: &TurnResult, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(t)?);
        return Ok(());
    }
    for one in std::iter::once(t).chain(t.frames.iter()) {
        println!("turn {} (index {})", one.turn_id, one.turn_index);
        for m in &one.messages {
            for line in describe(m) {
                println!("  {line}");
            }
        }
        println!(
            "  outcome: {}  [version {}, {} tokens, {} ms{}]",
            outcome_line(&one.outcome),
            one.receipt.version,
            one.usage.total_tokens(),
            one.duration_ms,
            if one.receipt.replayed {
                ", replayed"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Prints a session's history.
pub fn history(
    head: &SessionHead,
    messages: &[StoredMessage],
    turns: &[TurnRecord],
    as_json: bool,
) -> Result<()> {
    if as_json {
        let v = json!({
            "session_id": head.session_id,
            "version": head.version,
            "usage": head.usage,
            "messages": messages,
            "turns": turns,
        });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!("session {} at version {}", head.session_id, head.version);
    let mut last_turn = "";
    for m in messages {
        if m.turn_id != last_turn {
            last_turn = &m.turn_id;
            if let Some(t) = turns.iter().find(|t| t.turn_id == m.turn_id) {
                println!("turn {} → {}", t.turn_id, outcome_line(&t.outcome));
            }
        }
        for line in describe(&m.message) {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The stable code of the library error inside `e`, if there is one.
pub fn error_code(e: &anyhow::Error) -> Option<String> {
    error_code_of(e).map(|c| c.to_string())
}

pub fn error_code_of(e: &anyhow::Error) -> Option<ratchet::ErrorCode> {
    use ratchet::engine::EngineError;
    use ratchet::store::StoreError;
    e.chain().find_map(|c| {
        c.downcast_ref::<EngineError>()
            .map(EngineError::code)
            .or_else(|| c.downcast_ref::<StoreError>().map(StoreError::code))
            .or_else(|| {
                c.downcast_ref::<ratchet::model::IdError>()
                    .map(|_| ratchet::ErrorCode::InvalidInput)
            })
    })
}

/// Whether an error refused the user's input, with nothing stored: the
/// CLI then exits 2, as for a usage error.
pub fn refused_input(e: &anyhow::Error) -> bool {
    use ratchet::ErrorCode::*;
    matches!(
        error_code_of(e),
        Some(InvalidInput | PayloadTooLarge | InputConflict | TurnIdConflict | InvalidArgument)
    )
}
