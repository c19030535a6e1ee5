//! `ratchet approve` (a decision on a tool call that waits for approval)
//! and `ratchet complete-tool` (the result of a tool that answered
//! "pending"). Inline: straight into the store (the parked turn then
//! continues with `ratchet resume`). With `--ingress`: the agent object's
//! `approve` / `complete_tool` handler on the durable tier, which delivers
//! it to the suspended turn.

use crate::setup;
use crate::{StoreArgs, WaitTarget};
use anyhow::{Result, bail};
use ratchet::ErrorCode;
use ratchet::model::{Decided, Decision, SessionId, ToolCompletion, Verdict, WaitKind};
use serde_json::json;

/// Runs the command.
pub async fn run(
    store: &StoreArgs,
    target: &WaitTarget,
    reject: bool,
    note: Option<String>,
) -> Result<()> {
    let (session, call_id) = (target.session.as_str(), target.call_id.as_str());
    let decision = Decision {
        decision: if reject {
            Verdict::Reject
        } else {
            Verdict::Approve
        },
        note,
    };
    if let Err(e) = decision.check() {
        bail!("{}: {e}", ErrorCode::InvalidRequest);
    }
    if call_id.trim().is_empty() {
        bail!("{}: --call must not be empty", ErrorCode::InvalidRequest);
    }
    let sid = SessionId::new(session)?;
    if let Some(url) = &target.ingress {
        let body =
            json!({"call_id": call_id, "decision": decision.decision, "note": decision.note});
        return through_ingress(url, &target.object, &sid, "approve", &body).await;
    }
    let st = setup::open_store(store).await?;
    let said = verdict(&decision);
    let value = serde_json::to_value(&decision)?;
    match st
        .decide_wait(&sid, WaitKind::Approval, call_id, &value)
        .await?
    {
        Decided::Recorded(w) => println!(
            "{said}d tool call {call_id} ({}); `ratchet resume --session {session}` continues the turn",
            w.tool
        ),
        Decided::Duplicate(w) => println!(
            "already {said}d: tool call {call_id} ({}); nothing changed",
            w.tool
        ),
        Decided::Conflict(w) => {
            let was = match w.decision() {
                Some(d) => format!("decided '{}'", verdict(&d)),
                None => w.state.as_str().to_string(),
            };
            bail!(
                "{}: tool call '{call_id}' is already {was}",
                ErrorCode::WaitSettled
            )
        }
        Decided::Unknown => bail!(
            "{}: no tool call '{call_id}' waits for approval in session '{session}'",
            ErrorCode::UnknownWait
        ),
    }
    Ok(())
}

fn verdict(d: &Decision) -> &'static str {
    match d.decision {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
    }
}

/// Runs `ratchet complete-tool`.
pub async fn complete(
    store: &StoreArgs,
    target: &WaitTarget,
    result: ToolCompletion,
) -> Result<()> {
    let (session, call_id) = (target.session.as_str(), target.call_id.as_str());
    if call_id.trim().is_empty() {
        bail!("{}: --call must not be empty", ErrorCode::InvalidRequest);
    }
    let sid = SessionId::new(session)?;
    if let Some(url) = &target.ingress {
        let body = json!({"call_id": call_id, "result": result});
        return through_ingress(url, &target.object, &sid, "complete_tool", &body).await;
    }
    let st = setup::open_store(store).await?;
    let value = serde_json::to_value(&result)?;
    match st
        .decide_wait(&sid, WaitKind::ToolResult, call_id, &value)
        .await?
    {
        Decided::Recorded(w) => println!(
            "completed tool call {call_id} ({}); `ratchet resume --session {session}` continues the turn",
            w.tool
        ),
        Decided::Duplicate(w) => println!(
            "already completed: tool call {call_id} ({}); nothing changed",
            w.tool
        ),
        Decided::Conflict(w) => bail!(
            "{}: tool call '{call_id}' is already {}",
            ErrorCode::WaitSettled,
            if w.state == ratchet::model::WaitState::Expired {
                "expired"
            } else {
                "completed"
            }
        ),
        Decided::Unknown => bail!(
            "{}: no tool call '{call_id}' waits for its result in session '{session}'",
            ErrorCode::UnknownWait
        ),
    }
    Ok(())
}

async fn through_ingress(
    url: &str,
    object: &str,
    session: &SessionId,
    handler: &str,
    body: &serde_json::Value,
) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!(
            "{}: --ingress must be an http(s) URL",
            ErrorCode::InvalidRequest
        );
    }
    ratchet::restate::check_object_name(object).map_err(anyhow::Error::msg)?;
    let key = session.as_str().replace('/', "%2F");
    let target = format!("{}/{object}/{key}/{handler}", url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&target)
        .json(body)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the Restate ingress at {url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{message}");
    }
    println!("{text}");
    Ok(())
}
