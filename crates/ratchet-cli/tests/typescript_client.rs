//! The wire contract with the toolchain a TypeScript team uses, from the
//! npm registry: types generated from `proto/` by json-schema-to-typescript
//! (no schema edited, no format registered), the example client under
//! `clients/typescript/` type-checked with `tsc --strict`, then run against
//! a real restate-server and `ratchet serve` through the official typed
//! ingress client (`@restatedev/restate-sdk-clients`, unmodified), every
//! reply and error validated with ajv in strict mode.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::restate::e2e_lock;
use support::rig::Rig;

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript")
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(client_dir())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_team_calls_every_handler_through_the_typed_client() {
    // The exact versions of package-lock.json, from the npm registry.
    run(
        "npm ci",
        Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]),
    );
    let generated = run("generate", Command::new("node").arg("generate.mjs"));
    let schemas = std::fs::read_dir(client_dir().join("../../proto"))
        .unwrap()
        .filter(|e| {
            e.as_ref().is_ok_and(|e| {
                // error-codes.json is a table of data, not a schema.
                e.path().extension().is_some_and(|x| x == "json")
                    && e.file_name() != "error-codes.json"
            })
        })
        .count();
    assert!(
        generated.contains(&format!("generated {schemas} modules")),
        "one module per schema of proto/ ({schemas}): {generated}"
    );
    run("tsc --strict", Command::new("npx").args(["tsc", "-p", "."]));

    let _e2e = e2e_lock().await;
    // The first turn pauses after its first model call, so `cancel` finds it.
    let rig = Rig::start(&[("RATCHET_PAUSE", "4000@after:model:0")]).await;
    let out = Command::new("node")
        .arg("dist/check.js")
        .current_dir(client_dir())
        .env("INGRESS", &rig.server.ingress)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n{}", rig.diagnostics());
    assert!(text.contains("cancel: stopped the running turn"), "{text}");
    assert!(text.contains("contract ok"), "{text}");
    // The paused turn stops as cancelled once its pause ends.
    rig.wait_for_version("ts-cancel", 1, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(
        rig.outcomes("ts-cancel").await,
        vec![("turn-c-1".into(), "stopped".into(), "cancelled".into())]
    );

    // The restate CLI, as README shows it.
    let cli = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/restate/node_modules/@restatedev/restate-linux-x64/bin/restate");
    let restate = |args: &[&str]| {
        let out = Command::new(&cli)
            .args(args)
            .env("RESTATE_ADMIN_URL", &rig.server.admin)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "restate {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let described = restate(&["services", "describe", "Session"]);
    for handler in ["turn", "submit", "drain", "configure", "view", "cancel"] {
        assert!(described.contains(handler), "{described}");
    }
    let rows = restate(&[
        "sql",
        "SELECT id, status FROM sys_invocation WHERE target_service_key = 'ts-1'",
    ]);
    assert!(rows.contains("inv_"), "{rows}");
}
