//! The `tools` step, after prepare and only when the agent has tool
//! sources (MCP servers): inside the step body it lists every source, under
//! the source's timeout and retry policy, and records what each offered.
//! The turn's registry is built from that record, so replay offers the
//! model the same tools and dispatches calls the same way, whatever the
//! sources answer by then.
//!
//! A source that cannot be listed is recorded as unavailable: its tools are
//! not offered and a `tool_source_unavailable` event says so; a source that
//! is `required` stops the turn `ToolFailure` instead.

use super::claim::ClaimRecord;
use super::{TurnCx, input_hash};
use crate::journal::{JournalError, StepName};
use crate::model::{EventKind, StopReason, TurnOutcome};
use crate::tools::{ListedSource, ToolError, ToolListing, ToolSource};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Runs step `tools`.
pub async fn run(cx: &TurnCx<'_>, claim: &ClaimRecord) -> Result<ToolListing, JournalError> {
    let rt = cx.rt;
    let names: Vec<&str> = rt.tools.sources().iter().map(|s| s.name()).collect();
    let hash = input_hash(&("tools", &names))?;
    cx.step(StepName::Tools, &hash, async move {
        cx.keep_lease(&claim.lease).await?;
        let mut taken: BTreeSet<String> = rt.tools.names().into_iter().collect();
        let mut sources = Vec::new();
        for source in rt.tools.sources() {
            let listed = match list_one(cx, source).await {
                Ok(tools) => ListedSource::answered(source.name(), tools, &mut taken),
                Err(why) => {
                    tracing::warn!(source = source.name(), error = %why, "tool source unavailable");
                    ListedSource::unavailable(source.name(), why)
                }
            };
            sources.push(listed);
        }
        Ok(ToolListing { sources })
    })
    .await
}

/// One source's tools, retried while it answers `Retryable`.
async fn list_one(
    cx: &TurnCx<'_>,
    source: &Arc<dyn ToolSource>,
) -> Result<Vec<crate::tools::SourceTool>, String> {
    let rt = cx.rt;
    let policy = source
        .retry_policy()
        .unwrap_or_else(|| rt.config.tool_retry.clone());
    let timeout = source
        .timeout()
        .unwrap_or(Duration::from_millis(rt.config.tool_timeout_ms));
    let attempts = policy.attempts.max(1);
    let mut backoff = policy.initial_backoff_ms;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let why = match tokio::time::timeout(timeout, source.list()).await {
            Ok(Ok(tools)) => return Ok(tools),
            Ok(Err(ToolError::Retryable(m))) => m,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => format!("listing timed out after {} ms", timeout.as_millis()),
        };
        if attempt >= attempts {
            return Err(format!("not listed after {attempt} attempt(s): {why}"));
        }
        tokio::time::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(policy.max_backoff_ms);
    }
}

/// The events a listing adds to the turn, and the outcome when a required
/// source is missing.
pub fn consequences(
    cx: &TurnCx<'_>,
    listing: &ToolListing,
) -> (Vec<EventKind>, Option<TurnOutcome>) {
    let mut events = Vec::new();
    let mut stop = None;
    for listed in &listing.sources {
        let Some(why) = &listed.unavailable else {
            continue;
        };
        events.push(EventKind::ToolSourceUnavailable {
            source: listed.source.clone(),
            message: why.clone(),
        });
        let required = cx
            .rt
            .tools
            .sources()
            .iter()
            .any(|s| s.name() == listed.source && s.required());
        if required && stop.is_none() {
            stop = Some(TurnOutcome::stopped(
                StopReason::ToolFailure,
                format!(
                    "required tool source '{}' is unavailable: {why}",
                    listed.source
                ),
            ));
        }
    }
    (events, stop)
}
