//! A ratchet service process: `ratchet serve`, or any program that serves
//! ratchet agents and prints `listening on ADDR` once it does (a team's own
//! test binary re-run as the crash matrix's service). It keeps its port
//! across restarts, so Restate's deployment stays valid, and its output
//! goes to a log file.

use super::{HarnessResult, err, open_log, signal, stop};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the process learns its listen address.
#[derive(Clone, Debug)]
enum Listen {
    /// `--listen ADDR` (ratchet serve).
    Flag,
    /// An environment variable holding `ADDR`.
    Env(String),
}

/// A service process.
pub struct Service {
    child: Option<Child>,
    program: PathBuf,
    args: Vec<String>,
    listen: Listen,
    log: PathBuf,
    /// The port it listens on (kept across restarts).
    pub port: u16,
}

impl Service {
    /// Starts `bin serve` on `store` (a `--store` spec) with extra env.
    pub fn start(
        bin: &Path,
        store: &str,
        admin: &str,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> HarnessResult<Self> {
        let args = ["serve", "--store", store, "--restate-admin", admin];
        let mut s = Service::new(bin, &args, Listen::Flag, log_dir);
        s.spawn(env)?;
        Ok(s)
    }

    /// Starts `program args` with extra env; it is told where to listen by
    /// the environment variable `listen_env` (`127.0.0.1:0` the first time,
    /// then the port it printed).
    pub fn start_program(
        program: &Path,
        args: &[&str],
        listen_env: &str,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> HarnessResult<Self> {
        let mut s = Service::new(program, args, Listen::Env(listen_env.into()), log_dir);
        s.spawn(env)?;
        Ok(s)
    }

    fn new(program: &Path, args: &[&str], listen: Listen, log_dir: &Path) -> Self {
        Service {
            child: None,
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            listen,
            log: log_dir.join("service.log"),
            port: 0,
        }
    }

    /// The deployment URI.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self, env: &[(&str, &str)]) -> HarnessResult<()> {
        let log = open_log(&self.log)?;
        let addr = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        match &self.listen {
            Listen::Flag => cmd.args(["--listen", &addr]),
            Listen::Env(name) => cmd.env(name, &addr),
        };
        cmd.env_remove("RATCHET_FAULT")
            .env_remove("RATCHET_PAUSE")
            .env("RATCHET_LOG", "info")
            // Failure tests count effects; `env` may turn it off (the bench).
            .env("RATCHET_EFFECT_LEDGER", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", self.program.display())))?;
        let port = child.stdout.take().and_then(|out| self.listen_line(out));
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "no `listening on` line from {} within a minute; its output:\n{}",
                self.program.display(),
                self.log()
            )));
        };
        self.port = port;
        self.child = Some(child);
        Ok(())
    }

    /// Copies stdout to the log from a thread, and returns the port of its
    /// `listening on ADDR` line, or `None` if none came within a minute (or
    /// the process ended first).
    fn listen_line(&self, out: std::process::ChildStdout) -> Option<u16> {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut file = open_log(&log).ok();
            let mut line = String::new();
            let mut tx = Some(tx);
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                // A test binary's line may follow libtest's `test NAME ... `.
                if let Some((_, addr)) = line.trim().split_once("listening on ")
                    && let Some(port) = addr.rsplit(':').next().and_then(|p| p.parse().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(line.as_bytes());
                }
                line.clear();
            }
        });
        rx.recv_timeout(Duration::from_secs(60)).ok()
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

    /// Sends SIGTERM and waits for the process to exit; its exit status,
    /// or `None` if it was still running after `timeout` (then SIGKILLed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        signal(&c, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Starts it again on the same port, with `env`.
    pub fn restart(&mut self, env: &[(&str, &str)]) -> HarnessResult<()> {
        self.kill9();
        self.spawn(env)
    }

    /// Its PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}
