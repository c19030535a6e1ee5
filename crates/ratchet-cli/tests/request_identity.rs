//! Only Restate gets in: `ratchet serve --identity-key` checks that every
//! request is signed by a restate-server holding the matching private key.
//! A server that signs with it registers and runs a turn; a server that
//! signs nothing and one that signs with another key are refused (401),
//! as are unsigned requests sent straight to the endpoint, and none of
//! them changes anything stored.

mod support;

use rcgen::{KeyPair, PKCS_ED25519};
use serde_json::json;
use support::restate::{RestateServer, Service, e2e_lock, post, ratchet_bin};
use support::rig::turn_body;
use support::sqlite_snapshot;

const SIGNING_KEY_ENV: &str = "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE";

/// A fresh ed25519 key: its PEM file and its Restate public key string.
fn identity(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, key.serialize_pem()).unwrap();
    let public = format!(
        "publickeyv1_{}",
        bs58::encode(key.public_key_raw()).into_string()
    );
    (path.display().to_string(), public)
}

/// An unsigned POST straight to the endpoint: (status, body).
async fn unsigned(url: &str, content_type: &str) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(url)
        .header("content-type", content_type)
        .body("{}")
        .send()
        .await
        .expect("the endpoint answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_restate_server_signing_with_the_configured_key_gets_in() {
    let _e2e = e2e_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ours_pem, ours_public) = identity(dir.path(), "ours");
    let (other_pem, _) = identity(dir.path(), "other");

    let trusted = RestateServer::start_with(&[(SIGNING_KEY_ENV, &ours_pem)]).unwrap();
    let db = dir.path().join("ratchet.db");
    let store = format!("sqlite:{}", db.display());
    let service = Service::start(
        &ratchet_bin(),
        &store,
        &trusted.admin,
        dir.path(),
        &[("RATCHET_IDENTITY_KEYS", &ours_public)],
    )
    .unwrap();
    trusted
        .register(&service.uri())
        .await
        .unwrap_or_else(|e| panic!("signed registration: {e}\n{}", service.log()));
    let (status, reply) = trusted
        .call("s1", "turn", &turn_body("hello", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"]["status"], "finished", "{reply}");
    let before = sqlite_snapshot(&db);

    // Unsigned requests straight to the endpoint: discovery and a handler.
    for (path, content_type) in [
        ("/discover", "application/json"),
        (
            "/invoke/Session/turn",
            "application/vnd.restate.invocation.v5",
        ),
        (
            "/invoke/Session/cancel",
            "application/vnd.restate.invocation.v5",
        ),
    ] {
        let (status, body) = unsigned(&format!("{}{path}", service.uri()), content_type).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("verifying identity"), "{path}: {body}");
    }

    // A restate-server that signs nothing, and one that signs with
    // another key, cannot register the endpoint.
    let unsigned_server = RestateServer::start().unwrap();
    let err = unsigned_server
        .register(&service.uri())
        .await
        .expect_err("an unsigned server is refused")
        .to_string();
    assert!(err.contains("401"), "{err}");
    drop(unsigned_server);
    let impostor = RestateServer::start_with(&[(SIGNING_KEY_ENV, &other_pem)]).unwrap();
    let err = impostor
        .register(&service.uri())
        .await
        .expect_err("a server with another key is refused")
        .to_string();
    assert!(err.contains("401"), "{err}");
    // Nor can it reach a session through its own ingress.
    let (status, _) = post(
        &format!("{}/Session/s1/view", impostor.ingress),
        &json!(null),
    )
    .await
    .unwrap();
    assert!(status >= 400, "the impostor has no such service: {status}");
    drop(impostor);

    assert_eq!(
        sqlite_snapshot(&db),
        before,
        "a refused request changed the store"
    );

    // The trusted server still works after all that.
    let (status, reply) = trusted
        .call("s1", "turn", &turn_body("again", "in-2"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"]["status"], "finished", "{reply}");
}

#[test]
fn a_malformed_identity_key_stops_serve_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["not-a-key", "publickeyv1_0OIl", "publickeyv1_abc"] {
        let out = std::process::Command::new(ratchet_bin())
            .current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--identity-key", bad])
            .args(["--db", "x.db"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: served");
        assert!(stderr.contains("invalid_identity_key"), "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn identity_key_prints_the_public_key_restate_derives() {
    let dir = tempfile::tempdir().unwrap();
    let run = |pem: &std::path::Path| {
        std::process::Command::new(ratchet_bin())
            .arg("identity-key")
            .arg(pem)
            .output()
            .unwrap()
    };
    // restate-server's own known answer for this key.
    let known = dir.path().join("known.pem");
    std::fs::write(
        &known,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPe++4ZTPQDF81otpoU/mOGHC2vOAVp9WbiCblvn3nXO\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = run(&known);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "publickeyv1_AfQwmwfgEZhrWpvv8N52SHpRtZqGGaFr4AZN6qtYWSiY"
    );
    // A fresh key: the same string the test derives itself.
    let (pem, public) = identity(dir.path(), "fresh");
    let out = run(std::path::Path::new(&pem));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public);
    // Not a key: a clear error.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let out = run(&junk);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no PEM private key"),
        "{stderr}"
    );
}
