"""References between the sections of a site file that no single model can see: machines, kinds, labs, brokers,
shifts and billing names that rules, plans and channels refer to. `cross_checks(cfg)` lists every problem."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.billing import cross_checks as billing_checks
from gateway.config.operations import Loc, MqttChannel
from gateway.config.site import SiteConfig


def _unknown(loc: Loc, value: str, what: str, known: Sequence[str]) -> tuple[Loc, object, str]:
    import difflib

    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return loc, value, f'"{value}" is not a known {what}; {hint}(known: {", ".join(sorted(known)) or "none"})'


def cross_checks(cfg: SiteConfig) -> list[tuple[Loc, object, str]]:
    """References between sections: machines, kinds, labs and brokers named by rules, plans and channels."""
    ids = [m.id for m in cfg.machines]
    kinds = sorted({m.kind for m in cfg.machines})
    labs = sorted({m.lab for m in cfg.machines if m.lab})
    brokers = [b.id for b in cfg.mqtt.brokers]
    out: list[tuple[Loc, object, str]] = []
    for mid in cfg.state.machines:
        if mid not in ids:
            out.append(_unknown(("state", "machines", mid), mid, "machine", ids))
    if cfg.state.mqtt is not None and cfg.state.mqtt.broker not in brokers:
        out.append(_unknown(("state", "mqtt", "broker"), cfg.state.mqtt.broker, "broker", brokers))
    seen: dict[str, int] = {}
    for i, rule in enumerate(cfg.alerts.rules):
        if rule.id in seen:
            out.append((("alerts", "rules", i, "id"), rule.id,
                        f'"{rule.id}" is already used by rules[{seen[rule.id]}]; rule ids must be unique'))
        seen.setdefault(rule.id, i)
        for key, values, known, what in (("machines", rule.machines, ids, "machine"),
                                         ("kinds", rule.kinds, kinds, "machine kind"),
                                         ("labs", rule.labs, labs, "lab")):
            for j, v in enumerate(values):
                if v not in known:
                    out.append(_unknown(("alerts", "rules", i, key, j), v, what, known))
    channel_ids: dict[str, int] = {}
    for i, ch in enumerate(cfg.notifications.channels):
        if ch.id in channel_ids:
            out.append((("notifications", "channels", i, "id"), ch.id,
                        f'"{ch.id}" is already used by channels[{channel_ids[ch.id]}]; channel ids must be unique'))
        channel_ids.setdefault(ch.id, i)
        for j, v in enumerate(ch.labs):
            if v not in labs:
                out.append(_unknown(("notifications", "channels", i, "labs", j), v, "lab", labs))
        if isinstance(ch, MqttChannel) and ch.broker not in brokers:
            out.append(_unknown(("notifications", "channels", i, "broker"), ch.broker, "broker", brokers))
    tasks: dict[str, int] = {}
    for i, plan in enumerate(cfg.maintenance.plans):
        if plan.id in tasks:
            out.append((("maintenance", "plans", i, "id"), plan.id,
                        f'"{plan.id}" is already used by plans[{tasks[plan.id]}]; task ids must be unique'))
        tasks.setdefault(plan.id, i)
        for key, values, known, what in (("machines", plan.machines, ids, "machine"),
                                         ("kinds", plan.kinds, kinds, "machine kind")):
            for j, v in enumerate(values):
                if v not in known:
                    out.append(_unknown(("maintenance", "plans", i, key, j), v, what, known))
    shift_ids: dict[str, int] = {}
    for i, shift in enumerate(cfg.shifts.calendar):
        if shift.id in shift_ids:
            out.append((("shifts", "calendar", i, "id"), shift.id, f'"{shift.id}" is used by two shifts'))
        shift_ids.setdefault(shift.id, i)
    out.extend(billing_checks(cfg))
    return out
