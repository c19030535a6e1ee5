//! A real restate-server and a real `ratchet serve` process for end-to-end
//! tests: each with its own temp dir and free loopback ports, stopped by PID
//! when dropped.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Serializes end-to-end tests: each starts a restate-server, and two of
/// them on two cores only make both slow.
static E2E_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the end-to-end lock (a failed test does not poison it for others).
pub async fn e2e_lock() -> tokio::sync::MutexGuard<'static, ()> {
    E2E_LOCK.lock().await
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child PID we started.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The pinned restate-server binary installed by scripts/install-restate.sh.
pub fn restate_server_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        ".tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server",
    );
    assert!(
        p.exists(),
        "restate-server is not installed: run scripts/install-restate.sh"
    );
    p
}

/// A restate-server on loopback with its own base dir.
pub struct RestateServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    node_port: u16,
    /// Ingress URL.
    pub ingress: String,
    /// Admin URL.
    pub admin: String,
}

impl RestateServer {
    /// Starts a server and waits until it is healthy.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ingress, admin, node_port) = (free_port(), free_port(), free_port());
        let config = format!(
            "node-name = \"ratchet-test\"\nbase-dir = \"{}\"\nbind-ip = \"127.0.0.1\"\n\
             [ingress]\nbind-address = \"127.0.0.1:{ingress}\"\n\
             [admin]\nbind-address = \"127.0.0.1:{admin}\"\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("restate.toml"), config).expect("write config");
        let mut server = RestateServer {
            child: None,
            dir,
            node_port,
            ingress: format!("http://127.0.0.1:{ingress}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(restate_server_bin())
            .arg("--config-file")
            .arg(self.dir.path().join("restate.toml"))
            .env("RESTATE_BIND_PORT", self.node_port.to_string())
            .env("RESTATE_LOG_FILTER", "warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn restate-server");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let urls = [
            format!("{}/health", self.admin),
            format!("{}/restate/health", self.ingress),
        ];
        while Instant::now() < deadline {
            if urls.iter().all(|u| http_get_ok(u)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "restate-server did not become healthy; log:\n{}",
            self.log()
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILLs the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same base dir and ports.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Registers a deployment.
    pub async fn register(&self, uri: &str) {
        let body = serde_json::json!({"uri": uri, "force": true});
        let (status, v) = post(&format!("{}/deployments", self.admin), &body).await;
        assert!(status < 300, "register {uri}: {status} {v}");
    }

    /// Calls a handler and returns (HTTP status, body).
    pub async fn call(&self, session: &str, handler: &str, body: &Value) -> (u16, Value) {
        post(
            &format!("{}/Session/{session}/{handler}", self.ingress),
            body,
        )
        .await
    }

    /// Sends a one-way call; returns the invocation id.
    pub async fn send(&self, session: &str, handler: &str, body: &Value) -> String {
        let (status, v) = post(
            &format!("{}/restate/send/Session/{session}/{handler}", self.ingress),
            body,
        )
        .await;
        assert!(status < 300, "send: {status} {v}");
        v["invocationId"]
            .as_str()
            .expect("invocation id")
            .to_string()
    }

    /// Waits for an invocation's result.
    pub async fn attach(&self, invocation: &str) -> (u16, Value) {
        let url = format!("{}/restate/invocation/{invocation}/attach", self.ingress);
        let resp = client().get(&url).send().await.expect("attach");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for RestateServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

fn http_get_ok(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// POSTs JSON and returns (status, body as JSON or string).
/// A `null` body sends no body (handlers without input).
pub async fn post(url: &str, body: &Value) -> (u16, Value) {
    let req = client().post(url);
    let req = if body.is_null() { req } else { req.json(body) };
    let resp = req.send().await.expect("post");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A `ratchet serve` process.
pub struct Service {
    child: Option<Child>,
    store: String,
    admin: String,
    log: PathBuf,
    /// The port it listens on (kept across restarts).
    pub port: u16,
}

impl Service {
    /// Starts `ratchet serve` on `store` (a `--store` spec) with extra env.
    pub fn start(store: &str, admin: &str, log_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut s = Service {
            child: None,
            store: store.to_string(),
            admin: admin.to_string(),
            log: log_dir.join("service.log"),
            port: 0,
        };
        s.spawn(env);
        s
    }

    /// The deployment URI.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratchet"));
        cmd.args([
            "serve",
            "--store",
            &self.store,
            "--restate-admin",
            &self.admin,
        ])
        .args(["--listen", &format!("127.0.0.1:{}", self.port)])
        .env_remove("RATCHET_FAULT")
        .env_remove("RATCHET_PAUSE")
        .env("RATCHET_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ratchet serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listen line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no listen line from ratchet serve: {line:?}; log:\n{}",
                    self.log()
                )
            });
        self.port = port;
        self.child = Some(child);
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process has exited (e.g. at a fault point).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILLs the service.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with `env`.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        self.spawn(env);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}
