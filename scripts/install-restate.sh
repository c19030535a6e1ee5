#!/usr/bin/env bash
# Installs the pinned restate-server and restate CLI from the npm registry
# into .tools/ (git-ignored). Idempotent: does nothing when already there.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.7.12
dir=.tools/restate
server=$dir/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server
cli=$dir/node_modules/@restatedev/restate-linux-x64/bin/restate
# restatectl: the cluster tool (partition leaders, for scripts/cluster.sh).
ctl=$dir/node_modules/@restatedev/restatectl-linux-x64/bin/restatectl
if [ -x "$server" ] && [ -x "$cli" ] && [ -x "$ctl" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
echo "== installing restate-server $version, the restate CLI and restatectl into $dir" >&2
mkdir -p "$dir"
(cd "$dir" && [ -f package.json ] || echo '{"name":"ratchet-tools","private":true}' > package.json)
(cd "$dir" && npm install --no-audit --no-fund --silent \
  "@restatedev/restate-server@$version" "@restatedev/restate@$version" \
  "@restatedev/restatectl@$version" >&2)
[ -x "$server" ] || { echo "restate-server binary missing after install: $server" >&2; exit 1; }
echo "$version" > "$dir/.version"
