"""Which channels hear about which alert: by severity (this or worse) and by lab."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.operations import SEVERITY_RANK, Channel


def routes(channels: Sequence[Channel], *, severity: str, lab: str | None, transition: str) -> list[str]:
    """Ids of the channels that take this alert transition ('raised', 'repeated', 'returned', 'cleared')."""
    out: list[str] = []
    for ch in channels:
        if SEVERITY_RANK[severity] < SEVERITY_RANK[ch.min_severity]:
            continue
        if ch.labs and lab not in ch.labs:
            continue
        if transition == "cleared" and not ch.on_clear:
            continue
        out.append(ch.id)
    return out
