//! The Restate admin API client behind https and a bearer token, as a
//! platform team deploys it: a real restate-server's admin API fronted by
//! a TLS proxy that demands the token. Queries, the `cancel` handler and
//! `ratchet export` all get through with the token and the CA file; no
//! token, a wrong token or an untrusted certificate is refused with a
//! clear error that never shows the token; a silent server times out.

mod support;

use ratchet::restate::admin::{AdminClient, AdminConfig};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::http::{read_request, respond};
use support::pki::Ca;
use support::restate::{RestateServer, Service, e2e_lock, ratchet_bin};
use support::rig::turn_body;

const TOKEN: &str = "admin-token-7f3a9c2e51";

/// An https proxy on localhost that forwards to `upstream` only requests
/// bearing [`TOKEN`]; counts those it forwarded.
async fn auth_proxy(tls: support::restate::ServerTls, upstream: String) -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let forwarded = Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, http, upstream, count) = (
                acceptor.clone(),
                http.clone(),
                upstream.clone(),
                count.clone(),
            );
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(req) = read_request(&mut tls).await else {
                    return;
                };
                let authorized =
                    req.header("authorization") == Some(format!("Bearer {TOKEN}").as_str());
                let (status, reply) = if !authorized {
                    (
                        401,
                        r#"{"message":"missing or wrong bearer token"}"#.to_string(),
                    )
                } else {
                    count.fetch_add(1, Ordering::SeqCst);
                    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
                    let resp = http
                        .request(method, format!("{upstream}{}", req.path))
                        .header("content-type", "application/json")
                        .header("accept", "application/json")
                        .body(req.body)
                        .send()
                        .await
                        .unwrap();
                    (
                        resp.status().as_u16(),
                        resp.text().await.unwrap_or_default(),
                    )
                };
                respond(&mut tls, status, &reply).await;
            });
        }
    });
    (port, forwarded)
}

fn config(url: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> AdminConfig {
    AdminConfig {
        token: token.map(str::to_string),
        ca_file: ca.map(std::path::Path::to_path_buf),
        timeout: Duration::from_secs(10),
        ..AdminConfig::new(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_behind_https_and_a_token() {
    let _e2e = e2e_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("admin proxy CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let server = RestateServer::start().unwrap();
    let (port, forwarded) = auth_proxy(ca.localhost(), server.admin.clone()).await;
    let https = format!("https://localhost:{port}");

    let sql = "SELECT id FROM sys_deployment";
    let ok = AdminClient::new(config(&https, Some(TOKEN), Some(&ca_file))).unwrap();
    ok.query(sql).await.expect("query with token over https");
    assert_eq!(forwarded.load(Ordering::SeqCst), 1);

    let refusals = [
        (config(&https, None, Some(&ca_file)), "401"),
        (
            config(&https, Some("wrong-token-123456"), Some(&ca_file)),
            "401",
        ),
        // The proxy's CA is not among the public roots.
        (config(&https, Some(TOKEN), None), "certificate"),
    ];
    for (cfg, expected) in refusals {
        let err = AdminClient::new(cfg).unwrap().query(sql).await.unwrap_err();
        let text = err.to_string();
        assert!(text.to_lowercase().contains(expected), "{text}");
        assert!(
            !text.contains(TOKEN) && !text.contains("wrong-token-123456"),
            "{text}"
        );
    }
    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        1,
        "refused calls never reached Restate"
    );

    // Bad settings are refused when the client is made.
    for (cfg, expected) in [
        (config("ftp://localhost:1", None, None), "http or https"),
        (config("not a url", None, None), "not an admin url"),
        (config(&https, Some("bad\ntoken"), None), "header"),
        (
            config(&https, None, Some(&dir.path().join("missing.pem"))),
            "cannot read",
        ),
        (
            AdminConfig {
                timeout: Duration::ZERO,
                ..AdminConfig::new(&https)
            },
            "positive",
        ),
    ] {
        let text = AdminClient::new(cfg).unwrap_err().to_string();
        assert!(text.to_lowercase().contains(expected), "{text}");
    }

    // The `cancel` handler and `ratchet export` go through the proxy.
    let db = dir.path().join("ratchet.db");
    let ca_path = ca_file.display().to_string();
    let service = Service::start(
        &ratchet_bin(),
        &format!("sqlite:{}", db.display()),
        &https,
        dir.path(),
        &[
            ("RATCHET_RESTATE_ADMIN_TOKEN", TOKEN),
            ("RATCHET_RESTATE_ADMIN_CA_FILE", &ca_path),
            ("RATCHET_PAUSE", "3000@after:model:0"),
        ],
    )
    .unwrap();
    server.register(&service.uri()).await.unwrap();
    let inv = server
        .send("c1", "turn", &turn_body("What is 17*23+4?", "in-1"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !service.log().contains("pause point reached") {
        assert!(Instant::now() < deadline, "no pause\n{}", service.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = forwarded.load(Ordering::SeqCst);
    let (status, reply) = server.call("c1", "cancel", &json!(null)).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["cancelled"], true, "{reply}");
    assert!(
        forwarded.load(Ordering::SeqCst) > before,
        "cancel went through the proxy"
    );
    let (_, result) = server.attach(&inv).await.unwrap();
    assert_eq!(result["outcome"]["reason"], "cancelled", "{result}");

    let export = |token: Option<&str>| {
        let mut c = std::process::Command::new(ratchet_bin());
        c.current_dir(dir.path())
            .args(["export", "--invocation", &inv, "--admin", &https])
            .args(["--admin-ca-file", &ca_path])
            .env_remove("RATCHET_RESTATE_ADMIN_TOKEN");
        if let Some(t) = token {
            c.env("RATCHET_RESTATE_ADMIN_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = export(Some(TOKEN));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recording: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(recording["session_id"], "c1");
    let out = export(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("401"), "{stderr}");
    assert!(!service.log().contains(TOKEN), "token in the service log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_admin_api_times_out_instead_of_hanging() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let client = AdminClient::new(AdminConfig {
        timeout: Duration::from_millis(300),
        ..AdminConfig::new(format!("http://127.0.0.1:{port}"))
    })
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), client.query("SELECT 1")).await;
    let err = outcome
        .expect("the client's own timeout fired")
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
}
