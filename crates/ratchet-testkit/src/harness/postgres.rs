//! A throwaway PostgreSQL server for tests and `scripts/postgres.sh`: a
//! cluster made by initdb in a temp dir, password auth, loopback only, a
//! free port, stopped by PID. As root, the server runs as the `postgres`
//! system user (PostgreSQL refuses to run as root).

use super::{HarnessError, HarnessResult, free_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn err(msg: impl Into<String>) -> HarnessError {
    HarnessError(msg.into())
}

/// The directory of the PostgreSQL server binaries: `RATCHET_PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin` (Debian's layout).
pub fn pg_bin_dir() -> HarnessResult<PathBuf> {
    if let Ok(dir) = std::env::var("RATCHET_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| err("PostgreSQL is not installed: run scripts/postgres.sh install"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .ok_or_else(|| err("PostgreSQL is not installed: run scripts/postgres.sh install"))
}

/// The uid and gid to run the server as when we are root.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam reads a static entry
    // that we copy out at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() {
            return None;
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn chown(path: &Path, user: Option<(u32, u32)>) -> HarnessResult<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| err(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// A running PostgreSQL server.
pub struct PostgresServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The superuser's password (tests check it never leaks).
    pub password: String,
    tls: bool,
}

/// A server certificate and its key, both PEM, for a TLS-only server.
pub struct ServerTls {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl PostgresServer {
    /// Makes a cluster and starts the server.
    pub fn start() -> HarnessResult<Self> {
        Self::start_with(None)
    }

    /// Makes a cluster that takes TLS connections only (`ssl=on`, and
    /// `pg_hba.conf` with `hostssl` lines alone), and starts the server.
    pub fn start_tls(tls: ServerTls) -> HarnessResult<Self> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<ServerTls>) -> HarnessResult<Self> {
        let bin = pg_bin_dir()?;
        let user = postgres_user();
        let dir = tempfile::Builder::new()
            .prefix("ratchet-pg-")
            .tempdir()
            .map_err(|e| err(format!("temp dir: {e}")))?;
        chown(dir.path(), user)?;
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| err(e.to_string()))?;
        chown(&pwfile, user)?;
        let out = command(&bin.join("initdb"), user)
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "ratchet",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .output()
            .map_err(|e| err(format!("cannot run initdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let data = dir.path().join("data");
        if let Some(tls) = &tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", &tls.cert_pem), ("server.key", &tls.key_pem)] {
                let path = data.join(name);
                std::fs::write(&path, pem).map_err(|e| err(e.to_string()))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| err(e.to_string()))?;
                chown(&path, user)?;
            }
            let hba = "local all all scram-sha-256\n\
                       hostssl all all 127.0.0.1/32 scram-sha-256\n";
            std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| err(e.to_string()))?;
        }
        let mut server = PostgresServer {
            child: None,
            port: free_port()?,
            dir,
            bin,
            user,
            password,
            tls: tls.is_some(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> HarnessResult<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .map_err(|e| err(e.to_string()))?;
        let child = command(&self.bin.join("postgres"), self.user)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(if self.tls {
                &["-c", "ssl=on"][..]
            } else {
                &[][..]
            })
            .args([
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ])
            .stdout(Stdio::from(
                log.try_clone().map_err(|e| err(e.to_string()))?,
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| err(format!("cannot start postgres: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(err(format!("postgres did not start; log:\n{}", self.log())))
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A connection URL for `database` (with the password in it).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://ratchet:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling a child PID we started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same cluster and port.
    pub fn restart(&mut self) -> HarnessResult<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
