#!/usr/bin/env bash
# Benchmarks (release build): a durable turn vs the orchestrator's floor
# (latency and throughput), the inline tier on SQLite vs memory, growth with
# history, and service memory. `--quick` is the short run.
# Last line: the JSON report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-restate.sh
cargo build --release --quiet --bin ratchet
exec "${CARGO_TARGET_DIR:-target}/release/ratchet" bench "$@"
