#!/usr/bin/env bash
# ratchet on a three-node Restate cluster, on loopback:
#   - three restate-server 1.7.12 nodes, each with every role (ingress,
#     admin, worker, log-server, metadata-server): replicated metadata (a
#     raft group over the three), the replicated loglet with replication
#     factor 2, and partitions spread over the nodes; node 1 provisions the
#     cluster, the others join it;
#   - N `ratchet serve` instances (default 2) on one throwaway PostgreSQL
#     (scripts/postgres.sh), with the effect ledger on (a test rig: the
#     node-loss test counts effects);
#   - scripts/lb.py, a round-robin TCP load balancer, in front of the
#     instances: the one deployment URI registered with the cluster.
# Free ports; every process is stopped by its PID.
#   scripts/cluster.sh start [N]   start it all; prints the endpoints
#     (NODES=1 starts a one-node cluster instead, for the benchmark's
#     side-by-side figures; RATCHET_BIN picks the ratchet binary, default
#     the debug build; RATCHET_MODEL and the other RATCHET_* variables reach
#     the instances)
#   scripts/cluster.sh status      what runs, and each node's health
#   scripts/cluster.sh stop        stop everything and delete the state
#   scripts/cluster.sh leaders     partitions led per node, most first ("n2 5")
#   scripts/cluster.sh kill-node N | restart-node N          SIGKILL / restart node N
#   scripts/cluster.sh kill-instance K | restart-instance K  the same for ratchet instance K
#   scripts/cluster.sh test        the node-loss test (crates/ratchet-cli/tests/cluster.rs)
#   scripts/cluster.sh bench       1 vs 3 nodes and 1 vs 2 instances, side by side
#     (release build; last line: the JSON report; see BENCHMARKS.md)
# State (PIDs, ports, URLs): .ratchet/cluster/cluster.env
set -euo pipefail
cd "$(dirname "$0")/.."
state_dir=.ratchet/cluster
env_file=$state_dir/cluster.env
server=.tools/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server
restatectl=.tools/restate/node_modules/@restatedev/restatectl-linux-x64/bin/restatectl

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url, what
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$2 did not come up ($1)" >&2
  return 1
}

wait_line() { # file, pid, what: waits for `listening on` in the file
  for _ in $(seq 1 300); do
    grep -q "listening on" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$1" >&2; echo "$3 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "$3 did not listen" >&2
  return 1
}

save() { # key, value: replaces an earlier value of the key
  if [ -f "$env_file" ]; then
    grep -v "^$1=" "$env_file" > "$env_file.tmp" || true
    mv "$env_file.tmp" "$env_file"
  fi
  printf '%s=%s\n' "$1" "$2" >> "$env_file"
  chmod 600 "$env_file"
}

get() { sed -n "s/^$1=//p" "$env_file"; }

launch_node() { # dir, n
  RESTATE_LISTEN_MODE=tcp "$server" --config-file "$1/n$2/restate.toml" \
    >> "$1/n$2/server.log" 2>&1 &
  save "NODE${2}_PID" $!
}

launch_instance() { # k: on its saved port, the saved store and admin API
  local dir k=$1
  dir=$(get DIR)
  # A log per launch, so `listening on` is this launch's.
  local log
  log="$dir/ratchet-$k.$(date +%s%N).log"
  RATCHET_LOG=${RATCHET_LOG:-info} RATCHET_EFFECT_LEDGER=${RATCHET_EFFECT_LEDGER:-true} "$(get BIN)" serve \
    --store "$(get PG_URL)" --listen "127.0.0.1:$(get "RATCHET${k}_PORT")" \
    --restate-admin "$(get ADMIN)" > "$log" 2>&1 &
  local pid=$!
  save "RATCHET${k}_PID" "$pid"
  wait_line "$log" "$pid" "ratchet instance $k"
}

kill_pid() { # name of a *_PID key: SIGKILL
  local pid
  pid=$(get "$1")
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
}

start() {
  local instances=${1:-2} nodes=${NODES:-3}
  case "$nodes" in 1|3) ;; *) echo "NODES must be 1 or 3, not $nodes" >&2; exit 2 ;; esac
  [ -f "$env_file" ] && { echo "already running (see $env_file); stop it first" >&2; exit 1; }
  scripts/install-restate.sh >&2
  local bin=${RATCHET_BIN:-}
  if [ -z "$bin" ]; then
    cargo build --quiet --bin ratchet
    bin=${CARGO_TARGET_DIR:-target}/debug/ratchet
  fi
  mkdir -p "$state_dir"
  : > "$env_file"
  chmod 600 "$env_file"
  save BIN "$bin"
  save NODES "$nodes"
  local dir
  dir=$(mktemp -d /tmp/ratchet-cluster-XXXXXX)
  save DIR "$dir"
  local node=() ingress=() admin=() peers=""
  for n in $(seq 1 "$nodes"); do
    node[n]=$(free_port); ingress[n]=$(free_port); admin[n]=$(free_port)
    peers="$peers, \"http://127.0.0.1:${node[n]}/\""
    save "NODE_ADDR_$n" "http://127.0.0.1:${node[n]}/"
  done
  peers=${peers#, }
  # Two copies of each log record and partition on three nodes; one alone.
  local replication=$(( nodes == 3 ? 2 : 1 ))
  for n in $(seq 1 "$nodes"); do
    mkdir -p "$dir/n$n"
    cat > "$dir/n$n/restate.toml" <<EOF
node-name = "n$n"
cluster-name = "ratchet-cluster"
base-dir = "$dir/n$n/data"
roles = ["http-ingress", "admin", "worker", "log-server", "metadata-server"]
# Node 1 provisions the cluster; the others join it.
auto-provision = $([ "$n" = 1 ] && echo true || echo false)
# Bifrost's replicated loglet and the partitions: two copies of each record.
default-replication = $replication
default-num-partitions = 12
bind-address = "127.0.0.1:${node[n]}"
advertised-address = "http://127.0.0.1:${node[n]}/"
disable-telemetry = true

[metadata-client]
type = "replicated"
addresses = [$peers]

[ingress]
bind-address = "127.0.0.1:${ingress[n]}"

[admin]
bind-address = "127.0.0.1:${admin[n]}"
EOF
    launch_node "$dir" "$n"
    save "INGRESS_$n" "http://127.0.0.1:${ingress[n]}"
    save "ADMIN_$n" "http://127.0.0.1:${admin[n]}"
  done
  for n in $(seq 1 "$nodes"); do wait_http "http://127.0.0.1:${admin[n]}/health" "node n$n"; done
  # The throwaway database (its own state file: .ratchet/postgres.env).
  local url
  url=$(scripts/postgres.sh start)
  save POSTGRES started
  save PG_URL "$url"
  save PG_PID "$(sed -n 's/^PID=//p' .ratchet/postgres.env)"
  save ADMIN "http://127.0.0.1:${admin[1]}"
  local backends=""
  for k in $(seq 1 "$instances"); do
    local port
    port=$(free_port)
    save "RATCHET${k}_PORT" "$port"
    launch_instance "$k"
    backends="$backends,127.0.0.1:$port"
  done
  local lb
  lb=$(free_port)
  python3 scripts/lb.py "127.0.0.1:$lb" "${backends#,}" > "$dir/lb.log" 2>&1 &
  save LB_PID $!
  wait_line "$dir/lb.log" "$(sed -n 's/^LB_PID=//p' "$env_file")" "the load balancer"
  save DEPLOYMENT "http://127.0.0.1:$lb"
  save INSTANCES "$instances"
  curl -fsS -X POST "http://127.0.0.1:${admin[1]}/deployments" -H 'content-type: application/json' \
    -d "{\"uri\": \"http://127.0.0.1:$lb\", \"force\": true}" > "$dir/register.json"
  echo "cluster up: $nodes restate node(s), $instances ratchet instance(s) behind http://127.0.0.1:$lb"
  grep -E '^(INGRESS|ADMIN|DEPLOYMENT)' "$env_file"
}

# Partitions led per node, most first ("n2 5"), asked of the first node
# that answers (restatectl speaks the node-to-node address).
leaders() {
  local n addr nodes parts
  for n in $(seq 1 "$(get NODES)"); do
    addr=$(get "NODE_ADDR_$n")
    nodes=$("$restatectl" nodes list --address "$addr" 2>/dev/null) || continue
    parts=$("$restatectl" partitions list --address "$addr" 2>/dev/null) || continue
    # NODE (N1) -> NAME (n1); then each Leader row's NODE (N1:2) by name.
    awk -v nodes="$nodes" '
      BEGIN { split(nodes, lines, "\n"); for (i in lines) { split(lines[i], f, " "); if (f[1] ~ /^N[0-9]+$/) name[f[1]] = f[3] } }
      $3 == "Leader" { split($2, id, ":"); count[name[id[1]]]++ }
      END { for (k in count) print k, count[k] }' <<< "$parts" | sort -k2,2nr -k1,1
    return 0
  done
  echo "no node answered" >&2
  return 1
}

status() {
  [ -f "$env_file" ] || { echo "not running"; return 0; }
  local name pid
  while IFS='=' read -r name pid; do
    case "$name" in
      *_PID) if kill -0 "$pid" 2>/dev/null; then echo "$name $pid running"; else echo "$name $pid DOWN"; fi ;;
    esac
  done < "$env_file"
  for n in $(seq 1 "$(get NODES)"); do
    local a
    a=$(sed -n "s/^ADMIN_$n=//p" "$env_file")
    if curl -fsS -o /dev/null "$a/health" 2>/dev/null; then echo "node n$n healthy ($a)"; else echo "node n$n unreachable ($a)"; fi
  done
  grep -E '^(INGRESS|DEPLOYMENT)' "$env_file"
}

stop() {
  [ -f "$env_file" ] || { echo "not running" >&2; return 0; }
  local name pid
  # The load balancer and the instances first, then the nodes.
  for name in LB_PID $(grep -o '^RATCHET[0-9]*_PID' "$env_file") NODE3_PID NODE2_PID NODE1_PID; do
    pid=$(sed -n "s/^$name=//p" "$env_file")
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  grep -q '^POSTGRES=' "$env_file" && scripts/postgres.sh stop
  rm -rf "$(sed -n 's/^DIR=//p' "$env_file")" "$env_file"
  echo "stopped"
}

case "${1:-}" in
  start) start "${2:-2}" ;;
  status) status ;;
  stop) stop ;;
  kill-node) kill_pid "NODE${2:?node 1-3}_PID" ;;
  restart-node) kill_pid "NODE${2:?node 1-3}_PID"; launch_node "$(get DIR)" "$2" ;;
  kill-instance) kill_pid "RATCHET${2:?instance}_PID" ;;
  restart-instance) kill_pid "RATCHET${2:?instance}_PID"; launch_instance "$2" ;;
  leaders) leaders ;;
  test) cargo test -p ratchet-cli --test cluster -- --ignored --nocapture ;;
  bench)
    scripts/install-restate.sh
    cargo build --release --quiet --bin ratchet
    exec "${CARGO_TARGET_DIR:-target}/release/ratchet" bench --cluster scripts/cluster.sh "${@:2}" ;;
  *) echo "usage: scripts/cluster.sh start [N]|status|stop|leaders|kill-node N|restart-node N|kill-instance K|restart-instance K|test|bench" >&2; exit 2 ;;
esac
