"""Make the README's screenshots of the web app from a running `kartech demo`: the fleet board, the wall screen,
a machine page and the phone list. Needs Debian's chromium and the playwright package.

    .venv/bin/python docs/screenshots/make.py            # writes docs/screenshots/*.png
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).parent
KARTECH = str(Path(sys.executable).with_name("kartech"))
CHROMIUM = "/usr/bin/chromium"
PASSWORD = secrets.token_urlsafe(16)
URL = re.compile(r"Kartech demo is running: (http://127\.0\.0\.1:\d+/)")


def main() -> None:
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="kartech-shots-") as tmp:
        demo = subprocess.Popen([KARTECH, "demo", "--port", "0", "--seconds", "300", "--data-dir", tmp],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "KARTECH_ADMIN_TOKEN": token})
        try:
            assert demo.stdout is not None
            base = ""
            for line in demo.stdout:
                if m := URL.search(line):
                    base = m.group(1)
                    break
            if not base:
                raise SystemExit("the demo did not start")
            headers = {"Authorization": f"Bearer {token}"}
            deadline = time.monotonic() + 90  # the demo's planned fault: x1c-02's thermal runaway after ~20 s
            while time.monotonic() < deadline and not httpx.get(base + "api/v1/alerts?severity=critical",
                                                                 headers=headers, timeout=5).json():
                time.sleep(1)
            time.sleep(60)  # a minute of history for the charts
            # a technician's account, signed in through the login page as people do
            httpx.post(base + "api/v1/users", headers=headers, timeout=10, json={
                "name": "screenshots", "role": "technician", "password": PASSWORD, "token_label": None,
            }).raise_for_status()
            shoot(base)
        finally:
            demo.terminate()
            demo.wait(timeout=30)


def shoot(base: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        shots = [("board.png", "", {"width": 1440, "height": 1000}, True),
                 ("wall.png", "?wall=1", {"width": 1920, "height": 1080}, False),
                 ("machine.png", "#/m/x1c-01", {"width": 1440, "height": 1000}, True),
                 ("phone.png", "", {"width": 390, "height": 844}, False)]
        for name, path, viewport, full in shots:
            ctx = browser.new_context(viewport=viewport, device_scale_factor=1,
                                      is_mobile=viewport["width"] < 600)
            ctx.add_init_script("localStorage.setItem('kartech.lang', 'ru');")
            page = ctx.new_page()
            page.goto(base + path)  # to the login page, which comes back here
            page.fill("#name", "screenshots")
            page.fill("#password", PASSWORD)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector(".tile, .chart-box path.line", timeout=20000)
            if path == "?wall=1" and page.locator("#flash").is_visible():
                page.click("#flash")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(HERE / name), full_page=full)
            ctx.close()
        browser.close()


if __name__ == "__main__":
    main()
