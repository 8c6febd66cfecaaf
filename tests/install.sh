#!/usr/bin/env bash
# Installs what the tests need: the Python packages, and Debian's chromium for the
# browser tests (Playwright drives it; Playwright's own browser download is not used).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -r requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    echo "No chromium here: the browser tests will be skipped. Install it with: sudo apt-get install chromium" >&2
  fi
fi
