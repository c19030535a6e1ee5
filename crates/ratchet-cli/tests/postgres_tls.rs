//! TLS to a real PostgreSQL that takes TLS connections only (`ssl=on`,
//! `hostssl` lines alone), its certificate signed by a CA this test makes:
//! every `sslmode` does what libpq's does, a host name mismatch is refused
//! under verify-full, and a turn runs through the CLI over verified TLS.

mod support;

use ratchet::store::rules::StoreOptions;
use ratchet::store::{PostgresStore, SslMode};
use ratchet_testkit::harness::PostgresServer;
use std::path::Path;
use std::process::Command;
use support::pki::Ca;

async fn connect(
    url: &str,
    mode: SslMode,
    root: Option<&Path>,
) -> Result<PostgresStore, ratchet::store::StoreError> {
    PostgresStore::connect_with_tls(
        url,
        Some(mode),
        root.map(Path::to_path_buf),
        StoreOptions::default(),
        1,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_does_what_libpq_does_against_a_tls_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Ca::new("ratchet test CA");
    let other = Ca::new("some other CA");
    let ca_file = ours.write(dir.path(), "ca.pem");
    let other_file = other.write(dir.path(), "other.pem");
    let server = PostgresServer::start_tls(ours.localhost()).unwrap();
    let url = |host: &str| {
        format!(
            "postgres://ratchet:{}@{host}:{}/postgres",
            server.password, server.port
        )
    };
    let ip = url("127.0.0.1");
    let name = url("localhost");

    // The server refuses plaintext, so every success below is encrypted.
    let err = connect(&ip, SslMode::Disable, None)
        .await
        .err()
        .expect("plaintext refused")
        .to_string();
    assert!(err.contains("no encryption"), "{err}");

    // Encrypted without verification (no root file given).
    connect(&ip, SslMode::Prefer, None).await.expect("prefer");
    connect(&ip, SslMode::Require, None).await.expect("require");
    // The chain is checked, the name is not: the certificate is for
    // localhost and we dial the address.
    connect(&ip, SslMode::VerifyCa, Some(&ca_file))
        .await
        .expect("verify-ca");
    // require with a root file is verify-ca, as in libpq.
    let err = connect(&ip, SslMode::Require, Some(&other_file))
        .await
        .err()
        .expect("require with the wrong root refused")
        .to_string();
    assert!(err.to_lowercase().contains("unknown"), "{err}");
    connect(&name, SslMode::VerifyFull, Some(&ca_file))
        .await
        .expect("verify-full on the certificate's name");

    let mismatch = connect(&ip, SslMode::VerifyFull, Some(&ca_file))
        .await
        .err()
        .expect("verify-full refuses a name the certificate lacks")
        .to_string();
    assert!(mismatch.contains("not valid for name"), "{mismatch}");
    let wrong_ca = connect(&name, SslMode::VerifyCa, Some(&other_file))
        .await
        .err()
        .expect("verify-ca refuses another CA's certificate")
        .to_string();
    assert!(wrong_ca.to_lowercase().contains("unknown"), "{wrong_ca}");
    // No root file: the Mozilla roots, which do not know our CA.
    let public_roots = connect(&name, SslMode::VerifyFull, None)
        .await
        .err()
        .expect("public roots refuse a private CA")
        .to_string();
    assert!(
        public_roots.to_lowercase().contains("unknown"),
        "{public_roots}"
    );
    for e in [&err, &mismatch, &wrong_ca, &public_roots] {
        assert!(!e.contains(&server.password), "password leaked: {e}");
    }

    // The URL's own parameters work the same (sslrootcert percent-encoded).
    let in_url = format!(
        "{name}?sslmode=verify-full&sslrootcert={}",
        ca_file.display().to_string().replace('/', "%2F")
    );
    PostgresStore::connect(&in_url, StoreOptions::default(), 1)
        .await
        .expect("verify-full from the URL");

    // A turn through the CLI over verified TLS, flags and URL alike.
    for (store, flags) in [
        (
            format!("postgres:{name}"),
            vec![
                "--pg-sslmode".to_string(),
                "verify-full".to_string(),
                "--pg-ssl-root-cert".to_string(),
                ca_file.display().to_string(),
            ],
        ),
        (format!("postgres:{in_url}"), Vec::new()),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ratchet"))
            .current_dir(dir.path())
            .args(["turn", "--session", "tls", "--store", &store])
            .args(&flags)
            .arg("hello over TLS")
            .env_remove("RATCHET_DB")
            .env_remove("RATCHET_STORE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(!stdout.contains(&server.password) && !stderr.contains(&server.password));
    }

    // And a mismatch through the CLI is a clear error with no password.
    let out = Command::new(env!("CARGO_BIN_EXE_ratchet"))
        .current_dir(dir.path())
        .args(["turn", "--session", "tls", "--store"])
        .arg(format!("postgres:{ip}"))
        .args(["--pg-sslmode", "verify-full", "--pg-ssl-root-cert"])
        .arg(&ca_file)
        .arg("hello")
        .env_remove("RATCHET_DB")
        .env_remove("RATCHET_STORE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not valid for name"), "{stderr}");
    assert!(!stderr.contains(&server.password), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
