#!/usr/bin/env bash
# The main job, end to end on the embedded (inline) tier: build ratchet, run
# a turn whose demo model calls three tools, kill the process (SIGKILL via a
# fault point) right after the first tool, resume the turn from its
# checkpoints, and show that no completed tool ran twice.
# Last line: one JSON object {"outcome", "recovered_after_crash", "tool_executions"}.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building ratchet" >&2
cargo build --quiet --bin ratchet
bin="${CARGO_TARGET_DIR:-target}/debug/ratchet"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db="$work/demo.db"
session="demo-$$"
question="What is 17*23+4 and what time is it? Also remember to buy milk"

echo "== turn on session $session: \"$question\"" >&2
echo "== the process is killed right after tool call call_0 completes" >&2
set +e
RATCHET_FAULT="after:tool:0:call_0" "$bin" turn --db "$db" --session "$session" \
  --input-id in-1 "$question" >/dev/null 2>&1
status=$?
set -e
crashed=false
if [ "$status" -ne 0 ]; then crashed=true; echo "== process died (exit $status), as planned" >&2; fi

echo "== resuming from checkpoints" >&2
"$bin" resume --db "$db" --session "$session" >&2

echo "== committed history" >&2
"$bin" history --db "$db" --session "$session" >&2

history=$("$bin" history --db "$db" --session "$session" --json)
effects=$("$bin" effects --db "$db" --session "$session")
python3 - "$crashed" "$history" "$effects" <<'PY'
import json, sys
crashed = sys.argv[1] == "true"
history = json.loads(sys.argv[2])
effects = json.loads(sys.argv[3])
outcome = history["turns"][-1]["outcome"] if history["turns"] else None
tools = {k.split(":")[-1]: v for k, v in effects.items() if k.startswith("tool:")}
print(json.dumps({
    "outcome": outcome,
    "recovered_after_crash": crashed and outcome is not None and outcome.get("status") == "finished",
    "tool_executions": tools,
}))
PY
