//! The MCP reference server the tests attach, and finding its processes.

use std::path::PathBuf;

/// server-everything's entry point, installed by scripts/install-mcp.sh.
pub fn everything_js() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let js =
        root.join(".tools/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        js.exists(),
        "run scripts/install-mcp.sh first ({})",
        js.display()
    );
    js
}

/// Processes of this user started with `RATCHET_TEST_TAG={tag}`, as
/// (pid, parent pid).
pub fn tagged(tag: &str) -> Vec<(i32, i32)> {
    let want = format!("RATCHET_TEST_TAG={tag}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|b| *b == 0).any(|v| v == want.as_bytes())
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
            Some((pid, ppid.parse().ok()?))
        })
        .collect()
}
