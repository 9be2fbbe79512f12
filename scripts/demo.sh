#!/usr/bin/env bash
# Demo against the LMArena simulator with a headless browser: no account, no network needed.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
ensure_venv test
ensure_browser
cd "$ROOT"
exec "$VENV/bin/python" scripts/demo.py "$@"
