# Sourced by demo.sh and test.sh: create .venv with Python 3.11+ and install the project (editable) into it.
ensure_venv() {
  local extras="$1"
  local py="${PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is needed (found: $("$py" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
    exit 2
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$py" -m venv .venv || { echo "python3 -m venv failed: install Debian's python3-venv" >&2; exit 2; }
  fi
  local stamp=".venv/.installed${extras}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== installing Python packages into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
    # an older checkout installed grafana-client, whose niquests/urllib3-future replace urllib3's modules and break
    # requests: a .venv made by it is repaired here
    if .venv/bin/python -m pip show -q urllib3-future >/dev/null 2>&1; then
      .venv/bin/python -m pip uninstall -q -y grafana-client niquests urllib3-future
      .venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps urllib3
    fi
    touch "$stamp"
  fi
}
