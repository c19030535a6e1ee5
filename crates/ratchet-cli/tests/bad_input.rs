//! The checked-in bad-input corpus (`tests/bad-input/` at the repository
//! root): every case through Restate's ingress against a real `ratchet
//! serve`, and through the CLI, gets its expected status or exit code and
//! error code, never a panic or a backtrace, and changes nothing stored.

mod support;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::rig::{Rig, turn_body};
use support::sqlite_snapshot;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad-input")
}

#[derive(Deserialize)]
struct Cases<T> {
    case: Vec<T>,
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let text = std::fs::read_to_string(corpus().join(file)).unwrap();
    toml::from_str::<Cases<T>>(&text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .case
}

#[derive(Deserialize)]
struct IngressCase {
    name: String,
    handler: String,
    #[serde(default = "default_key")]
    key: String,
    key_fill: Option<String>,
    key_times: Option<usize>,
    #[serde(default)]
    body: String,
    body_hex: Option<String>,
    body_template: Option<String>,
    fill: Option<String>,
    times: Option<usize>,
    content_type: Option<String>,
    status: u16,
    code: Option<String>,
    contains: Option<String>,
}

fn default_key() -> String {
    "s1".into()
}

impl IngressCase {
    fn key(&self) -> String {
        match (&self.key_fill, self.key_times) {
            (Some(fill), Some(n)) => fill.repeat(n),
            _ => self.key.clone(),
        }
    }

    fn body(&self) -> Vec<u8> {
        if let Some(hex) = &self.body_hex {
            return (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
        }
        match (&self.body_template, &self.fill, self.times) {
            (Some(t), Some(fill), Some(n)) => t.replace("{fill}", &fill.repeat(n)).into_bytes(),
            _ => self.body.clone().into_bytes(),
        }
    }
}

/// What a reply or an output must not hold: a user error never panics.
fn assert_no_panic(what: &str, text: &str, failures: &mut Vec<String>) {
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        if text.contains(bad) {
            failures.push(format!("{what}: '{bad}' in {text}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_through_ingress_changes_nothing() {
    let _e2e = support::restate::e2e_lock().await;
    let cases: Vec<IngressCase> = load("ingress.toml");
    assert!(cases.len() >= 40, "{} ingress cases", cases.len());
    let rig = Rig::start(&[]).await;
    let (status, reply) = rig
        .server
        .call("s1", "turn", &turn_body("hello", "seed-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{reply}");
    let before = sqlite_snapshot(&rig.db());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let url = format!(
            "{}/Session/{}/{}",
            rig.server.ingress,
            case.key(),
            case.handler
        );
        let mut req = http.post(&url).body(case.body());
        let content_type = case.content_type.as_deref().unwrap_or("application/json");
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let shown: String = text.chars().take(300).collect();
        if status != case.status {
            failures.push(format!(
                "{}: status {status}, expected {}: {shown}",
                case.name, case.status
            ));
        }
        for needle in case.code.iter().chain(&case.contains) {
            if !text.contains(needle.as_str()) {
                failures.push(format!("{}: no '{needle}' in {shown}", case.name));
            }
        }
        assert_no_panic(&case.name, &text, &mut failures);
    }
    assert_no_panic("the service log", &rig.service.log(), &mut failures);
    assert!(
        failures.is_empty(),
        "{} of {} ingress cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        sqlite_snapshot(&rig.db()),
        before,
        "a refused input changed the store"
    );
}

#[derive(Deserialize)]
struct CliCase {
    name: String,
    args: Vec<String>,
    #[serde(default = "seeded")]
    db: String,
    exit: i32,
    code: Option<String>,
    contains: Option<String>,
    absent: Option<String>,
}

fn seeded() -> String {
    "seeded".into()
}

/// The database a case runs on, made in `dir/.ratchet/ratchet.db` from
/// the seeded one.
fn make_db(kind: &str, dir: &Path, seed: &Path) {
    let ratchet_dir = dir.join(".ratchet");
    std::fs::create_dir_all(&ratchet_dir).unwrap();
    let db = ratchet_dir.join("ratchet.db");
    match kind {
        "seeded" | "readonly" | "newer" => {
            std::fs::copy(seed, &db).unwrap();
        }
        "corrupt" => std::fs::write(&db, "not a database, only text. ".repeat(200)).unwrap(),
        "foreign" => {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(
                "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
                 INSERT INTO customers (name) VALUES ('ada');",
            )
            .unwrap();
        }
        "directory" => std::fs::create_dir_all(&db).unwrap(),
        other => panic!("unknown db kind {other}"),
    }
    if kind == "newer" {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA user_version = 9999;").unwrap();
    }
    if kind == "readonly" {
        set_mode(&db, 0o444);
        set_mode(&ratchet_dir, 0o555);
        set_mode(dir, 0o555);
    }
}

/// What a case's database holds: the rows of a ratchet database, else
/// the file's bytes.
fn db_state(dir: &Path, kind: &str) -> String {
    let db = dir.join(".ratchet/ratchet.db");
    match kind {
        "seeded" | "readonly" => sqlite_snapshot(&db),
        "directory" => format!("{:?}", std::fs::read_dir(&db).map(|d| d.count()).ok()),
        _ => format!("{:?}", std::fs::read(&db).ok()),
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn the_bad_input_corpus_through_the_cli_changes_nothing() {
    let cases: Vec<CliCase> = load("cli.toml");
    assert!(cases.len() >= 40, "{} CLI cases", cases.len());
    let work = tempfile::tempdir().unwrap();
    set_mode(work.path(), 0o755);
    // A copy of the binary that any user may run: read-only files only
    // stay read-only for a user who is not root.
    let bin = work.path().join("ratchet");
    std::fs::copy(support::restate::ratchet_bin(), &bin).unwrap();
    let seed_dir = work.path().join("seed");
    std::fs::create_dir_all(&seed_dir).unwrap();
    let out = Command::new(&bin)
        .current_dir(&seed_dir)
        .args(["turn", "--session", "s", "--input-id", "seed-1", "hello"])
        .env_remove("RATCHET_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seed = seed_dir.join(".ratchet/ratchet.db");
    let files = corpus().join("files");
    let big = "a".repeat(100_000);
    let id129 = "i".repeat(129);
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let dir = work.path().join(format!("case-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        make_db(&case.db, &dir, &seed);
        let before = db_state(&dir, &case.db);
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{files}", &files.display().to_string())
                    .replace("{dir}", &dir.display().to_string())
                    .replace("{big}", &big)
                    .replace("{id129}", &id129)
            })
            .collect();
        let mut cmd = if case.db == "readonly" && is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = cmd
            .current_dir(&dir)
            .args(&args)
            .env_remove("RATCHET_DB")
            .env_remove("RATCHET_STORE")
            .env_remove("RATCHET_MODEL")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT")
            .env_remove("RATCHET_IDENTITY_KEYS")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let shown: String = stderr.chars().take(400).collect();
        let code = out.status.code().unwrap_or(-1);
        if code != case.exit {
            failures.push(format!(
                "{}: exit {code}, expected {}: {shown}{stdout}",
                case.name, case.exit
            ));
        }
        for needle in case.code.iter().chain(&case.contains) {
            if !stderr.contains(needle.as_str()) {
                failures.push(format!("{}: no '{needle}' in {shown}", case.name));
            }
        }
        if let Some(absent) = &case.absent
            && (stderr.contains(absent.as_str()) || stdout.contains(absent.as_str()))
        {
            failures.push(format!("{}: '{absent}' printed", case.name));
        }
        assert_no_panic(&case.name, &format!("{stderr}{stdout}"), &mut failures);
        if db_state(&dir, &case.db) != before {
            failures.push(format!("{}: the database changed", case.name));
        }
        if case.db == "readonly" {
            // Writable again, so the temp dir can be removed.
            set_mode(&dir, 0o755);
            set_mode(&dir.join(".ratchet"), 0o755);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} CLI cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
