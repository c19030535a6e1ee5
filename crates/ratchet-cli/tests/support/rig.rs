//! A restate-server and one `ratchet serve` on a SQLite file, with the
//! waits and reads the end-to-end tests share.

use super::restate::{RestateServer, Service, ratchet_bin};
use ratchet::model::SessionId;
use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A server, a service and the temp dir holding the store and logs.
pub struct Rig {
    /// The restate-server.
    pub server: RestateServer,
    /// The `ratchet serve` process.
    pub service: Service,
    /// Holds `ratchet.db` and the logs.
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// Starts both (the service with `env`) and registers the service.
    pub async fn start(env: &[(&str, &str)]) -> Rig {
        Self::start_with_server_env(&[], env).await
    }

    /// Like [`Rig::start`], with extra environment for restate-server.
    pub async fn start_with_server_env(server_env: &[(&str, &str)], env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let server = RestateServer::start_with(server_env).expect("restate-server");
        let store = format!("sqlite:{}", dir.path().join("ratchet.db").display());
        let service = Service::start(&ratchet_bin(), &store, &server.admin, dir.path(), env)
            .expect("ratchet serve");
        server.register(&service.uri()).await.expect("register");
        Rig {
            server,
            service,
            dir,
        }
    }

    /// Calls `session`'s `turn` with `body` (and `headers`) while the
    /// service dies at the fault point its environment names, restarts the
    /// service with `env` once it has died, and returns the reply's status
    /// (Restate retries the invocation on the new process).
    pub async fn turn_across_a_crash(
        &mut self,
        session: &str,
        body: &Value,
        headers: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> u16 {
        let mut req = reqwest::Client::new()
            .post(format!("{}/Session/{session}/turn", self.server.ingress))
            .json(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let call = tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
        let died = self.service.wait_exit(Duration::from_secs(60));
        assert!(
            died,
            "the service never reached its fault point\n{}",
            self.diagnostics()
        );
        self.service.restart(env).unwrap();
        let status = call.await.unwrap();
        status.unwrap_or_else(|e| panic!("the turn's call failed: {e}\n{}", self.diagnostics()))
    }

    /// The SQLite file.
    pub fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("ratchet.db")
    }

    /// A second handle on the service's store.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::open(self.db()).unwrap()
    }

    /// Both logs, for assertion messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- service log\n{}\n--- server log\n{}",
            self.service.log(),
            self.server.log()
        )
    }

    /// Waits until `session` has committed `version` turns.
    pub async fn wait_for_version(&self, session: &str, version: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(head) = self.store().head(&sid(session)).await
                && head.version >= version
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "session {session} never reached version {version}\n{}",
            self.diagnostics()
        );
    }

    /// Waits until the effect `key` has run at least once.
    pub async fn wait_for_effect(&self, session: &str, key: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(counts) = self.store().effect_counts(&sid(session)).await
                && counts.get(key).copied().unwrap_or(0) > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "effect {key} of {session} never ran\n{}",
            self.diagnostics()
        );
    }

    /// Waits until the session's view lists a pending wait for tool call
    /// `call`; returns it.
    pub async fn pending_wait(&self, session: &str, call: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, view) = self
                .server
                .call(session, "view", &json!(null))
                .await
                .unwrap();
            let found = view["pending_waits"]
                .as_array()
                .and_then(|a| a.iter().find(|w| w["call_id"] == call).cloned());
            if status == 200
                && let Some(wait) = found
            {
                return wait;
            }
            assert!(
                Instant::now() < deadline,
                "no wait for {call} in {session}: {view}\n{}",
                self.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The invocation's status; "unknown" while a restarted server cannot
    /// answer yet.
    pub async fn status_of(&self, invocation: &str) -> String {
        let Ok(rows) = self
            .server
            .query(&format!(
                "SELECT status FROM sys_invocation WHERE id = '{invocation}'"
            ))
            .await
        else {
            return "unknown".into();
        };
        rows.first()
            .and_then(|r| r["status"].as_str())
            .unwrap_or("gone")
            .to_string()
    }

    /// Waits until the invocation's status is `want`.
    pub async fn await_status(&self, invocation: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status_of(invocation).await;
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "invocation {invocation} is {status}, not {want}\n{}",
                self.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Checks nothing is left claimed, pending or leased in `session`.
    pub async fn assert_settled(&self, session: &str) {
        let store = self.store();
        let live = store.inbox(&sid(session)).await.unwrap();
        assert!(live.is_empty(), "left in the inbox: {live:?}");
        let lease = store.current_lease(&sid(session)).await.unwrap();
        assert!(lease.is_none(), "lease left: {lease:?}");
    }

    /// Committed turns of `session` as (turn id, status, reason).
    pub async fn outcomes(&self, session: &str) -> Vec<(String, String, String)> {
        self.store()
            .turns(&sid(session))
            .await
            .unwrap()
            .into_iter()
            .map(|t| {
                let v = serde_json::to_value(&t.outcome).unwrap();
                let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (t.turn_id, field("status"), field("reason"))
            })
            .collect()
    }
}

/// A session id.
pub fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

/// A `turn`/`submit` body of one text item with an input id.
pub fn turn_body(text: &str, input_id: &str) -> Value {
    json!({"input": {"items": [{"type": "text", "text": text}], "input_id": input_id}})
}
