//! Where a replay left its recording, structurally: the step the recording
//! holds at that position, the step this build ran there, and the fields
//! of their identities that differ (turn, agent frame, phase, model
//! iteration, tool call id, input hash).

use super::{StepName, StepRecord};
use serde::Serialize;

/// A step's identity: which turn, which step, what input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepAt {
    /// The turn (or agent frame) the step belongs to.
    pub turn_id: String,
    /// The step name.
    pub step: String,
    /// Hash of its input.
    pub input_hash: String,
}

impl StepAt {
    /// The identity a record holds.
    pub fn of(record: &StepRecord) -> Self {
        StepAt {
            turn_id: record.turn_id.clone(),
            step: record.step.clone(),
            input_hash: record.input_hash.clone(),
        }
    }
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// `turn_id`, `frame`, `phase`, `iteration`, `call_id`, `input_hash`,
    /// or `step` when a name is not one this build knows.
    pub field: String,
    /// What the recording holds (`-` when the field does not apply).
    pub expected: String,
    /// What this build did.
    pub actual: String,
}

/// The first step at which a run left its recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// Its position in the recording (0-based).
    pub index: usize,
    /// The step the recording holds there (`None`: the recording ended).
    pub recorded: Option<StepAt>,
    /// The step this build ran there (`None`: the turn ended first).
    pub ran: Option<StepAt>,
    /// The fields that differ.
    pub fields: Vec<FieldDiff>,
}

impl Divergence {
    /// The divergence between what was recorded and what ran at `index`.
    pub fn at(index: usize, recorded: Option<StepAt>, ran: Option<StepAt>) -> Self {
        let fields = match (&recorded, &ran) {
            (Some(r), Some(a)) => diff(r, a),
            _ => Vec::new(),
        };
        Divergence {
            index,
            recorded,
            ran,
            fields,
        }
    }

    /// One line per differing field, `field: expected X, found Y`.
    pub fn describe(&self) -> String {
        match (&self.recorded, &self.ran) {
            (None, Some(ran)) => format!(
                "the recording ends after {} steps; this build ran '{}' next",
                self.index, ran.step
            ),
            (Some(rec), None) => format!(
                "this build ended the turn; the recording goes on with '{}'",
                rec.step
            ),
            (None, None) => format!("at step {} (no step identity was kept)", self.index + 1),
            _ => self
                .fields
                .iter()
                .map(|f| format!("{}: expected {}, found {}", f.field, f.expected, f.actual))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// The parts of a step name, by field.
fn parts(name: &StepName) -> Vec<(&'static str, String)> {
    let (phase, iteration, call) = match name.base() {
        StepName::Claim => ("claim", None, None),
        StepName::Prepare => ("prepare", None, None),
        StepName::Tools => ("tools", None, None),
        StepName::Model(i) => ("model", Some(*i), None),
        StepName::Tool { iteration, call } => ("tool", Some(*iteration), Some(call.clone())),
        StepName::Approval { iteration, call } => {
            ("approval", Some(*iteration), Some(call.clone()))
        }
        StepName::Decision { iteration, call } => {
            ("decision", Some(*iteration), Some(call.clone()))
        }
        StepName::Pending { iteration, call } => ("pending", Some(*iteration), Some(call.clone())),
        StepName::Completed { iteration, call } => {
            ("completed", Some(*iteration), Some(call.clone()))
        }
        StepName::Finalize => ("finalize", None, None),
        StepName::Commit => ("commit", None, None),
        StepName::Settle => ("settle", None, None),
        StepName::Frame { .. } => ("frame", None, None),
    };
    let dash = || "-".to_string();
    vec![
        ("frame", name.frame().to_string()),
        ("phase", phase.to_string()),
        (
            "iteration",
            iteration.map(|i| i.to_string()).unwrap_or_else(dash),
        ),
        ("call_id", call.unwrap_or_else(dash)),
    ]
}

fn diff(recorded: &StepAt, ran: &StepAt) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let mut push = |field: &str, expected: &str, actual: &str| {
        if expected != actual {
            out.push(FieldDiff {
                field: field.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    };
    push("turn_id", &recorded.turn_id, &ran.turn_id);
    match (
        recorded.step.parse::<StepName>(),
        ran.step.parse::<StepName>(),
    ) {
        (Ok(a), Ok(b)) => {
            for ((field, x), (_, y)) in parts(&a).iter().zip(&parts(&b)) {
                push(field, x, y);
            }
        }
        // A name this build does not know: compare whole names.
        _ => push("step", &recorded.step, &ran.step),
    }
    // The input only compares once the step itself is the same.
    if recorded.step == ran.step {
        push("input_hash", &recorded.input_hash, &ran.input_hash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(turn: &str, step: &str, hash: &str) -> StepAt {
        StepAt {
            turn_id: turn.into(),
            step: step.into(),
            input_hash: hash.into(),
        }
    }

    #[test]
    fn a_reordered_tool_call_differs_in_its_call_id_only() {
        let d = Divergence::at(
            3,
            Some(at("t", "tool:0:call_0", "a")),
            Some(at("t", "tool:0:call_2", "b")),
        );
        assert_eq!(d.fields.len(), 1, "{:?}", d.fields);
        assert_eq!(d.describe(), "call_id: expected call_0, found call_2");
    }

    #[test]
    fn the_same_step_with_another_input_differs_in_its_hash() {
        let d = Divergence::at(
            2,
            Some(at("t", "model:0", "a")),
            Some(at("t", "model:0", "b")),
        );
        assert_eq!(d.describe(), "input_hash: expected a, found b");
        let frame = Divergence::at(
            5,
            Some(at("t:agent-frame:1", "agent-frame:1:claim", "x")),
            Some(at("t", "finalize", "y")),
        );
        let fields: Vec<&str> = frame.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["turn_id", "frame", "phase"]);
    }

    #[test]
    fn an_unknown_step_name_is_compared_whole() {
        let d = Divergence::at(
            1,
            Some(at("t", "approval:0", "a")),
            Some(at("t", "prepare", "b")),
        );
        assert_eq!(d.describe(), "step: expected approval:0, found prepare");
        assert!(
            Divergence::at(0, None, None)
                .describe()
                .contains("at step 1")
        );
    }

    #[test]
    fn an_ended_recording_or_turn_says_which_side_ended() {
        let more = Divergence::at(4, None, Some(at("t", "commit", "c")));
        assert!(more.describe().contains("recording ends after 4 steps"));
        let less = Divergence::at(4, Some(at("t", "commit", "c")), None);
        assert!(less.describe().contains("goes on with 'commit'"));
    }
}
