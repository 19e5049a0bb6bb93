"""Alert rules and the ISA-18.2 lifecycle, table-driven with a stepped clock (no sleeps)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kit.ops import NS, T0, Clock, Recorder, build, feed, site

from gateway.alerts.book import AlertBook, AlertClosed
from gateway.alerts.defaults import effective_rules
from gateway.config.operations import AlertsSection
from gateway.store import Store

HOOK = """
notifications:
  channels:
    - {id: hook, type: webhook, url: "http://127.0.0.1:9/x", min_severity: medium}
"""

OVERSHOOT = """
alerts:
  defaults: false
  notify_window_s: 300
  rules:
    - id: overshoot
      type: threshold
      severity: high
      kinds: [furnace]
      signal: temperature
      relative_to: setpoint
      above: 25
      hysteresis: 5
      on_delay_s: 10
      off_delay_s: 5
      when: [{signal: setpoint, above: 0}]
      message: {en: "{machine} at {value} {unit} (limit {limit})", ru: "{machine}: {value} {unit} (предел {limit})"}
""" + HOOK


def states(ops: object) -> list[tuple[str, str, int]]:
    return [(a["rule"], a["state"], a["count"]) for a in ops.book.find(state="all")]  # type: ignore[attr-defined]


ACTIVE = ("overshoot", "active_unacknowledged", 1)


@pytest.mark.parametrize("steps", [
    # (seconds after the previous step, temperature, alert states right after it); limit 625, clears below 620
    pytest.param([(0, 620, []), (9, 630, []), (9, 630, []), (1, 630, [ACTIVE])], id="raised after on_delay"),
    pytest.param([(0, 630, []), (5, 600, []), (5, 630, []), (9, 630, []), (1, 630, [ACTIVE])],
                 id="on_delay restarts"),
    pytest.param([(0, 630, []), (10, 630, [ACTIVE]), (1, 622, [ACTIVE]), (10, 622, [ACTIVE])],
                 id="hysteresis keeps it inside the deadband"),
    pytest.param([(0, 630, []), (10, 630, [ACTIVE]), (1, 619, [ACTIVE]), (4, 619, [ACTIVE]),
                  (1, 619, [("overshoot", "cleared_unacknowledged", 1)])],
                 id="clears below limit-hysteresis after off_delay"),
    pytest.param([(0, 630, []), (10, 630, [ACTIVE]), (1, 619, [ACTIVE]), (4, 630, [ACTIVE]), (1, 619, [ACTIVE]),
                  (4, 619, [ACTIVE]), (1, 619, [("overshoot", "cleared_unacknowledged", 1)])],
                 id="off_delay restarts"),
])
def test_threshold_with_hysteresis_and_delays(tmp_path: Path, steps: list[tuple[float, float, list[object]]]) -> None:
    clock = Clock()
    live, ops = build(site(OVERSHOOT), tmp_path, clock)
    for n, (dt, temp, expected) in enumerate(steps):
        clock.step(dt)
        feed(live, clock, "furnace-01", temperature=float(temp), setpoint=600.0, heater_pct=40.0)
        live.tick()
        assert states(ops) == expected, f"after step {n} (+{dt} s, {temp} degC)"


def test_flood_of_100_crossings_is_one_alert_and_one_notification(tmp_path: Path) -> None:
    clock = Clock()
    hook = Recorder()
    cfg = site(OVERSHOOT.replace("on_delay_s: 10", "on_delay_s: 0").replace("off_delay_s: 5", "off_delay_s: 0"))
    live, ops = build(cfg, tmp_path, clock, {"hook": hook})
    for _ in range(100):  # 100 crossings in 50 s
        clock.step(0.25)
        feed(live, clock, "furnace-01", temperature=640.0, setpoint=600.0)
        clock.step(0.25)
        feed(live, clock, "furnace-01", temperature=601.0, setpoint=600.0)
    asyncio.run(ops.notifier.run_once())
    assert len(hook.sent) == 1
    assert states(ops) == [("overshoot", "cleared_unacknowledged", 100)]
    # after the window the next occurrence notifies again (the count goes on)
    clock.step(300)
    feed(live, clock, "furnace-01", temperature=640.0, setpoint=600.0)
    asyncio.run(ops.notifier.run_once())
    assert len(hook.sent) == 2
    assert hook.sent[1]["transition"] == "repeated"
    assert hook.sent[1]["alert"]["count"] == 101


def test_rate_rule(tmp_path: Path) -> None:
    clock = Clock()
    cfg = site("""
alerts:
  defaults: false
  rules:
    - {id: fast, type: rate, severity: low, kinds: [furnace], signal: temperature, rise_per_min: 30, window_s: 60,
       message: {en: "{value} per minute", ru: "{value} в минуту"}}
""")
    live, ops = build(cfg, tmp_path, clock)
    for i in range(7):  # +20 degC per minute: fine
        feed(live, clock, "furnace-01", temperature=100.0 + 20.0 * i / 6)
        clock.step(10)
    assert states(ops) == []
    for i in range(1, 7):  # +60 degC per minute
        feed(live, clock, "furnace-01", temperature=120.0 + 60.0 * i / 6)
        clock.step(10)
    alerts = ops.book.find()
    assert [(a["rule"], a["state"]) for a in alerts] == [("fast", "active_unacknowledged")]
    # raised as soon as the rate over the last minute passed 30/min (the window still held slower samples)
    assert 30.0 < alerts[0]["value"] <= 60.0
    assert alerts[0]["message"]["en"] == f"{alerts[0]['value']:.1f} per minute"


def test_state_for_five_minutes_and_door_open_while_heating(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(), tmp_path, clock)  # built-in rules
    feed(live, clock, "cnc-01", state="Executing")
    clock.step(1)
    feed(live, clock, "cnc-01", state="alarm")
    assert [a["rule"] for a in ops.book.find()] == ["machine-error"]
    for _ in range(300):
        clock.step(1)
        feed(live, clock, "cnc-01", state="alarm")
        live.tick()
    rules = {a["rule"]: a for a in ops.book.find()}
    assert set(rules) == {"machine-error", "machine-error-unattended"}
    assert rules["machine-error-unattended"]["severity"] == "critical"
    assert rules["machine-error-unattended"]["message"]["en"] == "CNC 1 has been in error for 5 min."
    feed(live, clock, "furnace-01", door_open=True, heater_pct=0.0, temperature=150.0)
    clock.step(5)
    feed(live, clock, "furnace-01", door_open=True, heater_pct=0.0, temperature=150.0)
    assert "furnace-door-open-heating" not in {a["rule"] for a in ops.book.find()}
    feed(live, clock, "furnace-01", door_open=True, heater_pct=60.0)
    clock.step(2)
    live.tick()
    door = [a for a in ops.book.find() if a["rule"] == "furnace-door-open-heating"]
    assert [(a["severity"], a["message"]["ru"]) for a in door] == [
        ("critical", "Furnace 1: дверь открыта во время нагрева.")]


def test_offline_rule_only_for_machines_seen_before(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(), tmp_path, clock)
    feed(live, clock, "plug-01", power_w=10.0)
    for _ in range(80):
        clock.step(1)
        live.tick()
    assert [(a["machine"], a["rule"]) for a in ops.book.find()] == [("plug-01", "machine-offline")]
    # stale after 10 s, then the 60 s on-delay: offline for 60 s when raised
    assert ops.book.find()[0]["message"]["en"] == "Laser on a smart plug sends no data (offline for 60 s)."
    assert ops.book.find()[0]["message"]["ru"] == "Laser on a smart plug не передаёт данные (нет связи 60 s)."
    feed(live, clock, "plug-01", power_w=10.0)
    assert ops.book.find()[0]["state"] == "cleared_unacknowledged"


def test_lifecycle_ack_clear_shelve_and_suppression(tmp_path: Path) -> None:
    clock = Clock()
    hook = Recorder()
    live, ops = build(site(HOOK), tmp_path, clock, {"hook": hook})
    book = ops.book

    def error(on: bool) -> None:
        clock.step(1)
        feed(live, clock, "cnc-01", state="alarm" if on else "Executing")

    # active-unacknowledged -> acknowledged -> (clears) closed
    error(True)
    a = book.find()[0]
    assert a["state"] == "active_unacknowledged"
    assert book.ack(a["id"], by="timur", note="reset the e-stop", now_ns=clock())["state"] == "acknowledged"
    error(False)
    assert book.get(a["id"])["state"] == "closed"
    with pytest.raises(AlertClosed):
        book.ack(a["id"], by="timur", note="", now_ns=clock())
    # cleared while unacknowledged -> ack closes it
    error(True)
    b = book.find()[0]
    assert b["id"] != a["id"]
    error(False)
    assert book.get(b["id"])["state"] == "cleared_unacknowledged"
    assert book.ack(b["id"], by="timur", note="", now_ns=clock())["state"] == "closed"
    # shelved: no notification; back by itself when the period is over, still active -> shown again
    error(True)
    c = book.find()[0]
    book.shelve(c["id"], by="timur", duration_s=600, note="waiting for a part", now_ns=clock())
    assert book.find(state="shelved")[0]["id"] == c["id"]
    for _ in range(119):  # the machine stays in error, reporting every 5 s
        clock.step(5)
        feed(live, clock, "cnc-01", state="alarm")
        live.tick()
    assert book.get(c["id"])["state"] == "shelved"
    clock.step(6)
    feed(live, clock, "cnc-01", state="alarm")
    live.tick()
    assert book.get(c["id"])["state"] == "active_unacknowledged"
    # shelved and cleared meanwhile: closes when the period ends
    book.shelve(c["id"], by="timur", duration_s=60, note="", now_ns=clock())
    error(False)
    clock.step(61)
    live.tick()
    assert book.get(c["id"])["state"] == "closed"
    # suppressed while the machine is in maintenance: no notification until it comes back still active
    asyncio.run(ops.notifier.run_once())
    sent_before = len(hook.sent)
    live.set_maintenance("cnc-01", True, by="timur")
    feed(live, clock, "cnc-01", state="alarm")
    d = book.find()[0]
    assert d["state"] == "suppressed"
    asyncio.run(ops.notifier.run_once())
    assert len(hook.sent) == sent_before
    clock.step(400)
    feed(live, clock, "cnc-01", state="alarm")  # still in error when the technician is done
    live.set_maintenance("cnc-01", False, by="timur")
    assert book.get(d["id"])["state"] == "active_unacknowledged"
    asyncio.run(ops.notifier.run_once())
    # both error alerts (the 5-minute one fired during maintenance too) come back, each notified once
    assert sorted((p["alert"]["rule"], p["transition"]) for p in hook.sent[sent_before:]) == [
        ("machine-error", "returned"), ("machine-error-unattended", "returned")]


def test_restart_neither_raises_again_nor_renotifies_nor_loses(tmp_path: Path) -> None:
    clock = Clock()
    hook = Recorder()
    cfg = site(HOOK)
    live, ops = build(cfg, tmp_path, clock, {"hook": hook})
    feed(live, clock, "cnc-01", state="alarm")
    feed(live, clock, "furnace-01", door_open=True, heater_pct=80.0)
    clock.step(3)
    live.tick()
    hook.fail = "connection refused"
    asyncio.run(ops.notifier.run_once())
    assert hook.sent == []  # the gateway goes down before it could deliver
    ops.store.close()
    hook2 = Recorder()
    clock.step(5)
    live2, ops2 = build(cfg, tmp_path, clock, {"hook": hook2})
    feed(live2, clock, "cnc-01", state="alarm")  # still in error after the restart
    feed(live2, clock, "furnace-01", door_open=True, heater_pct=80.0)
    clock.step(3)
    live2.tick()
    clock.step(10)  # past the first retry delay
    asyncio.run(ops2.notifier.run_once())
    assert sorted(p["alert"]["rule"] for p in hook2.sent) == ["furnace-door-open-heating", "machine-error"]
    assert [(a["rule"], a["count"]) for a in ops2.book.find()] == [("furnace-door-open-heating", 1),
                                                                    ("machine-error", 1)]
    clock.step(10)
    asyncio.run(ops2.notifier.run_once())
    assert len(hook2.sent) == 2


def test_after_a_restart_an_open_alert_holds_until_its_machine_reports(tmp_path: Path) -> None:
    clock = Clock()
    cfg = site(HOOK)
    live, ops = build(cfg, tmp_path, clock, {"hook": Recorder()})
    feed(live, clock, "cnc-01", state="alarm")
    clock.step(3)
    live.tick()
    assert [(a["rule"], a["state"]) for a in ops.book.find()] == [("machine-error", "active_unacknowledged")]
    ops.store.close()
    live2, ops2 = build(cfg, tmp_path, clock, {"hook": Recorder()})
    for _ in range(120):  # two minutes without a word from the machine: offline, but the alert stays as it was
        clock.step(1)
        live2.tick()
    assert [(a["rule"], a["state"]) for a in ops2.book.find()] == [("machine-error", "active_unacknowledged")]
    feed(live2, clock, "cnc-01", state="ready")  # it reports, and is no longer in error: now the alert clears
    for _ in range(10):
        clock.step(1)
        live2.tick()
    assert [(a["rule"], a["state"]) for a in ops2.book.find()] == [("machine-error", "cleared_unacknowledged")]


def test_notification_routing_by_severity_and_lab(tmp_path: Path) -> None:
    clock = Clock()
    ops_hook, materials = Recorder(), Recorder()
    cfg = site("""
notifications:
  channels:
    - {id: crit, type: webhook, url: "http://127.0.0.1:9/a", min_severity: critical}
    - {id: materials, type: webhook, url: "http://127.0.0.1:9/b", min_severity: low, labs: [materials],
       on_clear: true}
""")
    live, ops = build(cfg, tmp_path, clock, {"crit": ops_hook, "materials": materials})
    feed(live, clock, "cnc-01", state="alarm")  # high, shop
    feed(live, clock, "furnace-01", door_open=True, heater_pct=80.0)
    clock.step(3)
    live.tick()  # critical, materials
    feed(live, clock, "furnace-01", door_open=False)
    asyncio.run(ops.notifier.run_once())
    assert [p["alert"]["rule"] for p in ops_hook.sent] == ["furnace-door-open-heating"]
    assert [(p["alert"]["rule"], p["transition"]) for p in materials.sent] == [
        ("furnace-door-open-heating", "raised"), ("furnace-door-open-heating", "cleared")]


def test_retry_with_backoff_then_give_up(tmp_path: Path) -> None:
    clock = Clock()
    hook = Recorder()
    hook.fail = "503"
    cfg = site(HOOK + "  retry: {initial_s: 2, max_s: 10, max_attempts: 4}\n")
    live, ops = build(cfg, tmp_path, clock, {"hook": hook})
    feed(live, clock, "cnc-01", state="alarm")
    delays = []
    for _ in range(4):
        asyncio.run(ops.notifier.run_once())
        row = ops.store.one("SELECT * FROM outbox")
        assert row is not None
        delays.append((row["next_ns"] - clock()) / NS)
        clock.step(30)
    assert delays[:3] == [2.0, 4.0, 8.0]
    assert ops.notifier.stats() == {"failed": 1}


def test_a_nearly_empty_spool_on_a_running_printer_is_an_alert(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(), tmp_path, clock)

    def low() -> list[tuple[str, float, bool]]:
        return [(a["severity"], a["value"], a["active"]) for a in ops.book.find(state="all")
                if a["rule"] == "printer-filament-low"]

    feed(live, clock, "fdm-01", state="idle", filament_remain_pct=4)
    live.tick()
    assert low() == []  # not printing: nothing runs out
    for remain in (12, 10):
        clock.step(1)
        feed(live, clock, "fdm-01", state="printing", filament_remain_pct=remain)
        live.tick()
        assert low() == [], remain
    clock.step(1)
    feed(live, clock, "fdm-01", state="printing", filament_remain_pct=9)
    live.tick()
    assert low() == [("medium", 9.0, True)]
    [alert] = [a for a in ops.book.find() if a["rule"] == "printer-filament-low"]
    assert alert["message"]["en"].startswith("Printer 1: 9.0  of filament left on the loaded spool")
    clock.step(1)
    feed(live, clock, "fdm-01", state="printing", filament_remain_pct=11)
    live.tick()
    assert low() == [("medium", 9.0, True)]  # inside the 2 % deadband
    clock.step(1)
    feed(live, clock, "fdm-01", state="idle", filament_remain_pct=3)  # the job ended
    live.tick()
    assert [active for *_, active in low()] == [False]


def test_site_rule_replaces_and_disables_builtins() -> None:
    cfg = site(OVERSHOOT.replace("defaults: false", "defaults: true\n  disable: [machine-offline]"))
    ids = [r.id for r in effective_rules(cfg.alerts)]
    assert "machine-offline" not in ids
    assert ids[-1] == "overshoot"
    assert "printer-thermal-runaway" in ids
    assert [r.id for r in effective_rules(AlertsSection(defaults=False))] == []


def test_book_find_filters(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    book = AlertBook(store, site_id="krg", channels=[], notify_window_s=0)
    for i, (machine, sev) in enumerate([("a", "low"), ("b", "critical"), ("a", "high")]):
        book.raise_(rule=f"r{i}", machine=machine, lab=None, severity=sev, message=("x", "y"), value=1,
                    now_ns=T0 + i, suppressed=False)
    assert [a["severity"] for a in book.find()] == ["critical", "high", "low"]
    assert [a["rule"] for a in book.find(machine="a")] == ["r2", "r0"]
    assert [a["rule"] for a in book.find(severity="critical")] == ["r1"]
    book.ack(1, by="x", note="", now_ns=T0 + 10)
    assert [a["rule"] for a in book.find(state="acknowledged")] == ["r0"]
    assert [a["rule"] for a in book.find(state="active_unacknowledged")] == ["r2", "r1"]


def test_a_printers_hms_codes_are_an_alert_that_carries_them(tmp_path: Path) -> None:
    clock = Clock()
    live, ops = build(site(), tmp_path, clock)
    feed(live, clock, "fdm-01", state="printing", hms="")
    live.tick()
    assert [a for a in ops.book.find() if a["rule"] == "printer-hms"] == []  # no code: nothing to say
    clock.step(1)
    feed(live, clock, "fdm-01", state="printing", hms="HMS_0700_2000_0002_0001")
    live.tick()
    [hms] = [a for a in ops.book.find() if a["rule"] == "printer-hms"]
    assert (hms["severity"], hms["value"], hms["active"]) == ("medium", "HMS_0700_2000_0002_0001", True)
    assert hms["message"]["en"] == ("Printer 1: the printer reports HMS_0700_2000_0002_0001 — look the code up in "
                                    "the maker's HMS wiki.")
    clock.step(1)
    feed(live, clock, "fdm-01", state="printing", hms="")
    live.tick()
    [hms] = [a for a in ops.book.find() if a["rule"] == "printer-hms"]
    assert not hms["active"]
