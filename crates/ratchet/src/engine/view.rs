//! A session's view, for both tiers (the `view` handler, `ratchet view`):
//! one page of a session, whatever its history or backlog. Recent messages come from the store's tail read, live inputs
//! are paged with their total count, and the reply is capped in bytes so it
//! always fits Restate's message limit.

use crate::model::SessionId;
use crate::store::{InboxEntry, SessionHead, SessionStore, StoreResult, StoredMessage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most recent messages a view holds.
pub const VIEW_MESSAGES: usize = 50;
/// Live inputs a view holds, oldest first.
pub const VIEW_PENDING: usize = 20;
/// Bytes of JSON each of the two lists may take.
pub const VIEW_LIST_BYTES: usize = 128 * 1024;

/// Reply of `view`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SessionView {
    /// The head.
    pub head: SessionHead,
    /// The most recent messages, oldest first (up to 50, and 128 KiB).
    pub recent_messages: Vec<StoredMessage>,
    /// The oldest live inputs and commands (up to 20, and 128 KiB).
    pub pending: Vec<InboxEntry>,
    /// How many live inputs and commands there are in all.
    pub pending_total: u64,
    /// Tool calls waiting now, oldest first: for approval (`kind:
    /// approval`; decide with `approve`) or for a pending tool's result
    /// (`kind: tool_result`; deliver with `complete_tool`).
    #[serde(default)]
    pub pending_waits: Vec<crate::model::Wait>,
    /// Whether a list was cut short by its byte cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Keeps the items that fit in `budget` bytes, taken in `order`.
fn capped<T: Serialize>(items: Vec<T>, newest_first: bool) -> (Vec<T>, bool) {
    let mut used = 0;
    let mut kept = Vec::new();
    let total = items.len();
    let iter: Box<dyn Iterator<Item = T>> = if newest_first {
        Box::new(items.into_iter().rev())
    } else {
        Box::new(items.into_iter())
    };
    for item in iter {
        used += serde_json::to_vec(&item)
            .map(|v| v.len())
            .unwrap_or(usize::MAX / 2);
        if used > VIEW_LIST_BYTES {
            break;
        }
        kept.push(item);
    }
    let cut = kept.len() < total;
    if newest_first {
        kept.reverse();
    }
    (kept, cut)
}

/// Reads a session's view.
pub async fn view_of(store: &dyn SessionStore, session: &SessionId) -> StoreResult<SessionView> {
    let head = store.head(session).await?;
    let recent = store
        .recent_messages(session, head.version, VIEW_MESSAGES)
        .await?;
    let page = store.inbox_page(session, VIEW_PENDING).await?;
    let (recent_messages, cut_messages) = capped(recent, true);
    let (pending, cut_pending) = capped(page.entries, false);
    let (pending_waits, cut_waits) = capped(store.waits(session, true).await?, false);
    Ok(SessionView {
        head,
        recent_messages,
        pending,
        pending_total: page.total,
        pending_waits,
        truncated: cut_messages || cut_pending || cut_waits,
    })
}
