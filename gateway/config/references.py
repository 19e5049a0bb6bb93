"""References between the sections of a site file that no single model can see: machines, kinds, labs, brokers,
shifts and billing names that rules, plans and channels refer to. `cross_checks(cfg)` lists every problem."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.billing import rate_id
from gateway.config.operations import Loc, MqttChannel
from gateway.config.site import SiteConfig


def _unknown(loc: Loc, value: str, what: str, known: Sequence[str]) -> tuple[Loc, object, str]:
    import difflib

    names = sorted(set(known))
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return loc, value, f'"{value}" is not a known {what}; {hint}(known: {", ".join(names) or "none"})'


def _unique(where: tuple[str, str], ids: Sequence[str], what: str) -> list[tuple[Loc, object, str]]:
    """Every id of a list (`where`: its section and key) that an earlier item already uses."""
    out: list[tuple[Loc, object, str]] = []
    first: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        if item_id in first:
            out.append(((*where, i, "id"), item_id, f'"{item_id}" is already used by '
                        f"{where[1]}[{first[item_id]}]; {what} ids must be unique"))
        first.setdefault(item_id, i)
    return out


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
    out += _unique(("alerts", "rules"), [r.id for r in cfg.alerts.rules], "rule")
    for i, rule in enumerate(cfg.alerts.rules):
        for key, values, known, what in (("machines", rule.machines, ids, "machine"),
                                         ("kinds", rule.kinds, kinds, "machine kind"),
                                         ("labs", rule.labs, labs, "lab")):
            for j, v in enumerate(values):
                if v not in known:
                    out.append(_unknown(("alerts", "rules", i, key, j), v, what, known))
    out += _unique(("notifications", "channels"), [ch.id for ch in cfg.notifications.channels], "channel")
    for i, ch in enumerate(cfg.notifications.channels):
        for j, v in enumerate(ch.labs):
            if v not in labs:
                out.append(_unknown(("notifications", "channels", i, "labs", j), v, "lab", labs))
        if isinstance(ch, MqttChannel) and ch.broker not in brokers:
            out.append(_unknown(("notifications", "channels", i, "broker"), ch.broker, "broker", brokers))
    out += _unique(("maintenance", "plans"), [plan.id for plan in cfg.maintenance.plans], "task")
    for i, plan in enumerate(cfg.maintenance.plans):
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


def billing_checks(cfg: SiteConfig) -> list[tuple[Loc, object, str]]:
    """References inside `billing:` and to the machines: partners, projects, materials, machines and kinds; and
    the partners of partner tokens (`api.tokens[].partner`)."""
    b = cfg.billing
    tokens = [(i, t.partner) for i, t in enumerate(cfg.api.tokens) if t.partner is not None]
    if b is None:
        return [(("api", "tokens", i, "partner"), p, f'"{p}" is not a known partner: this site file has no '
                 "billing section (add billing.partners)") for i, p in tokens]
    ids = [m.id for m in cfg.machines]
    kinds = sorted({m.kind for m in cfg.machines})
    partners = [p.id for p in b.partners]
    projects = {p.id: p.partner for p in b.projects}
    materials = [m.id for m in b.materials]
    out: list[tuple[Loc, object, str]] = []
    out += _unique(("billing", "partners"), partners, "partner")
    out += _unique(("billing", "projects"), [p.id for p in b.projects], "project")
    out += _unique(("billing", "users"), [u.id for u in b.users], "user")
    out += _unique(("billing", "materials"), materials, "material")
    out += _unique(("billing", "rates"), [rate_id(i, c) for i, c in enumerate(b.rates)], "rate card")

    def project_of(loc: Loc, partner: str, project: str | None) -> None:
        if project is None:
            return
        if project not in projects:
            out.append(_unknown((*loc, "project"), project, "project", list(projects)))
        elif partner in partners and projects[project] != partner:
            out.append(((*loc, "project"), project, f'"{project}" is a project of partner "{projects[project]}", '
                        f'not of "{partner}"'))

    for i, p in enumerate(b.projects):
        if p.partner not in partners:
            out.append(_unknown(("billing", "projects", i, "partner"), p.partner, "partner", partners))
    badges: dict[str, str] = {}
    for i, u in enumerate(b.users):
        if u.partner not in partners:
            out.append(_unknown(("billing", "users", i, "partner"), u.partner, "partner", partners))
        project_of(("billing", "users", i), u.partner, u.project)
        for j, badge in enumerate(u.badges):
            if badge in badges and badges[badge] != u.id:
                out.append((("billing", "users", i, "badges", j), badge,
                            f'"{badge}" is already the badge of user "{badges[badge]}"'))
            badges.setdefault(badge, u.id)
    for i, partner in tokens:
        if partner not in partners:
            out.append(_unknown(("api", "tokens", i, "partner"), partner, "partner", partners))
    for i, rule in enumerate(b.attribution):
        if rule.partner not in partners:
            out.append(_unknown(("billing", "attribution", i, "partner"), rule.partner, "partner", partners))
        project_of(("billing", "attribution", i), rule.partner, rule.project)
        for j, mid in enumerate(rule.machines):
            if mid not in ids:
                out.append(_unknown(("billing", "attribution", i, "machines", j), mid, "machine", ids))
    for i, card in enumerate(b.rates):
        for key, values, known, what in (("machines", card.machines, ids, "machine"),
                                         ("kinds", card.kinds, kinds, "machine kind")):
            for j, v in enumerate(values):
                if v not in known:
                    out.append(_unknown(("billing", "rates", i, key, j), v, what, known))
        if card.material is not None and card.material not in materials:
            out.append(_unknown(("billing", "rates", i, "material"), card.material, "material", materials))
    return out
