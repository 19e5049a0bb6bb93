#!/usr/bin/env bash
# The second command: lint, type-check and run every test, unit and integration, against real Mosquitto,
# InfluxDB 1.x and VictoriaMetrics. Installs Python test dependencies into .venv and, when running as root,
# Debian's mosquitto, influxdb and victoria-metrics packages if they are missing. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null || need+=(influxdb)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
[ -x /usr/bin/chromium ] || need+=(chromium)   # headless browser test of the web page
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "The integration tests need these Debian packages: ${need[*]}" >&2
    echo "Install them with:  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 2
  fi
fi

ensure_venv "[test]"
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -q -p no:cacheprovider "$@"
