"""Soak benchmark: the whole demo lab (`kartech demo`) for a set time, watched from outside like a browser would.

    python -m benchmarks.soak [--quick | --minutes X] [--warmup-s S]

It starts `kartech demo --port 0` (every driver, every simulator, the faults planned in `x-simulator-faults:` of
config/demo.yaml) as a child process with a throwaway data dir, and while it runs (--quick: 4 minutes, default:
60 minutes, or --minutes X):
- a poller asks `/api/v1/health`, `/api/v1/machines` and `/api/v1/alerts` every 0.5 s (one keep-alive
  connection, 5 s timeout) and records each latency;
- a scraper reads `/metrics` every second for the gauge `kartech_event_loop_lag_seconds` (the largest event-loop
  lag the gateway saw over the last second), when the gateway has it;
- a WebSocket client holds `/api/v1/live` for the whole run and records every machine state change and every
  alert transition;
- VmRSS of the process is sampled every 5 s from /proc.
Then the gateway gets SIGTERM (with the WebSocket still open) and has 10 s to exit with code 0.

Figures (everything after the warm-up, which is a quarter of the run, at least 30 s and at most 5 minutes):
loop_lag_p99_ms (from the gauge; n/a without it), api_p99_ms (all three endpoints), false_offline (transitions
to `offline` of machines whose simulator kept sending, over the whole run), alert_repeats (re-raises of an alert
while it is still active, from the live feed, and extra occurrences of the alerts the planned faults must raise,
from `/api/v1/alerts?state=all`), rss_growth_pct (median RSS of the last 10 % of the run against the median of
the same span right after the warm-up), exit_s (SIGTERM to exit). Exit code 1 when any check fails. Last line:
    soak: minutes=<n> loop_lag_p99_ms=<n> api_p99_ms=<n> false_offline=<n> alert_repeats=<n> rss_growth_pct=<n>
          exit_s=<n>
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from benchmarks.common import cpu_seconds, kartech_argv, loadavg, log, parse_metrics, rss_mb, workdir
from simulators.mqtt_lab import FAULT_KINDS, planned_faults

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "demo.yaml"
TOKEN = "soak-admin-token-0123456789abcdef"
QUICK_MINUTES, FULL_MINUTES = 4.0, 60.0
POLL_S = 0.5                 # one round of health, machines, alerts
SCRAPE_S = 1.0               # /metrics; the lag gauge covers the last second
RSS_EVERY_S = 5.0
REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 120.0      # from start until the demo prints its address and answers health
EXIT_LIMIT_S = 10.0
KILL_AFTER_S = 30.0          # SIGKILL (by PID) only if SIGTERM has not worked by then
LAG_LIMIT_MS = API_LIMIT_MS = 100.0
RSS_LIMIT_PCT = 10.0
FAULT_SETTLE_S = 60.0        # a planned fault must have raised its alert this long after it started
LAG_GAUGE = "event_loop_lag_seconds"  # kartech_ prefix stripped by parse_metrics
ENDPOINTS = ("/api/v1/health", "/api/v1/machines", "/api/v1/alerts")
PUBLIC = {"/api/v1/health"}
READY_LINE = re.compile(r"Kartech demo is running: (http://[^\s/]+)/")
WS_CLOSE_UNAUTHORIZED = 4401


@dataclass(frozen=True)
class FaultEffect:
    """What a planned simulator fault does, as far as the checks are concerned."""

    rules: tuple[str, ...]  # alert rules it must raise on its machine, once each
    silences: bool          # the machine sends nothing while it lasts (so going offline is right)


# One entry per fault kind of simulators/mqtt_lab.py (FAULT_KINDS). thermal_runaway: the printer's nozzle heater
# sticks on, the firmware trips, the printer reports `error` and keeps reporting (it never goes silent).
FAULT_EFFECTS: dict[str, FaultEffect] = {
    "thermal_runaway": FaultEffect(rules=("printer-thermal-runaway",), silences=False),
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_live(base_url: str, token: str) -> ClientConnection:
    """The live WebSocket, authenticated. The one place that knows how the gateway takes the credential of a
    WebSocket: today the `Authorization: Bearer` header of the upgrade request (gateway/api/app.py `live`)."""
    url = base_url.replace("http://", "ws://", 1) + "/api/v1/live"
    return connect(url, additional_headers=auth(token), proxy=None, open_timeout=REQUEST_TIMEOUT_S,
                   max_size=16 * 1024 * 1024)


def percentile(values: Sequence[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# --- the demo under test ---------------------------------------------------------------------------------------
class Demo:
    """`kartech demo --port 0` as a child process; its address is parsed from what it prints."""

    def __init__(self, workdir: Path, seconds: float) -> None:
        self.log_path = workdir / "demo.log"
        env = {k: v for k, v in os.environ.items() if k != "KARTECH_DEMO_RUN_DIR"}  # serial links in the data dir
        env["KARTECH_ADMIN_TOKEN"] = TOKEN
        argv = [*kartech_argv(), "demo", "--port", "0", "--seconds", f"{seconds:.0f}",
                "--data-dir", str(workdir / "data")]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        self.url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            if not self.url:
                m = READY_LINE.search(self.log_path.read_text(errors="replace"))
                self.url = m.group(1) if m else ""
            if self.url:
                try:
                    if httpx.get(f"{self.url}/api/v1/health", timeout=2, trust_env=False).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"the demo did not answer within {READY_TIMEOUT_S:g} s:\n{self.log_tail()}")

    def terminate(self) -> tuple[float, int | None]:
        """SIGTERM; (seconds until the process was gone, its exit code, None when it had to be killed)."""
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            code = None
        return time.monotonic() - t, code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 3000) -> str:
        return self.log_text()[-n:]


# --- watchers (threads; each bounded by the stop event and a count) -------------------------------------------
class Watcher(threading.Thread):
    def __init__(self, name: str, t0: float, max_rounds: int) -> None:
        super().__init__(name=name, daemon=True)
        self.t0 = t0
        self.max_rounds = max_rounds
        self.halt = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> None:
        self.halt.set()
        self.join(REQUEST_TIMEOUT_S * 3)


class Poller(Watcher):
    """Health, machines and alerts every POLL_S; latency in ms per request, errors (status or transport)."""

    def __init__(self, url: str, t0: float, max_rounds: int) -> None:
        super().__init__("poller", t0, max_rounds)
        self.url = url
        self.samples: list[tuple[float, str, float]] = []
        self.errors: list[tuple[float, str, str]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
            due = time.monotonic()
            for _ in range(self.max_rounds):
                for path in ENDPOINTS:
                    if self.halt.is_set():
                        return
                    t = self.now()
                    start = time.perf_counter()
                    try:
                        r = client.get(path, headers=None if path in PUBLIC else auth(TOKEN))
                        r.read()
                        if r.status_code != 200:
                            self.errors.append((t, path, f"HTTP {r.status_code}"))
                    except httpx.HTTPError as err:
                        self.errors.append((t, path, f"{type(err).__name__}: {err}"))
                    self.samples.append((t, path, (time.perf_counter() - start) * 1000))
                due = max(due + POLL_S, time.monotonic())
                if self.halt.wait(due - time.monotonic()):
                    return


class Scraper(Watcher):
    """/metrics every SCRAPE_S: the event-loop lag gauge when the gateway has it, and the scrape's own latency."""

    def __init__(self, url: str, t0: float, max_rounds: int) -> None:
        super().__init__("scraper", t0, max_rounds)
        self.url = url
        self.lag_ms: list[tuple[float, float]] = []
        self.scrape_ms: list[tuple[float, float]] = []
        self.scrapes = 0
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, trust_env=False,
                          headers=auth(TOKEN)) as client:
            for _ in range(self.max_rounds):
                t = self.now()
                start = time.perf_counter()
                try:
                    r = client.get("/metrics")
                    r.raise_for_status()
                except httpx.HTTPError:
                    self.errors += 1
                else:
                    self.scrape_ms.append((t, (time.perf_counter() - start) * 1000))
                    self.scrapes += 1
                    lag = [v for (name, _), v in parse_metrics(r.text).samples.items() if name == LAG_GAUGE]
                    if lag:
                        self.lag_ms.append((t, max(lag) * 1000))
                if self.halt.wait(SCRAPE_S):
                    return


class RssSampler(Watcher):
    """VmRSS (MB) and CPU time used so far (s) of the process, every RSS_EVERY_S."""

    def __init__(self, pid: int, t0: float, max_rounds: int) -> None:
        super().__init__("rss", t0, max_rounds)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.cpu_s: list[tuple[float, float]] = []

    def run(self) -> None:
        for _ in range(self.max_rounds):
            try:
                t, mb, cpu = self.now(), rss_mb(self.pid), cpu_seconds(self.pid)
            except OSError:
                return
            self.samples.append((t, mb))
            self.cpu_s.append((t, cpu))
            if self.halt.wait(RSS_EVERY_S):
                return


@dataclass
class Transition:
    t: float
    machine: str
    old: str
    new: str
    basis: str


@dataclass
class AlertMessage:
    t: float
    alert_id: int
    rule: str
    machine: str
    transition: str
    count: int
    was_active: bool | None  # active before this message (None: not seen before)


class LiveFeed(Watcher):
    """Holds /api/v1/live: every machine state change and every alert transition, with the time seen."""

    def __init__(self, url: str, t0: float) -> None:
        super().__init__("live", t0, 0)
        self.url = url
        self.states: dict[str, str] = {}
        self.ever_online: set[str] = set()
        self.transitions: list[Transition] = []
        self.alerts: list[AlertMessage] = []
        self.messages: Counter[str] = Counter()
        self.connects = 0
        self.drops: list[str] = []
        self.close_code: int | None = None
        self.fatal = ""
        self.recording = True  # off once the shutdown begins: machines going offline then are expected
        self.final_states: dict[str, str] = {}
        self.connected = threading.Event()
        self._active: dict[int, bool] = {}

    def run(self) -> None:
        while not self.halt.is_set() and not self.fatal:
            try:
                with open_live(self.url, TOKEN) as ws:
                    self.connects += 1
                    self.connected.set()
                    while not self.halt.is_set():
                        try:
                            raw = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        self.handle(json.loads(raw))
                    return
            except ConnectionClosed as err:
                self.close_code = err.rcvd.code if err.rcvd is not None else None
                if self.close_code == WS_CLOSE_UNAUTHORIZED:
                    self.fatal = f"the live WebSocket refused the token (close code {self.close_code})"
                    return
                if not self.recording:
                    return  # the gateway closed it while shutting down
                self.drops.append(f"{self.now():.0f} s: closed by the gateway (code {self.close_code})")
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as err:
                if not self.recording:
                    return
                self.drops.append(f"{self.now():.0f} s: {type(err).__name__}: {err}")
            self.halt.wait(1.0)

    def stop_recording(self) -> None:
        """The shutdown begins: state changes from now on are expected and not recorded."""
        self.recording = False
        self.final_states = dict(self.states)

    def handle(self, msg: Mapping[str, Any]) -> None:
        kind = str(msg.get("type"))
        self.messages[kind] += 1
        if kind == "snapshot":
            for m in msg.get("machines", []):
                self._machine(m)
        elif kind == "machine":
            self._machine(msg["machine"])
        elif kind == "alert":
            a = msg["alert"]
            self.alerts.append(AlertMessage(self.now(), int(a["id"]), str(a["rule"]), str(a["machine"]),
                                            str(msg.get("transition")), int(a["count"]), self._active.get(a["id"])))
            self._active[int(a["id"])] = bool(a["active"])

    def _machine(self, m: Mapping[str, Any]) -> None:
        mid, new = str(m["id"]), str(m["state"])
        old = self.states.get(mid)
        self.states[mid] = new
        if new != "offline":
            self.ever_online.add(mid)
        if old is not None and old != new and self.recording:
            self.transitions.append(Transition(self.now(), mid, old, new, str(m.get("state_basis", ""))))


# --- the run ---------------------------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    ok: bool | None  # None: not measured
    detail: str


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_MINUTES:g} minutes (CI)")
    p.add_argument("--minutes", type=float, default=None,
                   help=f"run for this long (default {FULL_MINUTES:g}, --quick {QUICK_MINUTES:g})")
    p.add_argument("--warmup-s", type=float, default=None,
                   help="seconds left out of the figures (default a quarter of the run, 30 to 300 s)")
    a = p.parse_args(argv)
    minutes = a.minutes if a.minutes is not None else (QUICK_MINUTES if a.quick else FULL_MINUTES)
    duration_s = minutes * 60
    warmup_s = a.warmup_s if a.warmup_s is not None else min(300.0, max(30.0, duration_s / 4))
    if duration_s < 60 or warmup_s > 0.8 * duration_s:
        p.error(f"--minutes {minutes:g} with a {warmup_s:g} s warm-up leaves too little to measure; "
                "use at least 1 minute and a warm-up under 80 % of the run")
    faults = planned_faults(DEMO_CONFIG)
    unknown = sorted({str(f.get("fault")) for f in faults} - set(FAULT_EFFECTS)) + sorted(
        set(FAULT_KINDS) - set(FAULT_EFFECTS))
    if unknown:
        print(f"benchmarks/soak.py: fault kind(s) {', '.join(unknown)} (config/demo.yaml x-simulator-faults or "
              "simulators/mqtt_lab.py FAULT_KINDS) missing in FAULT_EFFECTS: say which alerts each must raise and "
              "whether it silences its machine", file=sys.stderr)
        return 2
    log(f"soak benchmark: kartech demo for {minutes:g} min (warm-up {warmup_s:g} s), planned faults: "
        + (", ".join(f"{f['fault']} on {f['machine']} after {float(f.get('after_s', 0)):g} s" for f in faults)
           or "none")
        + f"; load average {loadavg()}")
    with workdir("kartech-soak-") as tmp:
        return _run(minutes, duration_s, warmup_s, faults, tmp)


def _run(minutes: float, duration_s: float, warmup_s: float, faults: list[dict[str, Any]], tmp: Path) -> int:
    started = time.monotonic()
    demo = Demo(tmp, duration_s + READY_TIMEOUT_S + 120)  # --seconds: it stops by itself should we die
    try:
        demo.wait_ready()
        t0 = time.monotonic()
        log(f"demo (PID {demo.pid}) answering at {demo.url} after {t0 - started:.1f} s")
        rounds = int(duration_s / POLL_S) + 10
        feed = LiveFeed(demo.url, t0)
        poller = Poller(demo.url, t0, rounds)
        scraper = Scraper(demo.url, t0, int(duration_s / SCRAPE_S) + 10)
        rss = RssSampler(demo.pid, t0, int(duration_s / RSS_EVERY_S) + 10)
        for w in (feed, poller, scraper, rss):
            w.start()
        if not feed.connected.wait(REQUEST_TIMEOUT_S * 2):
            log(f"live WebSocket not connected yet: {feed.fatal or feed.drops[-1:] or 'no answer'}")
        next_report = 60.0
        died = False
        while (elapsed := time.monotonic() - t0) < duration_s:
            if demo.proc.poll() is not None:
                died = True
                log(f"the demo exited with {demo.proc.returncode} after {elapsed:.0f} s:\n{demo.log_tail()}")
                break
            if elapsed >= next_report:
                lat = [ms for _, _, ms in poller.samples[-int(60 / POLL_S) * len(ENDPOINTS):]]
                log(f"{elapsed / 60:.0f} min: RSS {rss.samples[-1][1] if rss.samples else 0:.0f} MB, API p99 of "
                    f"the last minute {fmt(percentile(lat, 99))} ms, state changes {len(feed.transitions)}, "
                    f"alert messages {len(feed.alerts)}")
                next_report += 60.0
            time.sleep(min(1.0, max(0.0, duration_s - elapsed)))
        for w in (poller, scraper, rss):
            w.stop()
        alerts = _all_alerts(demo.url) if not died else []
        feed.stop_recording()
        if died:
            exit_s, code = 0.0, demo.proc.returncode
        else:
            exit_s, code = demo.terminate()
        feed.stop()
    finally:
        demo.kill()
    return _report(minutes, duration_s, warmup_s, faults, demo, feed, poller, scraper, rss, alerts,
                   exit_s, code, died, started)


def _all_alerts(url: str) -> list[dict[str, Any]]:
    try:
        r = httpx.get(f"{url}/api/v1/alerts", params={"state": "all", "limit": 10_000}, headers=auth(TOKEN),
                      timeout=REQUEST_TIMEOUT_S * 2, trust_env=False)
        r.raise_for_status()
        return list(r.json())
    except httpx.HTTPError as err:
        log(f"could not read the alerts at the end: {err}")
        return []


@dataclass
class AlertFindings:
    repeats: int
    details: list[str]
    missing: list[str]


def alert_findings(faults: Sequence[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]],
                   messages: Sequence[AlertMessage], duration_s: float) -> AlertFindings:
    """Repeats: a `repeated` transition of an alert still active (re-raised while its condition lasted), any rule;
    for the alerts the planned faults must raise, also every occurrence beyond the first (count - 1 over all its
    alerts, plus any second alert of the same rule and machine), from the alert list at the end."""
    while_active: Counter[int] = Counter(m.alert_id for m in messages if m.transition == "repeated" and m.was_active)
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for a in alerts:
        by_key.setdefault((str(a["rule"]), str(a["machine"])), []).append(a)
    repeats, details, missing = 0, [], []
    fault_ids: set[int] = set()
    for f in faults:
        after_s = float(f.get("after_s", 0))
        for rule in FAULT_EFFECTS[str(f["fault"])].rules:
            rows = by_key.get((rule, str(f["machine"])), [])
            fault_ids.update(int(a["id"]) for a in rows)
            if not rows:
                if after_s + FAULT_SETTLE_S <= duration_s:
                    missing.append(f"{rule} on {f['machine']} ({f['fault']} from {after_s:g} s)")
                continue
            extra = sum(int(a["count"]) - 1 for a in rows) + len(rows) - 1
            seen = sum(while_active[int(a["id"])] for a in rows)
            n = max(extra, seen)
            if n:
                repeats += n
                details.append(f"{rule} on {f['machine']}: {len(rows)} alert(s), counts "
                               f"{[int(a['count']) for a in rows]}, {seen} re-raise(s) while active")
    for alert_id, n in sorted(while_active.items()):
        if alert_id in fault_ids:
            continue
        m = next(m for m in messages if m.alert_id == alert_id)
        times = [f"{x.t:.0f}" for x in messages if x.alert_id == alert_id and x.transition == "repeated"
                 and x.was_active]
        repeats += n
        details.append(f"{m.rule} on {m.machine}: re-raised {n} time(s) while active, at {', '.join(times)} s")
    return AlertFindings(repeats, details, missing)


def rss_growth(samples: Sequence[tuple[float, float]], warmup_s: float,
               duration_s: float) -> tuple[float, float, float] | None:
    """(growth %, MB after warm-up, MB at the end): medians over the last 10 % of the run and the same span
    right after the warm-up."""
    span = max(0.1 * duration_s, 3 * RSS_EVERY_S)
    base = [mb for t, mb in samples if warmup_s <= t < warmup_s + span]
    end = [mb for t, mb in samples if t >= duration_s - span]
    if not base or not end:
        return None
    b, e = statistics.median(base), statistics.median(end)
    return 100 * (e - b) / b, b, e


def _report(minutes: float, duration_s: float, warmup_s: float, faults: Sequence[Mapping[str, Any]], demo: Demo,
            feed: LiveFeed, poller: Poller, scraper: Scraper, rss: RssSampler, alerts: Sequence[Mapping[str, Any]],
            exit_s: float, code: int | None, died: bool, started: float) -> int:
    after = [(path, ms) for t, path, ms in poller.samples if t >= warmup_s]
    api_p99 = percentile([ms for _, ms in after], 99)
    lag = [ms for t, ms in scraper.lag_ms if t >= warmup_s]
    lag_p99 = percentile(lag, 99)
    silenced = {str(f["machine"]) for f in faults if FAULT_EFFECTS[str(f["fault"])].silences}
    false_offline = [tr for tr in feed.transitions
                     if tr.new == "offline" and tr.old != "offline" and tr.machine not in silenced]
    never_online = sorted(set(feed.states) - feed.ever_online - silenced)
    found = alert_findings(faults, alerts, feed.alerts, duration_s)
    growth = rss_growth(rss.samples, warmup_s, duration_s)
    errors_after = [e for e in poller.errors if e[0] >= warmup_s]

    log("per endpoint after the warm-up (ms):")
    print(f"  {'endpoint':<22}{'requests':>9}{'p50':>9}{'p99':>9}{'max':>9}{'errors':>8}")
    for path in (*ENDPOINTS, "/metrics"):
        ms = [v for t, v in scraper.scrape_ms if t >= warmup_s] if path == "/metrics" else \
            [v for p, v in after if p == path]
        errs = scraper.errors if path == "/metrics" else sum(1 for e in errors_after if e[1] == path)
        print(f"  {path:<22}{len(ms):>9}{fmt(percentile(ms, 50)):>9}{fmt(percentile(ms, 99)):>9}"
              f"{fmt(max(ms) if ms else None):>9}{errs:>8}")
    for t, path, err in poller.errors[:5]:
        log(f"  request error at {t:.0f} s: {path}: {err}")
    if lag:
        log(f"event-loop lag (gauge, {len(lag)} scrapes after the warm-up): p50 {fmt(percentile(lag, 50))} ms, "
            f"p99 {fmt(lag_p99)} ms, max {max(lag):.1f} ms")
    else:
        log(f"event-loop lag: n/a (no kartech_{LAG_GAUGE} in /metrics; {scraper.scrapes} scrapes)")
    log(f"live feed: {sum(feed.messages.values())} messages {dict(feed.messages)}, {feed.connects} connection(s), "
        f"{len(feed.transitions)} state changes; closed at shutdown with code {feed.close_code}")
    for d in feed.drops[:5]:
        log(f"  live feed dropped: {d}")
    states = Counter(tr.new for tr in feed.transitions)
    log(f"state changes by new state: {dict(states)}; machines: {len(feed.states)}, "
        f"states before the shutdown {dict(Counter(feed.final_states.values()))}")
    for tr in false_offline[:10]:
        back = next((x.t for x in feed.transitions if x.machine == tr.machine and x.t > tr.t and x.old == "offline"),
                    None)
        log(f"  false offline: {tr.machine} {tr.old} -> offline at {tr.t:.1f} s (basis {tr.basis}), back "
            + (f"after {back - tr.t:.1f} s" if back is not None else "never"))
    log(f"alerts at the end ({len(alerts)}): "
        + (", ".join(f"{a['rule']}@{a['machine']} count={a['count']} {a['state']}" for a in alerts[:12]) or "none")
        + (" ..." if len(alerts) > 12 else ""))
    for d in found.details:
        log(f"  alert repeat: {d}")
    if growth is not None:
        log(f"RSS: {growth[1]:.1f} MB after the warm-up, {growth[2]:.1f} MB at the end ({growth[0]:+.1f} %), "
            f"peak {max(mb for _, mb in rss.samples):.1f} MB over {len(rss.samples)} samples")
    cpu = [(t, c) for t, c in rss.cpu_s if t >= warmup_s]
    if len(cpu) >= 2:
        log(f"CPU of the demo after the warm-up: {100 * (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0]):.0f} % "
            "of one core")
    problems = Counter(line.split(": ", 1)[-1][:120] for line in demo.log_text().splitlines()
                       if " ERROR " in line or " WARNING " in line or line.startswith("Traceback"))
    log(f"demo log: {sum(problems.values())} warning/error line(s)"
        + "".join(f"\n    {n} x {text}" for text, n in problems.most_common(8)))

    checks = [
        Check("event-loop lag p99", None if lag_p99 is None else lag_p99 < LAG_LIMIT_MS,
              f"{fmt(lag_p99)} ms (limit {LAG_LIMIT_MS:g})"),
        Check("API p99", api_p99 is not None and api_p99 < API_LIMIT_MS,
              f"{fmt(api_p99)} ms over {len(after)} requests (limit {API_LIMIT_MS:g})"),
        Check("API errors", not errors_after, f"{len(errors_after)} failed requests after the warm-up"),
        Check("no false offline", not false_offline,
              f"{len(false_offline)} transitions to offline of machines still sending"
              + (f": {sorted({tr.machine for tr in false_offline})}" if false_offline else "")),
        Check("every machine online", bool(feed.states) and not never_online,
              f"never online: {never_online}" if never_online else f"{len(feed.ever_online)} machines seen online"),
        Check("faults raise their alerts", not found.missing,
              f"missing: {found.missing}" if found.missing else f"{len(faults)} planned fault(s)"),
        Check("no alert repeats", found.repeats == 0, f"{found.repeats} repeats"),
        Check("RSS growth", growth is not None and growth[0] < RSS_LIMIT_PCT,
              f"{fmt(growth[0] if growth else None)} % (limit {RSS_LIMIT_PCT:g})"),
        Check("live feed held", feed.connects == 1 and not feed.drops and not feed.fatal,
              feed.fatal or f"{feed.connects} connection(s), {len(feed.drops)} drop(s)"),
        Check("clean exit", not died and code == 0 and exit_s <= EXIT_LIMIT_S,
              "the demo died during the run" if died else
              f"{exit_s:.1f} s after SIGTERM, exit code {'killed' if code is None else code} "
              f"(limit {EXIT_LIMIT_S:g} s, 0)"),
    ]
    print()
    for c in checks:
        verdict = "n/a " if c.ok is None else ("ok  " if c.ok else "FAIL")
        print(f"  {verdict} {c.name:<26} {c.detail}")
    print()
    log(f"duration {time.monotonic() - started:.0f} s, load average now {loadavg()}")
    print(f"soak: minutes={minutes:g} loop_lag_p99_ms={fmt(lag_p99, 0)} api_p99_ms={fmt(api_p99, 0)} "
          f"false_offline={len(false_offline)} alert_repeats={found.repeats} "
          f"rss_growth_pct={fmt(growth[0] if growth else None)} exit_s={exit_s:.1f}", flush=True)
    return 0 if all(c.ok is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
