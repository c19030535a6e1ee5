//! Approval of tool calls: a call that needs approval waits durably (see
//! [`super::wait`]) before its tool step: `approval:{i}:{call}` announces
//! it (`approval_requested`), `decision:{i}:{call}` settles it
//! (`approval_decided`). Approved, the tool step runs as ever, exactly once;
//! rejected or expired, the model gets an error result naming the decision
//! and the approver's note, and the tool never runs.

use super::TurnCx;
use super::claim::ClaimRecord;
use super::wait::{WaitPlan, wait};
use crate::journal::JournalError;
use crate::model::{Decision, EventKind, Verdict, WaitKind};
use serde_json::Value;

/// How an approval ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalRecord {
    /// The tool may run.
    Approve {
        /// The approver's note.
        note: Option<String>,
    },
    /// The tool must not run.
    Reject {
        /// The approver's note.
        note: Option<String>,
    },
    /// No decision arrived before the deadline.
    Expired,
}

impl ApprovalRecord {
    fn of(value: Option<&Value>) -> Self {
        match value.map(|v| serde_json::from_value::<Decision>(v.clone())) {
            None => ApprovalRecord::Expired,
            Some(Ok(Decision {
                decision: Verdict::Approve,
                note,
            })) => ApprovalRecord::Approve { note },
            Some(Ok(Decision { note, .. })) => ApprovalRecord::Reject { note },
            Some(Err(e)) => ApprovalRecord::Reject {
                note: Some(format!("the decision could not be read: {e}")),
            },
        }
    }

    /// The tool result the model gets when the tool does not run.
    pub fn refusal(&self, timeout_ms: u64) -> Option<String> {
        let noted = |what: &str, note: &Option<String>| match note {
            Some(n) => format!("{what}; the approver's note: {n}"),
            None => what.to_string(),
        };
        match self {
            ApprovalRecord::Approve { .. } => None,
            ApprovalRecord::Reject { note } => {
                Some(noted("not run: the approver rejected this call", note))
            }
            ApprovalRecord::Expired => Some(format!(
                "not run: no approval arrived within {timeout_ms} ms"
            )),
        }
    }

    fn event(&self, call_id: &str) -> EventKind {
        let (decision, note) = match self {
            ApprovalRecord::Approve { note } => ("approve", note.clone()),
            ApprovalRecord::Reject { note } => ("reject", note.clone()),
            ApprovalRecord::Expired => ("expired", None),
        };
        EventKind::ApprovalDecided {
            tool_call_id: call_id.to_string(),
            decision: decision.to_string(),
            note,
        }
    }
}

/// A resolved promise's value as a decision. One that is not a valid
/// decision (Restate's awakeable API takes any JSON) rejects the call: the
/// tool must not run on a decision nobody can read.
fn read_decision(value: Value) -> Value {
    let decision = match serde_json::from_value::<Decision>(value) {
        Ok(d) if d.check().is_ok() => d,
        Ok(d) => Decision {
            decision: Verdict::Reject,
            note: d.check().err(),
        },
        Err(e) => Decision {
            decision: Verdict::Reject,
            note: Some(format!("the decision could not be read: {e}")),
        },
    };
    serde_json::to_value(decision).unwrap_or(Value::Null)
}

/// Whether a call must wait for approval: the agent's policy names the
/// tool, the tool says so, or a plugin does. Pure: it runs between steps.
pub fn required(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    tools: &crate::tools::ToolRegistry,
    tool: &str,
    args: &Value,
) -> bool {
    let rt = cx.rt;
    rt.config.approval.tools.contains(tool)
        || tools.get(tool).is_some_and(|t| t.requires_approval(args))
        || rt
            .plugins
            .iter()
            .any(|p| p.requires_approval(&cx.turn_info(&claim.settings), tool, args))
}

/// Announces the approval, waits for it, and settles it.
pub async fn run(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    iteration: u32,
    call_id: &str,
    tool: &str,
    args: &Value,
) -> Result<ApprovalRecord, JournalError> {
    let timeout_ms = cx.rt.config.approval.timeout_ms;
    let plan = WaitPlan {
        kind: WaitKind::Approval,
        iteration,
        call_id,
        tool,
        arguments: args.clone(),
        timeout_ms,
        requested: Box::new(move |wait_id, deadline_ms| {
            let mut arguments = args.clone();
            crate::secrets::redact_value(&mut arguments);
            EventKind::ApprovalRequested {
                tool_call_id: call_id.to_string(),
                name: tool.to_string(),
                arguments,
                deadline_ms,
                wait_id: wait_id.to_string(),
            }
        }),
        settled: Box::new(move |value| ApprovalRecord::of(value).event(call_id)),
        read: read_decision,
    };
    let value = wait(cx, claim, plan).await?;
    Ok(ApprovalRecord::of(value.as_ref()))
}
