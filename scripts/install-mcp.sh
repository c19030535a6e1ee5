#!/usr/bin/env bash
# Installs the MCP reference servers the tests attach (published by the MCP
# project on npm, pinned) into .tools/mcp (git-ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
everything=2026.8.31
dir=.tools/mcp
entry=$dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js
if [ -f "$entry" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$everything" ]; then
  exit 0
fi
echo "== installing @modelcontextprotocol/server-everything $everything into $dir" >&2
mkdir -p "$dir"
(cd "$dir" && [ -f package.json ] || echo '{"name":"ratchet-mcp-servers","private":true}' > package.json)
(cd "$dir" && npm install --no-audit --no-fund --silent \
  "@modelcontextprotocol/server-everything@$everything" >&2)
[ -f "$entry" ] || { echo "server-everything missing after install: $entry" >&2; exit 1; }
echo "$everything" > "$dir/.version"
