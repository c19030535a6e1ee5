#!/usr/bin/env bash
# Builds ratchet and runs every test: unit, store conformance, engine,
# and the end-to-end tests against a real restate-server.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/install-restate.sh ]; then
  scripts/install-restate.sh
fi

echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --no-fail-fast "$@"
