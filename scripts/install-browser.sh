#!/usr/bin/env bash
# Installs what the timeline page's test drives: Chromium from the Debian
# archive (apt, when it is not there yet) and playwright-core from npm
# (pinned, no browser download of its own) into .tools/browser
# (git-ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
playwright=1.65.1
dir=.tools/browser
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium from the Debian archive" >&2
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends chromium >&2
fi
entry=$dir/node_modules/playwright-core/package.json
if [ -f "$entry" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$playwright" ]; then
  exit 0
fi
echo "== installing playwright-core $playwright into $dir" >&2
mkdir -p "$dir"
(cd "$dir" && [ -f package.json ] || echo '{"name":"ratchet-browser-test","private":true}' > package.json)
(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent \
  "playwright-core@$playwright" >&2)
[ -f "$entry" ] || { echo "playwright-core missing after install: $entry" >&2; exit 1; }
echo "$playwright" > "$dir/.version"
