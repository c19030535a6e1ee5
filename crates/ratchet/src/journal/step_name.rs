//! [`StepName`]: the typed identity of a journal step. A step's name comes
//! from its position in the turn — never from call order or a clock — and
//! is written to the journal as its string form (`claim`, `model:0`,
//! `tool:1:call_2`, `agent-frame:1:commit`, ...), which [`std::str::FromStr`]
//! reads back.

use std::fmt;
use std::str::FromStr;

/// Which step of a turn a record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StepName {
    /// Phase 1: lease, input and base version.
    Claim,
    /// Phase 2: verdict and context plan.
    Prepare,
    /// After prepare, for an agent with tool sources: what each offered.
    Tools,
    /// The `i`th model call of the effect loop.
    Model(u32),
    /// A tool call the `iteration`th model call asked for.
    Tool {
        /// The model call that asked for it.
        iteration: u32,
        /// The tool call's id.
        call: String,
    },
    /// Before a tool call that needs approval: the wait is announced (its
    /// row and the `approval_requested` event).
    Approval {
        /// The model call that asked for the tool.
        iteration: u32,
        /// The tool call's id.
        call: String,
    },
    /// After the wait: the decision (approved, rejected or expired).
    Decision {
        /// The model call that asked for the tool.
        iteration: u32,
        /// The tool call's id.
        call: String,
    },
    /// After a tool answered "pending": the wait for its result is
    /// announced (its row and the `tool_pending` event).
    Pending {
        /// The model call that asked for the tool.
        iteration: u32,
        /// The tool call's id.
        call: String,
    },
    /// After that wait: the result (or its expiry).
    Completed {
        /// The model call that asked for the tool.
        iteration: u32,
        /// The tool call's id.
        call: String,
    },
    /// Phase 4: the settled outcome.
    Finalize,
    /// Phase 5: the commit receipt.
    Commit,
    /// The commit of a turn settled as stopped after its own failed.
    Settle,
    /// A step of the `frame`th agent frame followed from the root turn.
    Frame {
        /// The frame, from 1.
        frame: u32,
        /// The step inside it (never itself a frame step).
        step: Box<StepName>,
    },
}

const FRAME_PREFIX: &str = "agent-frame:";

impl StepName {
    /// This step as it is named inside agent frame `frame` (0: the root).
    pub fn in_frame(self, frame: u32) -> StepName {
        if frame == 0 {
            self
        } else {
            StepName::Frame {
                frame,
                step: Box::new(self),
            }
        }
    }

    /// The step without its frame.
    pub fn base(&self) -> &StepName {
        match self {
            StepName::Frame { step, .. } => step,
            other => other,
        }
    }

    /// The frame the step belongs to (0 for the root turn).
    pub fn frame(&self) -> u32 {
        match self {
            StepName::Frame { frame, .. } => *frame,
            _ => 0,
        }
    }

    /// Whether this step calls a model or a tool (an effect that may repeat
    /// if the process dies while it runs).
    pub fn is_effect(&self) -> bool {
        matches!(self.base(), StepName::Model(_) | StepName::Tool { .. })
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepName::Claim => f.write_str("claim"),
            StepName::Prepare => f.write_str("prepare"),
            StepName::Tools => f.write_str("tools"),
            StepName::Model(i) => write!(f, "model:{i}"),
            StepName::Tool { iteration, call } => write!(f, "tool:{iteration}:{call}"),
            StepName::Approval { iteration, call } => write!(f, "approval:{iteration}:{call}"),
            StepName::Decision { iteration, call } => write!(f, "decision:{iteration}:{call}"),
            StepName::Pending { iteration, call } => write!(f, "pending:{iteration}:{call}"),
            StepName::Completed { iteration, call } => write!(f, "completed:{iteration}:{call}"),
            StepName::Finalize => f.write_str("finalize"),
            StepName::Commit => f.write_str("commit"),
            StepName::Settle => f.write_str("settle"),
            StepName::Frame { frame, step } => write!(f, "{FRAME_PREFIX}{frame}:{step}"),
        }
    }
}

/// Why a string is not a step name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a step name")]
pub struct StepNameError(pub String);

impl FromStr for StepName {
    type Err = StepNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StepNameError(s.to_string());
        if let Some(rest) = s.strip_prefix(FRAME_PREFIX) {
            let (n, inner) = rest.split_once(':').ok_or_else(bad)?;
            let frame: u32 = n.parse().map_err(|_| bad())?;
            let step: StepName = inner.parse().map_err(|_| bad())?;
            if frame == 0 || matches!(step, StepName::Frame { .. }) {
                return Err(bad());
            }
            return Ok(step.in_frame(frame));
        }
        match s {
            "claim" => return Ok(StepName::Claim),
            "prepare" => return Ok(StepName::Prepare),
            "tools" => return Ok(StepName::Tools),
            "finalize" => return Ok(StepName::Finalize),
            "commit" => return Ok(StepName::Commit),
            "settle" => return Ok(StepName::Settle),
            _ => {}
        }
        if let Some(i) = s.strip_prefix("model:") {
            return i.parse().map(StepName::Model).map_err(|_| bad());
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (i, call) = rest.split_once(':').ok_or_else(bad)?;
        if call.is_empty() {
            return Err(bad());
        }
        let (iteration, call) = (i.parse().map_err(|_| bad())?, call.to_string());
        match kind {
            "tool" => Ok(StepName::Tool { iteration, call }),
            "approval" => Ok(StepName::Approval { iteration, call }),
            "decision" => Ok(StepName::Decision { iteration, call }),
            "pending" => Ok(StepName::Pending { iteration, call }),
            "completed" => Ok(StepName::Completed { iteration, call }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_read_back_as_they_are_written() {
        let tool = StepName::Tool {
            iteration: 1,
            call: "call:x".into(),
        };
        for step in [
            StepName::Claim,
            StepName::Prepare,
            StepName::Tools,
            StepName::Model(3),
            tool.clone(),
            StepName::Finalize,
            StepName::Commit,
            StepName::Settle,
            StepName::Commit.in_frame(2),
            tool.clone().in_frame(1),
            StepName::Approval {
                iteration: 0,
                call: "c".into(),
            },
            StepName::Decision {
                iteration: 2,
                call: "c:1".into(),
            }
            .in_frame(1),
            StepName::Pending {
                iteration: 1,
                call: "c".into(),
            },
            StepName::Completed {
                iteration: 1,
                call: "c".into(),
            },
        ] {
            assert_eq!(step.to_string().parse::<StepName>(), Ok(step.clone()));
        }
        assert_eq!(tool.to_string(), "tool:1:call:x");
        assert_eq!(
            StepName::Model(0).in_frame(1).to_string(),
            "agent-frame:1:model:0"
        );
        for bad in [
            "",
            "nap",
            "model:x",
            "tool:1",
            "tool:1:",
            "approval:x:c",
            "other:1:c",
            "agent-frame:0:claim",
            "agent-frame:1:agent-frame:2:claim",
        ] {
            assert!(bad.parse::<StepName>().is_err(), "{bad}");
        }
    }
}
