//! Admission: what `submit`, `turn` and the CLI check before anything is
//! stored, on both tiers. Whatever passes here can run: its ids make valid
//! turn and journal names, its size fits every record it will be part of,
//! and its content is what prepare accepts (items present, some text or a
//! resolvable image). Prepare checks the content again, for inputs stored
//! by older builds; only a plugin's veto stops an admitted input.

use super::{EngineError, TurnRequest};
use crate::ErrorCode;
use crate::model::{SessionCommand, TurnId, TurnInput};
use crate::store::{InboxPayload, NewInboxEntry};

/// Longest input id or trace turn id accepted, in bytes.
pub const MAX_EXTERNAL_ID_LEN: usize = 128;

/// An input that may be stored: its id and turn id fixed.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The input id (the caller's, or derived).
    pub input_id: String,
    /// The turn it runs as.
    pub turn_id: TurnId,
    /// The input, carrying its input id.
    pub input: TurnInput,
}

impl Admitted {
    /// The inbox entry that carries the input under its turn id.
    pub fn into_entry(self) -> NewInboxEntry {
        NewInboxEntry {
            id: self.input_id,
            turn_id: Some(self.turn_id.to_string()),
            payload: InboxPayload::Input(self.input),
        }
    }

    /// The inbox entry that carries the input as a steering message: the
    /// running turn takes it at its next model call, else it runs as an
    /// ordinary input under its turn id.
    pub fn into_steer_entry(self) -> NewInboxEntry {
        NewInboxEntry {
            payload: InboxPayload::Steer(self.input.clone()),
            ..self.into_entry()
        }
    }
}

fn invalid(message: String) -> EngineError {
    EngineError::InvalidInput {
        code: ErrorCode::InvalidInput,
        message,
    }
}

/// Checks a caller-chosen id: 1 to 128 bytes of printable ASCII without
/// spaces, so it is safe in turn ids, journal step names, URLs and logs.
pub fn check_external_id(what: &str, id: &str) -> Result<(), EngineError> {
    if id.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if id.len() > MAX_EXTERNAL_ID_LEN {
        return Err(invalid(format!(
            "{what} is {} bytes, over the limit of {MAX_EXTERNAL_ID_LEN}",
            id.len()
        )));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(invalid(format!(
            "{what} may hold only printable ASCII without spaces; found {c:?}"
        )));
    }
    Ok(())
}

/// Admits `input`: checks its size and ids, and fixes its input id (the
/// caller's, else `derive()`, which must be stable across retries) and turn
/// id. Refuses, with nothing stored, what could never run.
pub fn admit(
    mut input: TurnInput,
    max_input_bytes: usize,
    derive: impl FnOnce() -> String,
) -> Result<Admitted, EngineError> {
    let size = serde_json::to_vec(&input)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_input_bytes {
        return Err(EngineError::InvalidInput {
            code: ErrorCode::PayloadTooLarge,
            message: format!("input is {size} bytes, over the limit of {max_input_bytes}"),
        });
    }
    super::prepare::validate_input(&input, max_input_bytes).map_err(invalid)?;
    let input_id = match &input.input_id {
        Some(id) => {
            check_external_id("input_id", id)?;
            id.clone()
        }
        None => derive(),
    };
    if let Some(trace) = &input.trace_turn_id {
        check_external_id("trace_turn_id", trace)?;
        if trace.contains(":agent-frame:") {
            return Err(invalid(
                "trace_turn_id must not contain ':agent-frame:' (reserved for agent frames)".into(),
            ));
        }
    }
    let turn_id = TurnRequest::turn_id_for(&input_id, input.trace_turn_id.as_deref())
        .map_err(|e| invalid(e.to_string()))?;
    input.input_id = Some(input_id.clone());
    Ok(Admitted {
        input_id,
        turn_id,
        input,
    })
}

/// Admits a session command: its id (the caller's, checked like an input
/// id, else `derive()`) and the inbox entry that carries it. It applies at
/// the claim of the session's next input, in FIFO order.
/// A system prompt may be as large as an input: it is part of every model
/// request and of the prepare step's record, so a larger one could never run.
pub fn admit_command(
    command: SessionCommand,
    command_id: Option<String>,
    max_input_bytes: usize,
    derive: impl FnOnce() -> String,
) -> Result<NewInboxEntry, EngineError> {
    let id = match command_id {
        Some(id) => {
            check_external_id("command_id", &id)?;
            id
        }
        None => derive(),
    };
    match &command {
        SessionCommand::SetContextLimit { max_messages: 0 } => {
            return Err(invalid("max_messages must be at least 1".into()));
        }
        SessionCommand::SetSystemPrompt { prompt } if prompt.len() > max_input_bytes => {
            return Err(EngineError::InvalidInput {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "the system prompt is {} bytes, over the limit of {max_input_bytes}",
                    prompt.len()
                ),
            });
        }
        _ => {}
    }
    Ok(NewInboxEntry {
        id,
        turn_id: None,
        payload: InboxPayload::Command(command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ids(input_id: Option<&str>, trace: Option<&str>) -> TurnInput {
        let mut i = TurnInput::text("hi");
        i.input_id = input_id.map(str::to_string);
        i.trace_turn_id = trace.map(str::to_string);
        i
    }

    fn code(r: Result<Admitted, EngineError>) -> ErrorCode {
        r.expect_err("must be refused").code()
    }

    #[test]
    fn admission_fixes_the_input_and_turn_ids() {
        let a = admit(with_ids(Some("in-1"), None), 1024, || unreachable!()).unwrap();
        assert_eq!(a.turn_id.as_str(), "turn-in-1");
        assert_eq!(a.input.input_id.as_deref(), Some("in-1"));
        let b = admit(with_ids(None, Some("trace-7")), 1024, || "in-x".into()).unwrap();
        assert_eq!(
            (b.input_id.as_str(), b.turn_id.as_str()),
            ("in-x", "trace-7")
        );
    }

    #[test]
    fn ids_that_could_never_run_are_refused_at_the_door() {
        let long = "x".repeat(300);
        for (id, trace) in [
            (Some(long.as_str()), None),
            (Some("a\u{1}b"), None),
            (Some("has space"), None),
            (Some(""), None),
            (None, Some("")),
            (None, Some(long.as_str())),
            (None, Some("t:agent-frame:1")),
        ] {
            assert_eq!(
                code(admit(with_ids(id, trace), 1 << 20, || "in-d".into())),
                "invalid_input",
                "{id:?} {trace:?}"
            );
        }
    }

    #[test]
    fn an_input_over_the_limit_is_too_large() {
        let big = TurnInput::text("y".repeat(2000));
        assert_eq!(code(admit(big, 1000, || "in".into())), "payload_too_large");
    }
}
