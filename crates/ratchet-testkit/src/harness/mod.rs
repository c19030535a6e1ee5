//! Process harness for failure testing, end-to-end tests and benchmarks: a
//! real restate-server and real `ratchet serve` processes, each with its own
//! temp dir and free loopback ports, stopped by PID when dropped. Used by
//! `ratchet chaos`, `ratchet bench` and the tests in `tests/`.

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod postgres;
mod service;

pub use postgres::{PostgresServer, ServerTls};
pub use service::Service;

/// Why the harness could not do something.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HarnessError(pub String);

/// Harness result.
pub type HarnessResult<T> = Result<T, HarnessError>;

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

/// A loopback port free right now.
pub fn free_port() -> HarnessResult<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("no free port: {e}")))
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

/// The restate-server binary: `RATCHET_RESTATE_SERVER`, else the pinned one
/// scripts/install-restate.sh puts under `.tools/` (here, or in the source
/// tree this build came from).
pub fn restate_server_bin() -> HarnessResult<PathBuf> {
    if let Ok(p) = std::env::var("RATCHET_RESTATE_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let rel = ".tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server";
    [
        Path::new(".").join(rel),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel),
    ]
    .into_iter()
    .find(|p| p.exists())
    .ok_or_else(|| err("restate-server is not installed: run scripts/install-restate.sh"))
}

/// A restate-server on loopback with its own base dir.
pub struct RestateServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    node_port: u16,
    env: Vec<(String, String)>,
    /// Ingress URL.
    pub ingress: String,
    /// Admin URL.
    pub admin: String,
}

impl RestateServer {
    /// Starts a server and waits until it is healthy.
    pub fn start() -> HarnessResult<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra environment (e.g. shorter invoker timers,
    /// `RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT=2s`).
    pub fn start_with(env: &[(&str, &str)]) -> HarnessResult<Self> {
        let dir = tempfile::tempdir().map_err(|e| err(format!("temp dir: {e}")))?;
        let (ingress, admin, node_port) = (free_port()?, free_port()?, free_port()?);
        let config = format!(
            "node-name = \"ratchet-test\"\nbase-dir = \"{}\"\nbind-ip = \"127.0.0.1\"\n\
             [ingress]\nbind-address = \"127.0.0.1:{ingress}\"\n\
             [admin]\nbind-address = \"127.0.0.1:{admin}\"\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("restate.toml"), config)
            .map_err(|e| err(format!("write config: {e}")))?;
        let mut server = RestateServer {
            child: None,
            dir,
            node_port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ingress: format!("http://127.0.0.1:{ingress}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> HarnessResult<()> {
        let log = open_log(&self.dir.path().join("server.log"))?;
        let child = Command::new(restate_server_bin()?)
            .arg("--config-file")
            .arg(self.dir.path().join("restate.toml"))
            .env("RESTATE_BIND_PORT", self.node_port.to_string())
            .env("RESTATE_LOG_FILTER", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(
                log.try_clone().map_err(|e| err(e.to_string()))?,
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| err(format!("cannot start restate-server: {e}")))?;
        self.child = Some(child);
        self.wait_healthy()
    }

    fn wait_healthy(&self) -> HarnessResult<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let urls = [
            format!("{}/health", self.admin),
            format!("{}/restate/health", self.ingress),
        ];
        while Instant::now() < deadline {
            if urls.iter().all(|u| http_get_ok(u)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(err(format!(
            "restate-server did not become healthy; log:\n{}",
            self.log()
        )))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Its PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same base dir and ports.
    pub fn restart(&mut self) -> HarnessResult<()> {
        self.kill9();
        self.spawn()
    }

    /// The server's base dir (its RocksDB files, logs and metadata).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Registers a deployment.
    pub async fn register(&self, uri: &str) -> HarnessResult<()> {
        let body = serde_json::json!({"uri": uri, "force": true});
        let (status, v) = post(&format!("{}/deployments", self.admin), &body).await?;
        if status >= 300 {
            return Err(err(format!("register {uri}: {status} {v}")));
        }
        Ok(())
    }

    /// Runs a SQL query on the admin API; returns its rows.
    pub async fn query(&self, sql: &str) -> HarnessResult<Vec<Value>> {
        ratchet::restate::admin::query(&self.admin, sql)
            .await
            .map_err(|e| err(e.to_string()))
    }

    /// Calls a handler and returns (HTTP status, body).
    pub async fn call(
        &self,
        session: &str,
        handler: &str,
        body: &Value,
    ) -> HarnessResult<(u16, Value)> {
        self.call_to("Session", session, handler, body).await
    }

    /// Calls `object`'s handler for key `key`; returns (HTTP status, body).
    pub async fn call_to(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        body: &Value,
    ) -> HarnessResult<(u16, Value)> {
        post(&format!("{}/{object}/{key}/{handler}", self.ingress), body).await
    }

    /// Sends a one-way call; returns the invocation id.
    pub async fn send(&self, session: &str, handler: &str, body: &Value) -> HarnessResult<String> {
        self.send_to("Session", session, handler, body).await
    }

    /// Sends a one-way call to `object`'s key `key`; returns the invocation id.
    pub async fn send_to(
        &self,
        object: &str,
        key: &str,
        handler: &str,
        body: &Value,
    ) -> HarnessResult<String> {
        let url = format!("{}/restate/send/{object}/{key}/{handler}", self.ingress);
        let (status, v) = post(&url, body).await?;
        match v["invocationId"].as_str() {
            Some(id) if status < 300 => Ok(id.to_string()),
            _ => Err(err(format!("send: {status} {v}"))),
        }
    }

    /// Kills an invocation through the admin API: no handler code runs for
    /// it again.
    pub async fn kill_invocation(&self, invocation: &str) -> HarnessResult<()> {
        let url = format!("{}/invocations/{invocation}/kill", self.admin);
        let resp = client()?
            .patch(&url)
            .send()
            .await
            .map_err(|e| err(format!("kill {invocation}: {e}")))?;
        let (status, v) = reply(resp).await?;
        if status >= 300 {
            return Err(err(format!("kill {invocation}: {status} {v}")));
        }
        Ok(())
    }

    /// Waits for an invocation's result.
    pub async fn attach(&self, invocation: &str) -> HarnessResult<(u16, Value)> {
        let url = format!("{}/restate/invocation/{invocation}/attach", self.ingress);
        let resp = client()?
            .get(&url)
            .send()
            .await
            .map_err(|e| err(format!("attach: {e}")))?;
        reply(resp).await
    }
}

impl Drop for RestateServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}

fn client() -> HarnessResult<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| err(format!("http client: {e}")))
}

async fn reply(resp: reqwest::Response) -> HarnessResult<(u16, Value)> {
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| err(format!("reading a reply: {e}")))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn open_log(path: &Path) -> HarnessResult<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| err(format!("log file {}: {e}", path.display())))
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
pub async fn post(url: &str, body: &Value) -> HarnessResult<(u16, Value)> {
    let req = client()?.post(url);
    let req = if body.is_null() { req } else { req.json(body) };
    let resp = req
        .send()
        .await
        .map_err(|e| err(format!("POST {url}: {e}")))?;
    reply(resp).await
}
