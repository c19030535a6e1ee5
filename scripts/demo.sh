#!/usr/bin/env bash
# The main job, end to end on the durable tier: install restate-server (npm)
# and build ratchet, start both on free loopback ports, register the
# deployment, run a turn whose demo model calls three tools, SIGKILL the
# service right after the first tool (a fault point), restart it, let
# Restate finish the turn. Then an approval: the service runs with
# --approve-tools notes, a turn asks to remember something, waits for
# approval (suspended in Restate, holding nothing), the service is SIGKILLed
# and restarted meanwhile, `ratchet approve` decides, and the tool runs
# once. Prints an account, stops everything it started.
# Last line: {"outcome", "recovered_after_crash", "tool_executions", "approval"}.
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
  : > "$work/service.out"
  "$bin" serve --effect-ledger --store "sqlite:$db" --listen "127.0.0.1:$service_port" --restate-admin "$admin" \
    "$@" >"$work/service.out" 2>>"$work/service.log" &
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

# --- An approval: the turn waits, suspended; the service dies meanwhile.
approval_flags=(--approve-tools notes --inactivity-timeout-ms 2000)
kill -TERM "$service_pid"; wait "$service_pid" 2>/dev/null || true
say "restarting the service with ${approval_flags[*]}: every notes call waits for approval"
start_service "${approval_flags[@]}"
ask="Remember to buy eggs"
say "turn on session approvals: \"$ask\""
waiting=$(curl -sf -X POST "$ingress/restate/send/Session/approvals/turn" -H 'content-type: application/json' \
  -d "{\"input\":{\"items\":[{\"type\":\"text\",\"text\":\"$ask\"}],\"input_id\":\"in-1\"}}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["invocationId"])')
call=""
for _ in $(seq 1 300); do
  call=$(curl -sf -X POST "$ingress/Session/approvals/view" 2>/dev/null \
    | python3 -c 'import json,sys; w=json.load(sys.stdin)["pending_waits"]; print(w[0]["call_id"] if w else "")' 2>/dev/null || true)
  [ -n "$call" ] && break
  sleep 0.1
done
[ -n "$call" ] || { cat "$work/service.log" >&2; echo "no approval was requested" >&2; exit 1; }
say "tool call $call (notes) waits for approval; pending: $(curl -sf -X POST "$ingress/Session/approvals/view" \
  | python3 -c 'import json,sys; w=json.load(sys.stdin)["pending_waits"][0]; print(json.dumps({k: w[k] for k in ("call_id","tool","arguments","wait_id")}))')"
status_of() {
  curl -sf -X POST "$admin/query" -H 'content-type: application/json' -H 'accept: application/json' \
    -d "{\"query\":\"SELECT status FROM sys_invocation WHERE id = '$waiting'\"}" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["rows"]; print(r[0]["status"] if r else "gone")' 2>/dev/null || echo unknown
}
suspended=false
for _ in $(seq 1 200); do
  [ "$(status_of)" = suspended ] && { suspended=true; break; }
  sleep 0.1
done
say "invocation $waiting is $(status_of) in Restate (it holds no connection while it waits)"
say "SIGKILL the service while the turn waits, then restart it"
kill -KILL "$service_pid"; wait "$service_pid" 2>/dev/null || true
start_service "${approval_flags[@]}"
say "tool executions before the decision: $("$bin" effects --db "$db" --session approvals)"
say "ratchet approve --session approvals --call $call --ingress $ingress"
"$bin" approve --session approvals --call "$call" --note "fine" --ingress "$ingress" >&2
approved=$(curl -sf --max-time 60 "$ingress/restate/invocation/$waiting/attach")
approval_effects=$("$bin" effects --db "$db" --session approvals)
say "events of session approvals"
"$bin" events --db "$db" --session approvals | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print("   ", e["type"], {k: v for k, v in e.items() if k in ("tool_call_id", "decision", "note")})' >&2 || true

python3 - "$crashed" "$result" "$effects" "$suspended" "$approved" "$approval_effects" <<'PY'
import json, sys
crashed = sys.argv[1] == "true"
result = json.loads(sys.argv[2])
effects = json.loads(sys.argv[3])
tools = {k.split(":")[-1]: v for k, v in effects.items() if k.startswith("tool:")}
outcome = result["outcome"]
approved = json.loads(sys.argv[5])
approval_tools = {k.split(":")[-1]: v for k, v in json.loads(sys.argv[6]).items() if k.startswith("tool:")}
print(json.dumps({
    "outcome": outcome,
    "recovered_after_crash": crashed and outcome.get("status") == "finished",
    "tool_executions": tools,
    "approval": {
        "suspended_while_waiting": sys.argv[4] == "true",
        "service_killed_while_waiting": True,
        "outcome": approved["outcome"],
        "tool_executions": approval_tools,
    },
}))
PY
