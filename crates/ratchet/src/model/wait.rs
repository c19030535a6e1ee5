//! Durable waits: a turn that waits for a person's approval of a tool call,
//! or for the result of a tool that finishes later. A wait is named by its
//! step's position in the turn; the store keeps one row per wait (pending,
//! resolved or expired), so a resolution for an unknown call, or a second,
//! different one for a settled call, can be told apart from the first.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a wait waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// A person's decision on a tool call.
    Approval,
    /// The result of a tool that answered "pending".
    ToolResult,
}

/// Where a wait is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitState {
    /// Nothing has arrived yet and the deadline has not passed.
    Pending,
    /// A decision arrived first.
    Resolved,
    /// The deadline passed first.
    Expired,
}

impl WaitState {
    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitState::Pending => "pending",
            WaitState::Resolved => "resolved",
            WaitState::Expired => "expired",
        }
    }

    /// Reads a stored state name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(WaitState::Pending),
            "resolved" => Some(WaitState::Resolved),
            "expired" => Some(WaitState::Expired),
            _ => None,
        }
    }
}

/// An approver's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The tool may run.
    Approve,
    /// The tool must not run.
    Reject,
}

/// The result an outside system completes a pending tool call with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCompletion {
    /// The text the model sees.
    pub content: String,
    /// Whether it is an error result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// A structured value, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// A decision on a tool call that waits for approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Approve or reject.
    pub decision: Verdict,
    /// The approver's note, passed to the model with a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Longest approver's note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

impl Decision {
    /// Checks a decision before anything stores it.
    pub fn check(&self) -> Result<(), String> {
        match &self.note {
            Some(n) if n.len() > MAX_NOTE_BYTES => Err(format!(
                "the note is {} bytes, over the limit of {MAX_NOTE_BYTES}",
                n.len()
            )),
            _ => Ok(()),
        }
    }
}

/// One durable wait of a session, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Wait {
    /// The id a decision can name the wait by: on the durable tier the
    /// Restate awakeable id (so Restate's own awakeable API can resolve it),
    /// inline `{turn}:{step}`.
    pub wait_id: String,
    /// The tool call it holds.
    pub call_id: String,
    /// The turn it belongs to.
    pub turn_id: String,
    /// What it waits for.
    pub kind: WaitKind,
    /// The tool.
    pub tool: String,
    /// The call's arguments (scrubbed of secrets).
    pub arguments: serde_json::Value,
    /// When it expires (ms since the epoch, the turn's clock).
    pub deadline_ms: u64,
    /// Pending, resolved or expired.
    pub state: WaitState,
    /// What resolved it: a [`Decision`] for an approval, a
    /// [`ToolCompletion`] for a pending tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Whether a Restate awakeable carries the wait (the durable tier): a
    /// decision is then also delivered to it.
    #[serde(default)]
    pub awakeable: bool,
}

impl Wait {
    /// The approval decision that resolved it, if one did.
    pub fn decision(&self) -> Option<Decision> {
        serde_json::from_value(self.value.clone()?).ok()
    }
}

/// What a resolution did to a wait.
#[derive(Clone, Debug, PartialEq)]
pub enum Decided {
    /// It settled the pending wait.
    Recorded(Wait),
    /// The same resolution had settled it already (idempotent).
    Duplicate(Wait),
    /// The wait was settled otherwise (another resolution, or expiry).
    Conflict(Wait),
    /// No wait of that kind for that call in the session.
    Unknown,
}

/// Picks the wait a resolution for `call_id` names among a session's waits
/// (oldest first): its pending wait of `kind`, else its latest of `kind`.
pub fn wait_for_call<'a>(waits: &'a [Wait], kind: WaitKind, call_id: &str) -> Option<&'a Wait> {
    let mine = || {
        waits
            .iter()
            .filter(|w| w.call_id == call_id && w.kind == kind)
    };
    mine()
        .find(|w| w.state == WaitState::Pending)
        .or_else(|| mine().next_back())
}

/// What `value` does to `wait`; `Some` in `Recorded` is the row to store.
pub fn decide(wait: &Wait, value: &serde_json::Value) -> Decided {
    match wait.state {
        WaitState::Pending => Decided::Recorded(Wait {
            state: WaitState::Resolved,
            value: Some(value.clone()),
            ..wait.clone()
        }),
        WaitState::Resolved if wait.value.as_ref() == Some(value) => {
            Decided::Duplicate(wait.clone())
        }
        _ => Decided::Conflict(wait.clone()),
    }
}

/// What the turn settles a wait with once it wakes: the value it woke
/// with, or `None` at the deadline. A wait already settled keeps its state
/// (the first settlement wins); `Some` is the row to store.
pub fn settle(wait: &Wait, woke_with: Option<&serde_json::Value>) -> Option<Wait> {
    if wait.state != WaitState::Pending {
        return None;
    }
    Some(match woke_with {
        Some(v) => Wait {
            state: WaitState::Resolved,
            value: Some(v.clone()),
            ..wait.clone()
        },
        None => Wait {
            state: WaitState::Expired,
            ..wait.clone()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wait(call: &str, state: WaitState) -> Wait {
        Wait {
            wait_id: format!("w-{call}"),
            call_id: call.into(),
            turn_id: "t".into(),
            kind: WaitKind::Approval,
            tool: "charge".into(),
            arguments: json!({}),
            deadline_ms: 10,
            state,
            value: None,
            awakeable: false,
        }
    }

    #[test]
    fn a_decision_settles_once_and_repeats_idempotently() {
        let approve = json!({"decision": "approve"});
        let reject = json!({"decision": "reject", "note": "no"});
        let Decided::Recorded(done) = decide(&wait("c", WaitState::Pending), &approve) else {
            panic!("a pending wait takes the decision");
        };
        assert_eq!(done.state, WaitState::Resolved);
        assert_eq!(done.decision().unwrap().decision, Verdict::Approve);
        assert!(matches!(decide(&done, &approve), Decided::Duplicate(_)));
        assert!(matches!(decide(&done, &reject), Decided::Conflict(_)));
        assert!(matches!(
            decide(&wait("c", WaitState::Expired), &approve),
            Decided::Conflict(_)
        ));
        assert_eq!(settle(&done, None), None, "the first settlement wins");
        let expired = settle(&wait("c", WaitState::Pending), None).unwrap();
        assert_eq!(expired.state, WaitState::Expired);
    }

    #[test]
    fn the_pending_wait_of_a_call_is_the_one_decided() {
        let waits = [
            wait("c", WaitState::Resolved),
            wait("c", WaitState::Pending),
            wait("d", WaitState::Pending),
        ];
        let approval = WaitKind::Approval;
        assert_eq!(
            wait_for_call(&waits, approval, "c").unwrap().state,
            WaitState::Pending
        );
        let settled = [
            wait("c", WaitState::Resolved),
            wait("c", WaitState::Expired),
        ];
        assert_eq!(
            wait_for_call(&settled, approval, "c").unwrap().state,
            WaitState::Expired
        );
        assert!(wait_for_call(&waits, approval, "x").is_none());
        assert!(wait_for_call(&waits, WaitKind::ToolResult, "c").is_none());
        let long = Decision {
            decision: Verdict::Reject,
            note: Some("x".repeat(MAX_NOTE_BYTES + 1)),
        };
        assert!(long.check().is_err());
    }
}
