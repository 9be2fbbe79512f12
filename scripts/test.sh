#!/usr/bin/env bash
# Install what the tests need (venv with test extras, Debian Chromium) and run the whole suite:
# lint, types, unit tests and the end-to-end tests through browser, proxy, API and simulator.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k pool    # extra arguments go to pytest
set -euo pipefail
source "$(dirname "$0")/_common.sh"
ensure_venv test
ensure_browser
ensure_node_clients
cd "$ROOT"
echo "==> ruff"
"$VENV/bin/ruff" check .
echo "==> mypy"
"$VENV/bin/mypy" sites pool_store relay openai_front addons terminal simulator scripts bench
echo "==> pytest"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -rfEs "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests (exit 5): check the arguments or the tests/ folder" >&2
  exit 1
fi
exit "$rc"
