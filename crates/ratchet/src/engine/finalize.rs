//! Phase 4, finalize: settle the outcome (an agent frame past the limit
//! stops the chain), run the finalize hooks, and assemble the events the
//! commit appends. Records the finish time for the turn's duration.

use super::claim::ClaimRecord;
use super::effect_loop::Effects;
use super::{TurnCx, input_hash};
use crate::journal::{JournalError, StepName};
use crate::model::{EventKind, Message, SessionEvent, StopReason, TurnOutcome, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the finalize step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalizeRecord {
    /// The settled outcome.
    pub outcome: TurnOutcome,
    /// Output of finalize hooks, by plugin name.
    pub hook_output: BTreeMap<String, serde_json::Value>,
    /// Events the commit appends, ids `{turn_id}:{seq}`. Derived from the
    /// records after the step; only records of older builds carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SessionEvent>,
    /// Whether the commit keeps the lease (an agent frame follows).
    pub keep_lease: bool,
    /// When the turn finished (the injected clock).
    pub finished_at_ms: u64,
}

/// The facts finalize settles.
pub struct FinalizeInput<'a> {
    /// The claim.
    pub claim: &'a ClaimRecord,
    /// This turn's messages.
    pub messages: &'a [Message],
    /// Tokens used.
    pub usage: Usage,
    /// The outcome so far.
    pub outcome: TurnOutcome,
    /// Tool events.
    pub tool_events: &'a [EventKind],
    /// Whether another agent frame may follow.
    pub may_switch_frame: bool,
}

impl<'a> FinalizeInput<'a> {
    /// The input for a turn that went through the effect loop.
    pub fn from_effects(
        claim: &'a ClaimRecord,
        effects: &'a Effects,
        may_switch_frame: bool,
    ) -> Self {
        FinalizeInput {
            claim,
            messages: &effects.messages,
            usage: effects.usage,
            outcome: effects.outcome.clone(),
            tool_events: &effects.events,
            may_switch_frame,
        }
    }
}

/// Runs the finalize step.
pub async fn run(
    cx: &TurnCx<'_>,
    input: FinalizeInput<'_>,
) -> Result<FinalizeRecord, JournalError> {
    let rt = cx.rt;
    let ids: Vec<&str> = input.messages.iter().map(|m| m.id.as_str()).collect();
    let hash = input_hash(&("finalize", &input.outcome, &ids, &input.usage))?;
    let input_facts = EventFacts {
        base_version: input.claim.base_version,
        commands: input
            .claim
            .commands
            .iter()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect(),
        tool_events: input.tool_events.to_vec(),
        usage: input.usage,
    };
    let mut record: FinalizeRecord = cx
        .step(StepName::Finalize, &hash, async move {
            let mut outcome = input.outcome;
            if matches!(outcome, TurnOutcome::AgentFrameSwitch { .. }) && !input.may_switch_frame {
                outcome = TurnOutcome::stopped(
                    StopReason::MaxTurns,
                    format!("agent frame limit of {} reached", rt.config.max_frames),
                );
            }
            let mut hook_output = BTreeMap::new();
            for p in rt.plugins.iter() {
                if let Some(v) = p
                    .finalize(&cx.turn_info(&input.claim.settings), &outcome)
                    .await
                {
                    hook_output.insert(p.name().to_string(), v);
                }
            }
            if matches!(outcome, TurnOutcome::Stopped(_)) {
                super::wait::expire_left(cx).await?;
            }
            Ok(FinalizeRecord {
                keep_lease: matches!(outcome, TurnOutcome::AgentFrameSwitch { .. }),
                outcome,
                hook_output,
                events: Vec::new(),
                finished_at_ms: rt.clock.now_ms(),
            })
        })
        .await?;
    // Events are a pure function of the records: derived, not journaled
    // (records written by older builds carry them and are used as they are).
    if record.events.is_empty() {
        record.events = derive_events(cx.turn.as_str(), &input_facts, &record.outcome);
    }
    Ok(record)
}

/// What the events of a turn are derived from.
struct EventFacts {
    base_version: u64,
    commands: Vec<serde_json::Value>,
    tool_events: Vec<EventKind>,
    usage: Usage,
}

/// The events a turn appends, ids `{turn_id}:{seq}`.
fn derive_events(turn: &str, facts: &EventFacts, outcome: &TurnOutcome) -> Vec<SessionEvent> {
    let mut kinds = vec![EventKind::TurnStarted {
        turn_index: facts.base_version,
    }];
    kinds.extend(
        facts
            .commands
            .iter()
            .map(|c| EventKind::CommandApplied { command: c.clone() }),
    );
    kinds.extend(facts.tool_events.iter().cloned());
    if let TurnOutcome::Stopped(stop) = outcome {
        let code = serde_json::to_value(stop.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        kinds.push(EventKind::Error {
            code,
            message: stop.message.clone(),
        });
    }
    kinds.push(EventKind::TurnCommitted {
        version: facts.base_version + 1,
        outcome: outcome.clone(),
        usage: facts.usage,
    });
    kinds
        .into_iter()
        .enumerate()
        .map(|(seq, kind)| SessionEvent::new(turn, seq, kind))
        .collect()
}

/// The events of a turn stopped before it ran any effect: started, the
/// error, committed.
pub(crate) fn stopped_events(
    turn: &str,
    base_version: u64,
    outcome: &TurnOutcome,
) -> Vec<SessionEvent> {
    let facts = EventFacts {
        base_version,
        commands: Vec::new(),
        tool_events: Vec::new(),
        usage: Usage::default(),
    };
    derive_events(turn, &facts, outcome)
}
