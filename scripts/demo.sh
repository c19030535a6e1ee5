#!/usr/bin/env bash
# The main job, end to end on the durable tier: install restate-server (npm)
# and build ratchet, start both on free loopback ports, register the
# deployment, run a turn whose demo model calls three tools, SIGKILL the
# service right after the first tool (a fault point), restart it, let
# Restate finish the turn, print an account, stop everything it started.
# Last line: {"outcome", "recovered_after_crash", "tool_executions"}.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*" >&2; }

scripts/install-restate.sh
say "building ratchet"
cargo build --quiet --bin ratchet
bin="${CARGO_TARGET_DIR:-target}/debug/ratchet"
server_bin=.tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server

work=$(mktemp -d)
server_pid=""
service_pid=""
cleanup() {
  for pid in $service_pid $server_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $service_pid $server_pid; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ingress_port=$(free_port); admin_port=$(free_port); node_port=$(free_port); service_port=$(free_port)
ingress="http://127.0.0.1:$ingress_port"
admin="http://127.0.0.1:$admin_port"
db="$work/ratchet.db"

say "starting restate-server (ingress $ingress, admin $admin)"
RESTATE_INGRESS__BIND_ADDRESS="127.0.0.1:$ingress_port" RESTATE_ADMIN__BIND_ADDRESS="127.0.0.1:$admin_port" \
  RESTATE_BIND_PORT="$node_port" RESTATE_BASE_DIR="$work/restate" RESTATE_LOG_FILTER=warn \
  "$server_bin" --config-file restate.toml >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  curl -sf "$admin/health" >/dev/null && curl -sf "$ingress/restate/health" >/dev/null && break
  sleep 0.1
done
curl -sf "$admin/health" >/dev/null || { cat "$work/server.log" >&2; echo "restate-server did not start" >&2; exit 1; }

start_service() {
  # --effect-ledger counts every model and tool call, to show each ran once.
  "$bin" serve --effect-ledger --store "sqlite:$db" --listen "127.0.0.1:$service_port" --restate-admin "$admin" \
    >"$work/service.out" 2>>"$work/service.log" &
  service_pid=$!
  for _ in $(seq 1 100); do grep -q listening "$work/service.out" 2>/dev/null && break; sleep 0.05; done
}

say "starting ratchet serve with RATCHET_FAULT=after:tool:0:call_0 (dies right after the first tool)"
RATCHET_FAULT="after:tool:0:call_0" start_service
curl -sf -X POST "$admin/deployments" -H 'content-type: application/json' \
  -d "{\"uri\":\"http://127.0.0.1:$service_port\",\"force\":true}" >/dev/null
say "deployment registered"

question="What is 17*23+4 and what time is it? Also remember to buy milk"
say "turn on session demo: \"$question\""
invocation=$(curl -sf -X POST "$ingress/restate/send/Session/demo/turn" -H 'content-type: application/json' \
  -d "{\"input\":{\"items\":[{\"type\":\"text\",\"text\":\"$question\"}],\"input_id\":\"in-1\"}}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["invocationId"])')
say "invocation $invocation"

crashed=false
for _ in $(seq 1 300); do
  if ! kill -0 "$service_pid" 2>/dev/null; then crashed=true; break; fi
  sleep 0.05
done
wait "$service_pid" 2>/dev/null || true
service_pid=""
if $crashed; then say "the service was killed mid-turn (SIGKILL at after:tool:0:call_0)"; fi
say "tool executions at the crash: $("$bin" effects --db "$db" --session demo)"

say "restarting the service; Restate re-invokes the turn and replays its journal"
start_service
result=$(curl -sf --max-time 60 "$ingress/restate/invocation/$invocation/attach")

say "committed history"
"$bin" history --db "$db" --session demo >&2
effects=$("$bin" effects --db "$db" --session demo)
python3 - "$crashed" "$result" "$effects" <<'PY'
import json, sys
crashed = sys.argv[1] == "true"
result = json.loads(sys.argv[2])
effects = json.loads(sys.argv[3])
tools = {k.split(":")[-1]: v for k, v in effects.items() if k.startswith("tool:")}
outcome = result["outcome"]
print(json.dumps({
    "outcome": outcome,
    "recovered_after_crash": crashed and outcome.get("status") == "finished",
    "tool_executions": tools,
}))
PY
