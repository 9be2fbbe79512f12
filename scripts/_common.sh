# Shared by scripts/*.sh: a Python 3.12 virtualenv in .venv with the project installed,
# and Debian's Chromium for the browser tests. Sourced, not run.
# ARENA_VENV puts the virtualenv elsewhere (CI proves the run command in a venv of its own).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ARENA_VENV:-$ROOT/.venv}"

find_python312() {
  local candidates=("${ARENA_PYTHON:-}" python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
  fi
  candidates+=("$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12)
  local c
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# ensure_venv [extra]: create the venv and (re)install the project when pyproject.toml changed.
ensure_venv() {
  local extra="${1:-}"
  local spec="."
  [ -n "$extra" ] && spec=".[$extra]"
  if [ ! -x "$VENV/bin/python" ]; then
    local py
    if ! py="$(find_python312)"; then
      echo "error: Python 3.12 is needed (mitmproxy 12.2) and none was found." >&2
      echo "       Install python3.12, or set ARENA_PYTHON=/path/to/python3.12." >&2
      exit 2
    fi
    echo "==> creating $VENV with $py"
    "$py" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  local stamp="$VENV/.installed-${extra:-base}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing $spec into $VENV"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q -e "$spec")
    touch "$stamp"
  fi
}

# ensure_browser: Debian's Chromium and certutil (never a downloaded browser), and tmux, in which
# the console tests run the tool as a person would.
ensure_browser() {
  # a CJK font, so the Chinese dashboard's screenshots show characters, not boxes
  if [ -x /usr/bin/chromium ] && command -v certutil >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1 \
      && [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
    return 0
  fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "==> installing Debian's chromium, libnss3-tools, tmux and a CJK font"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium libnss3-tools tmux fonts-wqy-microhei >/dev/null
}

# ensure_node_clients: Node.js and the official openai Node SDK (tests/node, pinned by its package-lock.json),
# which the client tests drive against the running tool.
ensure_node_clients() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "==> installing Debian's nodejs and npm"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  local lock="$ROOT/tests/node/package-lock.json" stamp="$ROOT/tests/node/node_modules/.installed"
  if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    echo "==> installing the Node clients (npm ci in tests/node)"
    (cd "$ROOT/tests/node" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$stamp"
  fi
}
