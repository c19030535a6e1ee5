//! What a crashed run must match: the committed session (messages, turn
//! outcomes and usage, events) equal to the crash-free reference after
//! normalizing times; every effect run once (the one in flight at most
//! twice); the lease released; no input left claimed; no event twice.

use ratchet::journal::StepName;
use ratchet::model::SessionId;
use ratchet::store::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

/// Everything the matrix compares, as JSON.
pub async fn snapshot(store: &dyn SessionStore, session: &SessionId) -> Result<Value, String> {
    let e = |e: ratchet::store::StoreError| e.to_string();
    let head = store.head(session).await.map_err(e)?;
    let messages = store.messages(session, head.version).await.map_err(e)?;
    let turns = store.turns(session).await.map_err(e)?;
    let events = store
        .events_after(session, 0, usize::MAX)
        .await
        .map_err(e)?;
    let v = json!({
        "version": head.version,
        "usage": head.usage,
        "messages": messages,
        // The commit hash covers the session id, which differs per run.
        "turns": turns.iter().map(|t| json!({"turn_id": t.turn_id, "version": t.version, "outcome": t.outcome, "usage": t.usage})).collect::<Vec<_>>(),
        "events": events.iter().map(|s| &s.event).collect::<Vec<_>>(),
    });
    Ok(normalize(v))
}

/// Replaces wall-clock timestamps (the clock tool's answers) with a marker.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(mask_times(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        // A wait's id is its invocation's awakeable's, and its deadline
        // the clock's: both differ from run to run.
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| match k.as_str() {
                    "wait_id" | "deadline_ms" => (k, Value::String("<wait>".into())),
                    _ => (k, normalize(v)),
                })
                .collect(),
        ),
        other => other,
    }
}

/// Masks `YYYY-MM-DDTHH:MM:SS.mmmZ` anywhere in a string.
fn mask_times(s: &str) -> String {
    let pattern = "dddd-dd-ddTdd:dd:dd.dddZ";
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let fits = b.len() - i >= pattern.len()
            && pattern.bytes().zip(&b[i..]).all(|(p, c)| {
                if p == b'd' {
                    c.is_ascii_digit()
                } else {
                    p == *c
                }
            });
        if fits {
            out.push_str("<time>");
            i += pattern.len();
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The first place two JSON values differ, as `path: expected X, found Y`.
pub fn first_difference(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!(
                    "{path}: expected {} items, found {}",
                    a.len(),
                    b.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        (a, b) if a != b => Some(format!("{path}: expected {}, found {}", short(a), short(b))),
        _ => None,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// The effect-ledger key of a step (`None` for steps without an effect).
pub fn effect_key(root_turn: &str, step: &str) -> Option<String> {
    let step: StepName = step.parse().ok()?;
    let turn = match step.frame() {
        0 => root_turn.to_string(),
        n => format!("{root_turn}:agent-frame:{n}"),
    };
    match step.base() {
        StepName::Model(i) => Some(format!("model:{turn}:{i}")),
        StepName::Tool { call, .. } => Some(format!("tool:{turn}:{call}")),
        _ => None,
    }
}

/// Checks effect counts: every reference effect ran exactly once, except
/// `in_flight`, which may have run twice; nothing else ran.
pub fn check_effects(
    reference: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
    in_flight: Option<&str>,
) -> Result<(), String> {
    for key in reference.keys() {
        let n = actual.get(key).copied().unwrap_or(0);
        let max = if Some(key.as_str()) == in_flight {
            2
        } else {
            1
        };
        if n == 0 || n > max {
            return Err(format!("effect {key} ran {n} times (allowed 1..={max})"));
        }
    }
    if let Some(extra) = actual.keys().find(|k| !reference.contains_key(*k)) {
        return Err(format!("unexpected effect {extra}"));
    }
    Ok(())
}

/// Lease released, nothing left in the inbox, event ids unique.
pub async fn check_clean(store: &dyn SessionStore, session: &SessionId) -> Result<(), String> {
    let e = |e: ratchet::store::StoreError| e.to_string();
    if let Some(lease) = store.current_lease(session).await.map_err(e)? {
        return Err(format!("lease still held by {}", lease.owner));
    }
    let inbox = store.inbox(session).await.map_err(e)?;
    if let Some(entry) = inbox.first() {
        return Err(format!("input {} left {:?}", entry.id, entry.state));
    }
    let events = store
        .events_after(session, 0, usize::MAX)
        .await
        .map_err(e)?;
    let mut seen = HashSet::new();
    if let Some(dup) = events.iter().find(|ev| !seen.insert(ev.event.id.clone())) {
        return Err(format!("event {} appears twice", dup.event.id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_masked_and_differences_located() {
        assert_eq!(mask_times("at 2026-11-24T09:35:49.690Z ok"), "at <time> ok");
        let a = json!({"m": [1, {"t": "x"}]});
        let b = json!({"m": [1, {"t": "y"}]});
        assert_eq!(first_difference(&a, &a, "$"), None);
        assert_eq!(
            first_difference(&a, &b, "$").unwrap(),
            "$.m[1].t: expected \"x\", found \"y\""
        );
    }

    #[test]
    fn effect_keys_follow_the_ledger_naming() {
        assert_eq!(effect_key("t", "model:1").as_deref(), Some("model:t:1"));
        assert_eq!(
            effect_key("t", "tool:0:call_2").as_deref(),
            Some("tool:t:call_2")
        );
        assert_eq!(
            effect_key("t", "agent-frame:1:tool:0:call_0").as_deref(),
            Some("tool:t:agent-frame:1:call_0")
        );
        assert_eq!(effect_key("t", "commit"), None);
    }

    #[test]
    fn effect_counts_allow_only_the_in_flight_step_twice() {
        let reference: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let twice_b: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        assert!(check_effects(&reference, &reference, None).is_ok());
        assert!(check_effects(&reference, &twice_b, Some("b")).is_ok());
        assert!(
            check_effects(&reference, &twice_b, Some("a"))
                .unwrap_err()
                .contains("b ran 2 times")
        );
        let missing: BTreeMap<String, u64> = [("a".to_string(), 1)].into();
        assert!(check_effects(&reference, &missing, None).is_err());
    }
}
