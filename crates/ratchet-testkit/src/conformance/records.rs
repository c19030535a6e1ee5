//! Log cases: events, checkpoints, notes, the effect ledger.

use super::*;
/// Events get cursors in order; a duplicate id is ignored; reads start
/// after a cursor.
pub async fn event_append_is_idempotent(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let events: Vec<SessionEvent> = (0..3)
        .map(|i| {
            SessionEvent::new(
                "t1",
                i,
                EventKind::TurnStarted {
                    turn_index: i as u64,
                },
            )
        })
        .collect();
    fx.store.append_events(&s, &events).await.unwrap();
    fx.store.append_events(&s, &events[1..]).await.unwrap();
    let all = fx.store.events_after(&s, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(all[2].event.id, "t1:2");
    let after = fx.store.events_after(&s, 1, 1).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].event.id, "t1:1");
    // The commit's events join the same log, deduplicated the same way.
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let mut req = simple_commit(&lease, "t2", 0, &claim, "x");
    req.events.push(events[0].clone());
    fx.store.commit(&req).await.unwrap();
    assert_eq!(fx.store.events_after(&s, 0, 100).await.unwrap().len(), 5);
}

/// Checkpoints are kept per turn and step; a turn without a commit is
/// reported unfinished until it commits.
pub async fn checkpoints_track_unfinished_turns(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    for (seq, step) in ["claim", "prepare", "model:0"].iter().enumerate() {
        let cp = Checkpoint {
            session_id: s.clone(),
            turn_id: "t1".into(),
            seq: seq as u64,
            step: step.to_string(),
            record: serde_json::json!({"seq": seq}),
        };
        fx.store.put_checkpoint(&cp).await.unwrap();
        fx.store.put_checkpoint(&cp).await.unwrap();
    }
    let cps = fx.store.checkpoints(&s, "t1").await.unwrap();
    assert_eq!(
        cps.iter().map(|c| c.step.as_str()).collect::<Vec<_>>(),
        vec!["claim", "prepare", "model:0"]
    );
    assert_eq!(cps[2].record["seq"], 2);
    assert_eq!(fx.store.checkpoint_count().await.unwrap(), 3);
    assert_eq!(fx.store.unfinished_turns(&s).await.unwrap(), vec!["t1"]);
    fx.store
        .commit(&simple_commit(&lease, "t1", 0, &claim, "x"))
        .await
        .unwrap();
    assert!(fx.store.unfinished_turns(&s).await.unwrap().is_empty());
}

/// Notes are written once per key.
pub async fn notes_are_idempotent_by_key(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    assert!(fx.store.put_note(&s, "s:t1:call_0", "milk").await.unwrap());
    assert!(!fx.store.put_note(&s, "s:t1:call_0", "milk").await.unwrap());
    assert!(fx.store.put_note(&s, "s:t1:call_1", "eggs").await.unwrap());
    let notes = fx.store.notes(&s).await.unwrap();
    assert_eq!(
        notes.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(),
        vec!["milk", "eggs"]
    );
}

/// The effect ledger counts every execution, per key and per session.
pub async fn effect_ledger_counts_every_execution(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    assert_eq!(
        fx.store.count_effect(&s, "tool:t1:call_0").await.unwrap(),
        1
    );
    assert_eq!(
        fx.store.count_effect(&s, "tool:t1:call_0").await.unwrap(),
        2
    );
    assert_eq!(fx.store.count_effect(&s, "model:t1:0").await.unwrap(), 1);
    assert_eq!(
        fx.store
            .count_effect(&sid("other"), "tool:t1:call_0")
            .await
            .unwrap(),
        1
    );
    let counts = fx.store.effect_counts(&s).await.unwrap();
    assert_eq!(counts.get("tool:t1:call_0"), Some(&2));
    assert_eq!(counts.get("model:t1:0"), Some(&1));
    assert_eq!(counts.len(), 2);
}
