#!/usr/bin/env bash
# The crash matrix on a real restate-server: every fault point of every
# scripted scenario (plain answer, three tools over two model calls, agent
# frame switch), service SIGKILLed there and restarted, plus restate-server
# itself SIGKILLed at a sample of points; each run checked against a
# crash-free reference. `--quick` runs the CI subset.
# Last line: {"points": N, "passed": P, "failed": F}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-restate.sh
cargo build --quiet --bin ratchet
exec "${CARGO_TARGET_DIR:-target}/debug/ratchet" chaos "$@"
