"""End to end: a printer on a real Mosquitto runs a job; the gateway (a real Runtime) is stopped in the middle
of it and started again on the same data directory; the usage ledger in the business store has one correct
session of the job, attributed by the site's rules."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from kit.poll import until
from kit.runtime import SPECS, mqtt_site, publish, running

from gateway.runtime import Runtime
from simulators.services import Mosquitto

JOB = "ACME_bracket.gcode"
SITE = """
machines:
  - id: fdm-01
    name: Printer
    kind: printer
    driver: mqtt
    broker: lab
    expected_interval_s: 5
    topics:
      - topic: lab/{site}/{machine}/report
        fields:
          state: {type: string}
          job_file: {type: string}
          job_id: {type: int}
          progress_pct: {unit: "%"}
billing:
  vat_pct: 12
  gap_grace_s: 300
  partners: [{id: acme, name: ACME Mining R&D, tier: industrial}]
  attribution: [{prefix: ACME_, partner: acme}]
  rates: [{kinds: [printer], per_running_hour: 1200}]
"""


async def test_a_gateway_restart_in_the_middle_of_a_job_gives_one_session(mosquitto: Mosquitto,
                                                                         tmp_path: Path) -> None:
    sid = f"s{uuid.uuid4().hex[:6]}"
    cfg = mqtt_site(mosquitto.port, sid, tmp_path, SITE)
    topic = f"lab/{sid}/fdm-01/report"

    def report(state: str, progress: float) -> tuple[str, str]:
        return topic, json.dumps({"state": state, "job_file": JOB, "job_id": 7, "progress_pct": progress})

    def job_events(rt: Runtime) -> list[tuple[str, int]]:
        assert rt.services is not None
        return [(r["type"], r["ts_ns"]) for r in rt.services.store.query(
            "SELECT type, ts_ns FROM events WHERE type IN ('job_start', 'job_end') ORDER BY ts_ns, id")]

    async with running(Runtime(cfg, SPECS, serve_api=False)) as rt:
        await asyncio.to_thread(publish, mosquitto.port, [report("printing", 10.0)])
        await until(lambda: rt.stage.machine("fdm-01")["state"] == "running", timeout_s=20.0)
        await asyncio.to_thread(publish, mosquitto.port, [report("printing", 11.0 + i) for i in range(4)])
        await until(lambda: rt.stage.machine("fdm-01")["signals"].get("progress_pct", {}).get("value") == 14.0,
                    timeout_s=20.0)
        [(kind, started)] = job_events(rt)
        assert kind == "job_start"
        last_seen = rt.values.get("fdm-01").last_seen_ns
        assert rt.services is not None
        assert rt.services.usage.entries() == []  # the job is still running
    # the gateway is down; then a new one starts on the same data directory and the job goes on
    async with running(Runtime(cfg, SPECS, serve_api=False)) as rt:
        await asyncio.to_thread(publish, mosquitto.port, [report("printing", 50.0 + i) for i in range(3)])
        await until(lambda: rt.stage.machine("fdm-01")["state"] == "running", timeout_s=20.0)
        await asyncio.to_thread(publish, mosquitto.port, [report("finished", 100.0)])
        await until(lambda: len(job_events(rt)) == 3, timeout_s=20.0)
        assert rt.services is not None
        await until(lambda: rt.services is not None and len(rt.services.usage.entries()) > 0, timeout_s=20.0)
        events = job_events(rt)
        resumed = rt.services.store.query("SELECT ts_ns FROM events WHERE type = 'state' AND "
                                          "json_extract(data, '$.to') = 'running' ORDER BY ts_ns")[-1]["ts_ns"]
        entries = rt.services.usage.entries()
    # the engine announced the job again after the restart, and ended it; the ledger has one session of one job:
    # running until the last reading before the stop, and from the first one after the restart to the end
    assert [k for k, _ in events] == ["job_start", "job_start", "job_end"]
    assert len(entries) == 1, [(e.key, e.start_ns, e.end_ns, e.running, e.source, e.sign) for e in entries]
    [entry] = entries
    assert entry.key == f"fdm-01/{started}/0"
    assert entry.running == ((started, last_seen), (resumed, events[-1][1]))
    assert (entry.partner, entry.job, entry.source) == ("acme", JOB, "events")
