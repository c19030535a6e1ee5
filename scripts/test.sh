#!/usr/bin/env bash
# Builds ratchet and runs every test: unit, store conformance (memory,
# SQLite, PostgreSQL), engine, CLI, the end-to-end tests against a real
# restate-server and PostgreSQL, the TypeScript client check (its npm
# packages installed from the registry by tests/typescript_client.rs at the
# versions of clients/typescript/package-lock.json), the example crate's own
# failure tests (examples/billing: replay of its recordings, the crash
# matrix over its agents, always-replay), the replay corpora on a build
# whose step order changed, and the quick crash matrix.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-restate.sh
scripts/postgres.sh install
scripts/install-mcp.sh
scripts/install-otel-receiver.sh
scripts/install-browser.sh

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== the library's default build: nothing test-only in it"
tree=$(cargo tree -p ratchet -e normal --prefix none)
if grep -E '^(clap|tempfile|ratchet-testkit) ' <<<"$tree"; then
  echo "the default library build depends on test-only or CLI crates" >&2
  exit 1
fi
cargo test --quiet -p ratchet --lib
echo "== cargo build --bins --examples (the example agents' test runs the example crate's binary)"
cargo build --quiet --workspace --bins --examples
echo "== cargo test"
cargo test --workspace --no-fail-fast "$@"
echo "== replay corpora (ratchet's, and the example crate's recordings) against a build with reordered steps (must diverge at the named step)"
cargo test --quiet -p ratchet-cli -p billing-agent \
  --features ratchet-cli/reorder-steps,billing-agent/reorder-steps \
  --test replay_corpus --test replay
echo "== crash matrix (quick)"
cargo build --quiet --bin ratchet
"${CARGO_TARGET_DIR:-target}/debug/ratchet" chaos --quick
