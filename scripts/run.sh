#!/usr/bin/env bash
# Install (first time) and run the tool: proxy on 127.0.0.1:8080, OpenAI API on 127.0.0.1:5102.
#   bash scripts/run.sh                 # mitmdump in this terminal
#   bash scripts/run.sh --web           # mitmweb instead (traffic in the browser UI, token URL printed)
#   bash scripts/run.sh --set arena_api_key=sk-mine   # any mitmproxy option or --set arena_*
set -euo pipefail
source "$(dirname "$0")/_common.sh"
ensure_venv
cd "$ROOT"
tool="mitmdump"
extra=(--set 'dumper_filter=!(~u /__bridge/)')
if [ "${1:-}" = "--web" ]; then
  shift
  tool="mitmweb"
  extra=()
fi
exec "$VENV/bin/$tool" -s addons/bridge.py \
  --set confdir=certs \
  --listen-host 127.0.0.1 -p "${ARENA_PROXY_PORT:-8080}" \
  --allow-hosts '^(.+\.)?(lm)?arena\.ai(:443)?$' \
  "${extra[@]}" "$@"
