//! The rules of a script that serde cannot express, and the walk over its
//! entries they are checked on.

use super::{Script, ScriptEntry, ScriptError, Slot};
use std::collections::HashSet;

/// Every entry with its slot, in script order.
pub(super) fn entries(script: &Script) -> Box<dyn Iterator<Item = (Slot, &ScriptEntry)> + '_> {
    match script {
        Script::Sequence(list) => {
            Box::new(list.iter().enumerate().map(|(i, e)| (Slot::Sequence(i), e)))
        }
        Script::EveryTurn(list) => Box::new(
            list.iter()
                .enumerate()
                .map(|(i, e)| (Slot::EveryTurn(i), e)),
        ),
        Script::Turns(turns) => Box::new(turns.iter().enumerate().flat_map(|(turn, list)| {
            list.iter()
                .enumerate()
                .map(move |(iteration, e)| (Slot::Turn { turn, iteration }, e))
        })),
    }
}

/// Checks the rules serde cannot express.
pub(super) fn validate(script: &Script, origin: &str) -> Result<(), ScriptError> {
    let invalid = |at: String, reason: &str| ScriptError::Invalid {
        origin: origin.to_string(),
        at,
        reason: reason.to_string(),
    };
    if entries(script).next().is_none() {
        return Err(invalid(
            "script".into(),
            "has no responses, so it could answer no model call",
        ));
    }
    if let Script::Turns(turns) = script
        && let Some(empty) = turns.iter().position(Vec::is_empty)
    {
        return Err(invalid(
            format!("turns[{empty}]"),
            "has no responses, so that turn could not run",
        ));
    }
    for (slot, entry) in entries(script) {
        check_entry(entry).map_err(|reason| ScriptError::Invalid {
            origin: origin.to_string(),
            at: slot.to_string(),
            reason,
        })?;
    }
    Ok(())
}

fn check_entry(entry: &ScriptEntry) -> Result<(), String> {
    let directives = [
        entry.final_value.is_some(),
        entry.switch_frame.is_some(),
        entry.submit_error.is_some(),
    ];
    if directives.iter().filter(|d| **d).count() > 1 {
        return Err("set at most one of `final_value`, `switch_frame`, `submit_error`".into());
    }
    if entry.error.is_some() {
        let only_error = ScriptEntry {
            error: entry.error.clone(),
            ..ScriptEntry::default()
        };
        if *entry != only_error {
            return Err("an `error` entry carries no other keys".into());
        }
    }
    let mut ids = HashSet::new();
    for (k, call) in entry.tool_calls.iter().enumerate() {
        if call.name.trim().is_empty() {
            return Err(format!("tool_calls[{k}] has an empty name"));
        }
        let id = call.id.clone().unwrap_or_else(|| format!("call_{k}"));
        if !ids.insert(id.clone()) {
            return Err(format!("tool call id '{id}' is used twice"));
        }
    }
    Ok(())
}
