#!/usr/bin/env bash
# The first command: the whole virtual lab plus the gateway on embedded defaults (no services needed).
# Creates .venv on first use. Extra arguments go to `kartech demo` (e.g. --port 8081 --seconds 60).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv ""
exec .venv/bin/kartech demo "$@"
