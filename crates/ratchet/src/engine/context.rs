//! Building the model's context: which history to keep (trimming never
//! splits a tool call from its result) and the message list a model call
//! sees.

use crate::model::{Message, Role, SessionId};
use crate::store::{SessionStore, StoreResult};
use std::sync::{Arc, Mutex};

/// The history tail a frame's steps read, read from the store once per
/// frame by the first step that needs it (prepare, or after a replay the
/// first model call that runs) and shared by the later ones. The tail at
/// the claim's base version never changes: a commit only adds versions
/// above it, and the claim's lease keeps any other turn from committing.
#[derive(Default)]
pub struct HistoryTail {
    read: Mutex<Option<Tail>>,
}

/// A tail read: at which version, how many messages at most, and them.
type Tail = (u64, usize, Arc<Vec<Message>>);

impl HistoryTail {
    /// The last `limit` messages at `version`, oldest first.
    pub async fn at(
        &self,
        store: &dyn SessionStore,
        session: &SessionId,
        version: u64,
        limit: usize,
    ) -> StoreResult<Arc<Vec<Message>>> {
        if let Some((v, l, tail)) = &*self.read.lock().unwrap_or_else(|e| e.into_inner())
            && (*v, *l) == (version, limit)
        {
            return Ok(tail.clone());
        }
        let tail: Vec<Message> = store
            .recent_messages(session, version, limit)
            .await?
            .into_iter()
            .map(|m| m.message)
            .collect();
        let tail = Arc::new(tail);
        *self.read.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, limit, tail.clone()));
        Ok(tail)
    }
}

/// The index of the first history message to keep, so that at most `limit`
/// messages remain and the first kept one is not a tool result whose call
/// was cut off.
pub fn plan_context_start(history: &[Message], limit: usize) -> usize {
    let mut start = history.len().saturating_sub(limit);
    while start < history.len() && history[start].role == Role::Tool {
        start += 1;
    }
    start
}

/// System prompt, kept history, then this turn's messages.
pub fn assemble(
    system_prompt: &str,
    history: &[Message],
    turn_messages: &[Message],
) -> Vec<Message> {
    // Room for the steers a model call appends.
    let mut out = Vec::with_capacity(history.len() + turn_messages.len() + 4);
    if !system_prompt.is_empty() {
        out.push(Message::text("system", Role::System, system_prompt));
    }
    out.extend(history.iter().filter(|m| m.role != Role::Event).cloned());
    out.extend(turn_messages.iter().cloned());
    out
}

/// A turn's model context, kept from one model call to the next so each
/// call copies only the turn's messages added since the last: the system
/// prompt and kept history never change within a frame, and the turn's
/// messages only grow. Without it every call copied the whole context,
/// which made that copy (and dropping it) a seventh of a long turn's own
/// work per step.
#[derive(Default)]
pub struct KeptContext {
    messages: Vec<Message>,
    /// The kept history's length and the turn's message count `messages`
    /// was built from; `None`: nothing kept.
    built_from: Option<(usize, usize)>,
}

impl KeptContext {
    /// The context for a call: as [`assemble`] builds it, reusing what
    /// the last call put back. Nothing is kept until [`Self::put_back`].
    pub fn take(
        &mut self,
        system_prompt: &str,
        history: &[Message],
        turn_messages: &[Message],
    ) -> Vec<Message> {
        match self.built_from.take() {
            Some((kept, turn)) if kept == history.len() && turn <= turn_messages.len() => {
                let mut out = std::mem::take(&mut self.messages);
                out.extend(turn_messages[turn..].iter().cloned());
                out
            }
            _ => assemble(system_prompt, history, turn_messages),
        }
    }

    /// Keeps the first `len` of `messages` (a context [`Self::take`]
    /// returned, built from `history_len` kept history messages and
    /// `turn_count` turn messages, and what was appended after them) for
    /// the next call.
    pub fn put_back(
        &mut self,
        mut messages: Vec<Message>,
        len: usize,
        history_len: usize,
        turn_count: usize,
    ) {
        messages.truncate(len);
        self.messages = messages;
        self.built_from = Some((history_len, turn_count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;
    use serde_json::json;

    fn msg(role: Role, id: &str) -> Message {
        Message::text(id, role, id)
    }

    fn call(id: &str) -> Message {
        Message {
            id: id.into(),
            role: Role::Assistant,
            parts: vec![Part::ToolCall {
                id: "c".into(),
                name: "calculator".into(),
                arguments: json!({}),
            }],
        }
    }

    #[test]
    fn trimming_never_starts_at_an_orphaned_tool_result() {
        let h = vec![
            msg(Role::User, "u1"),
            call("a1"),
            msg(Role::Tool, "r1"),
            msg(Role::Tool, "r2"),
            msg(Role::Assistant, "a2"),
        ];
        assert_eq!(plan_context_start(&h, 10), 0);
        assert_eq!(
            plan_context_start(&h, 4),
            1,
            "keeps the call with its results"
        );
        assert_eq!(
            plan_context_start(&h, 3),
            4,
            "drops results whose call is cut"
        );
        assert_eq!(plan_context_start(&h, 0), 5);
    }

    /// Call after call, the kept context is exactly what `assemble`
    /// builds, whatever was appended to it (steers) before it came back;
    /// and other history or fewer turn messages start it over.
    #[test]
    fn a_kept_context_equals_the_assembled_one_call_after_call() {
        let h = vec![msg(Role::User, "u1"), msg(Role::Event, "e"), call("c1")];
        let mut turn = vec![msg(Role::User, "u2")];
        let mut kept = KeptContext::default();
        for round in 0..4 {
            let ctx = kept.take("sys", &h, &turn);
            assert_eq!(ctx, assemble("sys", &h, &turn), "round {round}");
            let len = ctx.len();
            let mut sent = ctx;
            sent.push(msg(Role::User, "steer"));
            kept.put_back(sent, len, h.len(), turn.len());
            turn.push(msg(Role::Assistant, &format!("a{round}")));
            turn.push(msg(Role::Tool, &format!("t{round}")));
        }
        let shorter = &turn[..2];
        assert_eq!(kept.take("sys", &h, shorter), assemble("sys", &h, shorter));
        kept.put_back(assemble("sys", &h, &turn), 0, h.len(), turn.len());
        let other = &h[..1];
        assert_eq!(
            kept.take("sys", other, &turn),
            assemble("sys", other, &turn)
        );
        // Not put back: the next call assembles afresh.
        assert_eq!(kept.take("sys", &h, &turn), assemble("sys", &h, &turn));
    }

    #[test]
    fn assembled_context_leads_with_the_system_prompt_and_skips_events() {
        let h = vec![msg(Role::User, "u1"), msg(Role::Event, "e")];
        let ctx = assemble("be brief", &h, &[msg(Role::User, "u2")]);
        let ids: Vec<&str> = ctx.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, vec!["system", "u1", "u2"]);
    }
}
