#!/usr/bin/env bash
# CI: prove the README's run command the way a new user runs it.
# A virtualenv of its own with the project installed WITHOUT the test extras, then
# `bash scripts/run.sh` on free ports with standard input closed. Passes when /healthz answers and
# the proxy port accepts a connection in bounded time, and the tool then stops on SIGINT with exit
# status 0 and no traceback in its output.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
work="$(mktemp -d)"
log="$work/run.log"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proxy_port="$(free_port)"
api_port="$(free_port)"
startup_limit="${ARENA_CHECK_RUN_LIMIT:-600}"  # seconds, including the first install

set -m  # the tool gets its own process group, and SIGINT is not ignored as it is for plain background jobs
ARENA_VENV="$work/venv" ARENA_PROXY_PORT="$proxy_port" bash scripts/run.sh \
  --set arena_api_port="$api_port" --set arena_prefill=off \
  --set arena_store="$work/pool.json" --set arena_log_dir="$work/logs" \
  </dev/null >"$log" 2>&1 &
pid=$!
set +m

fail() {
  echo "check_run: $*" >&2
  echo "---- output of bash scripts/run.sh ----" >&2
  cat "$log" >&2
  kill -KILL -- "-$pid" 2>/dev/null || true
  exit 1
}

echo "==> check_run: bash scripts/run.sh in a fresh venv without test extras (proxy $proxy_port, API $api_port)"
started=$(date +%s)
until python3 - "$api_port" "$proxy_port" <<'PY' 2>/dev/null
import json, socket, sys, urllib.request
api, proxy = int(sys.argv[1]), int(sys.argv[2])
health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=2))
assert "status" in health and "pages" in health, health
socket.create_connection(("127.0.0.1", proxy), timeout=2).close()
PY
do
  kill -0 "$pid" 2>/dev/null || fail "the tool exited before /healthz answered"
  [ $(( $(date +%s) - started )) -lt "$startup_limit" ] || fail "no /healthz within ${startup_limit} s"
  sleep 1
done
echo "    /healthz answered and the proxy accepts connections after $(( $(date +%s) - started )) s"
grep -q "proxy listening at 127.0.0.1:$proxy_port" "$log" || fail "the console does not show the proxy address"
grep -q "OpenAI-compatible API on http://127.0.0.1:$api_port/v1" "$log" || fail "the console does not show the API address"
"$work/venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pytest") is not None)' \
  || fail "the run venv has the test extras: it does not prove a base install"

kill -INT "$pid"
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the tool did not stop within 10 s of SIGINT"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || fail "the tool exited with status $status after SIGINT"
if grep -q "Traceback" "$log"; then fail "a traceback in the tool's output"; fi
echo "    stopped cleanly on SIGINT"
rm -rf "$work"
