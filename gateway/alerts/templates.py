"""Alert messages from the rule's templates, in English and Russian."""

from __future__ import annotations

from gateway.alerts.rules import Outcome
from gateway.config.operations import AlertRule, RateRule, ThresholdRule
from gateway.state.model import MachineView

NS = 1_000_000_000


def duration_text(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _num(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"
    return "" if x is None else str(x)


def render(rule: AlertRule, view: MachineView, outcome: Outcome, now_ns: int) -> tuple[str, str]:
    since = view.state_since_ns if view.state_since_ns is not None else now_ns
    fields = {
        "machine": view.meta.id,
        "machine_name": view.meta.name,
        "kind": view.meta.kind,
        "lab": view.meta.lab or "",
        "rule": rule.id,
        "severity": rule.severity,
        "signal": rule.signal if isinstance(rule, ThresholdRule | RateRule) else "",
        "value": _num(outcome.value),
        "unit": outcome.unit or "",
        "limit": _num(outcome.limit),
        "state": view.state,
        "duration": duration_text((now_ns - since) / NS),
        "count": "1",
    }
    return rule.message.en.format(**fields), rule.message.ru.format(**fields)
