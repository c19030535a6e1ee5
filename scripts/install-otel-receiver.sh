#!/usr/bin/env bash
# Installs Arize Phoenix (PyPI, pinned), an OTLP trace receiver nobody here
# wrote, into .tools/otel (git-ignored): the tracing test sends ratchet's
# spans to it over OTLP/HTTP and reads them back from its REST API.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
phoenix=20.26.1
dir=.tools/otel
if [ -x "$dir/venv/bin/phoenix" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$phoenix" ]; then
  exit 0
fi
echo "== installing arize-phoenix $phoenix into $dir" >&2
rm -rf "$dir/venv"
mkdir -p "$dir"
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check "arize-phoenix==$phoenix" >&2
[ -x "$dir/venv/bin/phoenix" ] || { echo "phoenix missing after install" >&2; exit 1; }
echo "$phoenix" > "$dir/.version"
