"""Evaluates alert rules on every frame of readings and every second, and drives the alert book.

One `Memory` per rule and machine holds the debounce timers, the hysteresis state and (for rate rules) recent
samples. After a restart, rules whose alert is still open and active start active, so a condition that still
holds neither raises a second alert nor notifies again; and such an alert is held as it is until its machine has
reported after the restart (a gateway that has not heard from a machine yet knows nothing new about it: an error
alert must not clear just because the gateway restarted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from gateway.alerts.book import AlertBook
from gateway.alerts.rules import CompiledRule, Memory, Outcome, debounce
from gateway.alerts.templates import render
from gateway.machines import MachineMeta
from gateway.reading import Reading
from gateway.state.model import MachineView
from gateway.state.stage import Frame

log = logging.getLogger(__name__)


class AlertEngine:
    """The alert rules as a step of the state stage: every frame of an iteration at once, every machine a tick."""

    def __init__(self, rules: Sequence[CompiledRule], book: AlertBook, machines: Sequence[MachineMeta]) -> None:
        self.book = book
        self.rules: dict[str, list[CompiledRule]] = {m.id: [r for r in rules if r.applies(m)] for m in machines}
        self.memory: dict[tuple[str, str], Memory] = {
            (r.id, m): Memory() for m, rs in self.rules.items() for r in rs
        }
        for rule_id, machine in book.active_keys():
            mem = self.memory.get((rule_id, machine))
            if mem is not None:
                mem.active = True
        self._maintenance: dict[str, bool] = {}

    def observe(self, frames: Sequence[Frame], now_ns: int) -> None:
        """Evaluate the rules on every frame, in order: each frame is the machine as one set of values left it."""
        for f in frames:
            self.evaluate(f.view, now_ns, f.readings)

    def tick(self, machines: Sequence[MachineView], now_ns: int) -> None:
        for m in machines:
            self.evaluate(m, now_ns)
        self.book.tick(now_ns)

    def evaluate(self, view: MachineView, now_ns: int, readings: Sequence[Reading] = ()) -> list[dict[str, Any]]:
        """Evaluate every rule of one machine; the alerts raised or cleared."""
        self._suppression(view, now_ns)
        changed: list[dict[str, Any]] = []
        for rule in self.rules.get(view.meta.id, ()):
            mem = self.memory[(rule.id, view.meta.id)]
            if mem.active and view.last_seen_ns is None:
                continue  # restored open from before a restart; nothing heard from the machine since
            if readings:
                rule.feed(mem, readings)
            outcome = rule.evaluate(view, mem, now_ns)
            decision = debounce(rule.cfg, mem, outcome.holds, now_ns)
            if decision == "raise":
                changed.append(self._raise(rule, view, outcome, now_ns))
            elif decision == "clear":
                cleared = self.book.clear(rule=rule.id, machine=view.meta.id, now_ns=now_ns)
                if cleared is not None:
                    changed.append(cleared)
        return changed

    def _raise(self, rule: CompiledRule, view: MachineView, outcome: Outcome, now_ns: int) -> dict[str, Any]:
        c = rule.cfg
        en, ru = render(c, view, outcome, now_ns)
        log.warning("alert %s on %s: %s", rule.id, view.meta.id, en,
                    extra={"machine": view.meta.id, "rule": rule.id, "severity": c.severity})
        return self.book.raise_(rule=rule.id, machine=view.meta.id, lab=view.meta.lab, severity=c.severity,
                                message=(en, ru), value=outcome.value, now_ns=now_ns,
                                suppressed=self._maintenance.get(view.meta.id, False))

    def _suppression(self, view: MachineView, now_ns: int) -> None:
        if self._maintenance.get(view.meta.id, False) != view.maintenance:
            self._maintenance[view.meta.id] = view.maintenance
            self.book.set_suppressed(view.meta.id, view.maintenance, now_ns)
