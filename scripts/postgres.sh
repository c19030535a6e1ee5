#!/usr/bin/env bash
# A throwaway local PostgreSQL for ratchet: Debian's server binaries
# (installed with apt-get when missing), a cluster made by initdb in a temp
# dir under a non-root user, loopback only, a free port, password auth.
#   scripts/postgres.sh install   install the server binaries if missing
#   scripts/postgres.sh start     start a server; prints its URL (state in .ratchet/postgres.env)
#   scripts/postgres.sh stop      stop it (by PID) and delete its cluster
# The tests start their own servers the same way (src/harness/postgres.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
state=.ratchet/postgres.env

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install() {
  if [ -n "$(bindir)" ] && [ -x "$(bindir)/postgres" ]; then return 0; fi
  echo "== installing PostgreSQL server binaries (Debian packages)" >&2
  if [ "$(id -u)" -ne 0 ]; then echo "run as root to apt-get install postgresql" >&2; exit 1; fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  [ -x "$(bindir)/postgres" ] || { echo "postgres binaries not found after install" >&2; exit 1; }
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --clear-groups -- "$@"; else "$@"; fi
}

start() {
  install
  if [ -f "$state" ]; then echo "already running (see $state); stop it first" >&2; exit 1; fi
  local bin dir port password
  bin=$(bindir)
  dir=$(mktemp -d /tmp/ratchet-pg-XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  password="pw-$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
  printf '%s' "$password" > "$dir/pwfile"
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -U ratchet --auth=scram-sha-256 --pwfile="$dir/pwfile" --encoding=UTF8 >/dev/null
  # Started directly (not through a shell function) so $! is the server's
  # own PID: setpriv execs postgres in place.
  local run=()
  [ "$(id -u)" -eq 0 ] && run=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
  "${run[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
    -c "unix_socket_directories=$dir" >"$dir/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || { cat "$dir/server.log" >&2; kill "$pid"; exit 1; }
  mkdir -p .ratchet
  local url="postgres://ratchet:$password@127.0.0.1:$port/postgres"
  printf 'PID=%s\nDIR=%s\nURL=%s\n' "$pid" "$dir" "$url" > "$state"
  chmod 600 "$state"
  echo "$url"
}

stop() {
  [ -f "$state" ] || { echo "not running" >&2; return 0; }
  local pid dir
  pid=$(sed -n 's/^PID=//p' "$state"); dir=$(sed -n 's/^DIR=//p' "$state")
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$dir" "$state"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: scripts/postgres.sh install|start|stop" >&2; exit 2 ;;
esac
