//! No secret leaves: secrets are planted in every form a deployment holds
//! them, a provider echoes all of them back (in answers, and in an error
//! body where the key straddles the 500-character cut), and every sink is
//! then searched for each secret and for its first half:
//! - the stores: the SQLite files, and every PostgreSQL table;
//! - Restate's journal and invocation table (admin SQL), and its data dir;
//! - logs at trace level, CLI output, events, exports, HTTP replies.
//!
//! The forms: the model API key; the database password as URL userinfo, a
//! `password=` query parameter, a `password=` key/value pair and
//! `PGPASSWORD`; and a token in an environment variable.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use support::restate::{PostgresServer, RestateServer, Service, e2e_lock, ratchet_bin};
use support::rig::turn_body;

/// A session name, a `--store` spec and extra environment.
type StoreForm<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

struct Secrets {
    api_key: String,
    db_password: String,
    env_token: String,
}

impl Secrets {
    fn all(&self) -> [&str; 3] {
        [&self.api_key, &self.db_password, &self.env_token]
    }

    /// Fails naming the sink when it holds a secret or its first half
    /// (a secret cut before it was scrubbed).
    fn assert_clean(&self, sink: &str, text: &str) {
        for s in self.all() {
            let half = &s[..s.len() / 2];
            assert!(
                !text.contains(half),
                "{sink} holds (part of) a secret {half}…:\n{}",
                excerpt(text, half)
            );
        }
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or(0);
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(200)
        .map_or(0, |(i, _)| i);
    text[start..].chars().take(400).collect()
}

/// A Chat Completions server that echoes every secret: in the answer, or
/// (when the user says "fail") in a 400 body whose key sits at characters
/// 455.. of the error message, across the client's 500-character cut.
async fn echoing_provider(s: &Secrets) -> String {
    let (key, pw, token) = (
        s.api_key.clone(),
        s.db_password.clone(),
        s.env_token.clone(),
    );
    let port = support::http::serve(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let last_user = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .map(|m| m["content"].to_string())
            .unwrap_or_default();
        if last_user.contains("fail") {
            let message = format!("{} invalid key {key} for {pw}", "x".repeat(455));
            return (400, json!({"error": {"message": message}}).to_string());
        }
        let content = format!(
            "echo: key={key} db=postgres://ratchet:{pw}@db/x token={token} auth=Bearer {key}"
        );
        let answer = json!({
            "choices": [{"message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5}
        });
        (200, answer.to_string())
    })
    .await;
    format!("http://127.0.0.1:{port}/v1")
}

/// The strings of a JSON value, with arrays of bytes decoded as text.
fn decoded(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items)
            if !items.is_empty() && items.iter().all(|b| b.as_u64().is_some_and(|b| b < 256)) =>
        {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64().map(|b| b as u8))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Value::Array(items) => items.iter().map(decoded).collect::<Vec<_>>().join("\n"),
        Value::Object(map) => map.values().map(decoded).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// Every file under `dir`, as lossy text, concatenated.
fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// Every row of every table of the PostgreSQL database, as text.
async fn pg_dump(server: &PostgresServer) -> String {
    let (client, conn) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tables = client
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap();
    let mut out = String::new();
    for t in &tables {
        let (schema, name): (String, String) = (t.get(0), t.get(1));
        let rows = client
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{name}\" t"),
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            out.push_str(&r.get::<_, String>(0));
            out.push('\n');
        }
    }
    assert!(out.contains("echo: key="), "the dump holds the turns");
    out
}

/// `ratchet` with the provider, the key and the planted token, logging
/// at trace level; returns stdout and stderr together.
fn cli(dir: &Path, base_url: &str, s: &Secrets, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new(ratchet_bin())
        .current_dir(dir)
        .args(args)
        .args(["--model", "openai:gpt-test"])
        .env_remove("RATCHET_DB")
        .env_remove("RATCHET_STORE")
        .env_remove("PGPASSWORD")
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", &s.api_key)
        .env("PLANTED_SERVICE_TOKEN", &s.env_token)
        .env("RATCHET_LOG", "trace")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// An echo turn and a failing turn of `session`, then its history, events
/// and export, all through the CLI; every output is checked.
fn inline_session(
    dir: &Path,
    base: &str,
    s: &Secrets,
    env: &[(&str, &str)],
    store: &[&str],
    session: &str,
) {
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(store);
        cli(dir, base, s, env, &all)
    };
    let echo = run(&[
        "turn",
        "--session",
        session,
        "--json",
        "--input-id",
        "in-1",
        "echo please",
    ]);
    assert!(echo.contains("echo: key=[redacted]"), "{echo}");
    let fail = run(&[
        "turn",
        "--session",
        session,
        "--json",
        "--input-id",
        "in-2",
        "fail please",
    ]);
    assert!(fail.contains("provider_error"), "{fail}");
    let history = run(&["history", "--session", session, "--json"]);
    let events = run(&["events", "--session", session]);
    let export = run(&["export", "--session", session, "--turn", "turn-in-2"]);
    assert!(export.contains("\"steps\""), "{export}");
    for (sink, text) in [
        ("turn output and trace log", echo),
        ("failed turn output and trace log", fail),
        ("history", history),
        ("events", events),
        ("export", export),
    ] {
        s.assert_clean(&format!("{session}: {sink}"), &text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_any_sink() {
    let _e2e = e2e_lock().await;
    let pg = PostgresServer::start().unwrap();
    let s = Secrets {
        api_key: format!("sk-plant-{}", uuid::Uuid::new_v4().simple()),
        db_password: pg.password.clone(),
        env_token: format!("tok-plant-{}", uuid::Uuid::new_v4().simple()),
    };
    let base = echoing_provider(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Inline tier, SQLite: the database password is known to this process
    // only as an environment variable it does not use.
    let database_url = format!("postgres://ratchet:{}@127.0.0.1:1/x", s.db_password);
    inline_session(
        d,
        &base,
        &s,
        &[("DATABASE_URL", &database_url)],
        &["--db", "inline.db"],
        "sqlite",
    );
    s.assert_clean("the SQLite files", &files_text(d));

    // Inline tier, PostgreSQL, the password in each of its forms.
    let (host, port) = ("127.0.0.1", pg.port.to_string());
    let userinfo = format!("postgres:{}", pg.url("postgres"));
    let query = format!(
        "postgres:postgres://ratchet@{host}:{port}/postgres?password={}",
        s.db_password
    );
    let keyvalue = format!(
        "postgres:host={host} port={port} user=ratchet password={} dbname=postgres",
        s.db_password
    );
    let no_password = format!("postgres:postgres://ratchet@{host}:{port}/postgres");
    let pgpassword = [("PGPASSWORD", s.db_password.as_str())];
    let forms: [StoreForm; 4] = [
        ("pg-userinfo", &userinfo, &[]),
        ("pg-query", &query, &[]),
        ("pg-keyvalue", &keyvalue, &[]),
        ("pg-env", &no_password, &pgpassword),
    ];
    for (session, store, env) in forms {
        inline_session(d, &base, &s, env, &["--store", store], session);
        // A store that cannot be reached: the error names it, masked.
        let wrong = store.replace(port.as_str(), "1");
        let refused = cli(
            d,
            &base,
            &s,
            env,
            &["turn", "--session", "x", "--store", &wrong, "hi"],
        );
        assert!(
            refused.contains("cannot open the PostgreSQL store"),
            "{refused}"
        );
        s.assert_clean(&format!("{session}: unreachable store error"), &refused);
    }

    // Durable tier: ratchet serve on PostgreSQL behind a restate-server.
    let server = RestateServer::start().unwrap();
    let service = Service::start(
        &ratchet_bin(),
        &userinfo,
        &server.admin,
        d,
        &[
            ("OPENAI_BASE_URL", base.as_str()),
            ("OPENAI_API_KEY", s.api_key.as_str()),
            ("PLANTED_SERVICE_TOKEN", s.env_token.as_str()),
            ("RATCHET_MODEL", "openai:gpt-test"),
            ("RATCHET_LOG", "trace"),
        ],
    )
    .unwrap();
    server.register(&service.uri()).await.unwrap();
    let mut replies = String::new();
    let mut invocations = Vec::new();
    for (id, text) in [("in-1", "echo please"), ("in-2", "fail please")] {
        let inv = server
            .send("durable", "turn", &turn_body(text, id))
            .await
            .unwrap();
        let (status, reply) = server.attach(&inv).await.unwrap();
        assert_eq!(status, 200, "{reply}\n{}", service.log());
        replies.push_str(&reply.to_string());
        invocations.push(inv);
    }
    assert!(replies.contains("echo: key=[redacted]"), "{replies}");
    assert!(replies.contains("provider_error"), "{replies}");
    let (_, view) = server.call("durable", "view", &json!(null)).await.unwrap();
    replies.push_str(&view.to_string());
    s.assert_clean("HTTP replies", &replies);

    let rows = server.query("SELECT * FROM sys_journal").await.unwrap();
    let mut journal = serde_json::to_string(&rows).unwrap();
    for row in &rows {
        // Entries hold their payloads as byte arrays inside a JSON string.
        let entry: Value = serde_json::from_str(row["entry_json"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        journal.push_str(&decoded(&entry));
    }
    assert!(journal.contains("turn-in-1"), "the journal holds the turns");
    s.assert_clean("Restate's journal", &journal);
    let invocation_rows = server.query("SELECT * FROM sys_invocation").await.unwrap();
    s.assert_clean(
        "sys_invocation",
        &serde_json::to_string(&invocation_rows).unwrap(),
    );
    for inv in &invocations {
        let export = cli(
            d,
            &base,
            &s,
            &[],
            &["export", "--invocation", inv, "--admin", &server.admin],
        );
        assert!(export.contains("\"steps\""), "{export}");
        s.assert_clean("export of a durable turn", &export);
    }
    s.assert_clean("the service's trace log", &service.log());
    s.assert_clean("the restate-server log", &server.log());
    s.assert_clean("every PostgreSQL table", &pg_dump(&pg).await);
    s.assert_clean("Restate's data dir", &files_text(&server.data_dir()));
}
