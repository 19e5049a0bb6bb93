#!/usr/bin/env bash
# The second command: lint, type-check and run every test, unit and integration, against real Mosquitto,
# InfluxDB 1.x and VictoriaMetrics. Installs Python test dependencies into .venv and, when running as root,
# Debian's mosquitto, influxdb, victoria-metrics, chromium and fonts-dejavu-core packages and libatomic1 if they are
# missing.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null || need+=(influxdb)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
[ -x /usr/bin/chromium ] || need+=(chromium)   # headless browser test of the web page
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)   # PDF statements (Cyrillic)
# Playwright's bundled node driver links libatomic.so.1, which a bare Debian 12 does not have (its other libraries,
# libc6, libstdc++6 and libgcc-s1, are part of every Debian install).
has_lib() { /sbin/ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$1 " || dpkg-query -W -f='${Status}' "$2" 2>/dev/null | grep -q 'ok installed'; }
has_lib libatomic.so.1 libatomic1 || need+=(libatomic1)
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
# Fail here, with the library's name, rather than with "driver exited" deep inside the browser test.
node=$(.venv/bin/python -c 'import pathlib, playwright; print(pathlib.Path(playwright.__file__).parent / "driver" / "node")' 2>/dev/null || true)
if [ -x "$node" ] && missing=$(ldd "$node" | grep 'not found'); then
  echo "Playwright's node driver ($node) cannot start; these libraries are missing:" >&2
  echo "$missing" >&2
  echo "Find the Debian package with:  apt-file search <library>  and install it." >&2
  exit 2
fi
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
# two workers by default (KARTECH_TEST_WORKERS=0 runs in one process); a test file stays on one worker
echo "== pytest"; exec .venv/bin/pytest -q -p no:cacheprovider -n "${KARTECH_TEST_WORKERS:-2}" --dist loadfile "$@"
