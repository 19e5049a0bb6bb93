"""`kartech status`: a running gateway's health and counters as readable tables (from /api/v1/health and /metrics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.self_metrics import parse_exposition

Labels = tuple[tuple[str, str], ...]


def _by_label(series: Mapping[Labels, Mapping[str, float]], key: str) -> dict[str, dict[str, float]]:
    """{label value: {metric: value summed over the other labels}} for series that carry label `key`."""
    out: dict[str, dict[str, float]] = {}
    for labels, values in series.items():
        lbl = dict(labels)
        if key not in lbl:
            continue
        row = out.setdefault(lbl[key], {})
        for name, v in values.items():
            row[name] = row.get(name, 0.0) + v
    return out


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def fmt(cells: Sequence[str]) -> str:
        # first column (name) and last (error text) left-aligned, figures right-aligned
        parts = [c.ljust(w) if i in (0, 1, len(cells) - 1) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return [fmt(head), *(fmt(r) for r in rows)]


def _n(v: float | None) -> str:
    return "-" if v is None else f"{int(v):,}"


def _age(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _ms(total_s: float | None, count: float | None) -> str:
    return f"{1000 * total_s / count:.0f} ms" if total_s is not None and count else "-"


def render(url: str, health: Mapping[str, Any], metrics_text: str | None) -> str:
    """The tables `kartech status` prints; without metrics (no token) the counters show as '-'."""
    series, _ = parse_exposition(metrics_text or "", "kartech")
    drivers_m = _by_label(series, "driver")
    sinks_m = _by_label(series, "sink")
    outbox = health.get("outbox") or {}
    lines = [
        f"gateway {url} — {health.get('status', '?')}, version {health.get('version', '?')}, "
        f"site {health.get('site', '?')}, up {_age(health.get('uptime_s'))}, {health.get('machines', '?')} machines",
    ]
    if outbox:
        lines.append(
            f"outbox: {outbox.get('state', '?')}, {outbox.get('bytes', 0) / 1e6:.1f} MB of "
            f"{outbox.get('max_bytes', 0) / 1e6:.0f} MB, {outbox.get('queued_groups', 0)} groups queued"
            + (f" — {outbox['last_error']}" if outbox.get("last_error") else "")
        )
    lines.append("")
    drows = []
    for name, d in sorted((health.get("drivers") or {}).items()):
        m = drivers_m.get(name, {})
        have = metrics_text is not None
        drows.append([name, "connected" if d.get("connected") else "DOWN",
                      _n(m.get("readings_received_total", 0.0) if have else None),
                      _n(m.get("readings_committed_total", 0.0) if have else None),
                      _n(m.get("bad_input_total", 0.0) if have else None),
                      _n(m.get("driver_reconnects_total", 0.0) if have else None),
                      str(d.get("last_error") or "")])
    if drows:
        lines += _table(["DRIVER", "STATE", "RECEIVED", "COMMITTED", "BAD INPUT", "RECONNECTS", "LAST ERROR"], drows)
        lines.append("")
    srows = []
    for name, s in sorted((health.get("sinks") or {}).items()):
        m = sinks_m.get(name, {})
        have = metrics_text is not None
        # write latency: per batch as the sink worker saw it (retries excluded)
        latency = _ms(m.get("sink_batch_seconds_sum"), m.get("sink_batch_seconds_count")) if have else "-"
        srows.append([name, str(s.get("state", "?")),
                      _n(m.get("readings_written_total", 0.0) if have else None),
                      _n(s.get("queued")),
                      _n(m.get("readings_dead_lettered_total", 0.0) if have else None),
                      _n(m.get("readings_dropped_total", 0.0) if have else None),
                      _age(s.get("oldest_queued_s")),
                      latency,
                      _n(m.get("sink_retries_total", 0.0) if have else None),
                      str(s.get("last_error") or "")])
    if srows:
        lines += _table(["SINK", "STATE", "WRITTEN", "QUEUED", "DEAD-LETTERED", "DROPPED", "OLDEST QUEUED",
                         "WRITE LATENCY", "RETRIES", "LAST ERROR"], srows)
    if metrics_text is None:
        lines += ["", "counters need an API token: kartech status --token TOKEN (or set KARTECH_TOKEN)"]
    return "\n".join(lines).rstrip() + "\n"
