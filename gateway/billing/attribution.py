"""Who a job is billed to: the first attribution rule whose prefix or regex matches the job's name.

Job names are what the machine reports as the current job: a print file name, an OPC UA program name. A job no
rule matches is unattributed: it is kept in the ledger with no partner, listed for an admin, and assigned later
by a compensating pair of entries (see ledger.assign).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.billing import AttributionRule


@dataclass(frozen=True, slots=True)
class Attribution:
    partner: str
    project: str | None
    rule: int  # index of the rule under billing.attribution that matched


@dataclass(frozen=True, slots=True)
class _Compiled:
    index: int
    rule: AttributionRule
    pattern: re.Pattern[str] | None


class Attributor:
    """Compiled attribution rules."""

    def __init__(self, rules: Sequence[AttributionRule]) -> None:
        self._rules = [_Compiled(i, r, re.compile(r.regex) if r.regex is not None else None)
                       for i, r in enumerate(rules)]

    def attribute(self, machine: str, job: str) -> Attribution | None:
        for c in self._rules:
            if c.rule.machines and machine not in c.rule.machines:
                continue
            hit = job.startswith(c.rule.prefix) if c.rule.prefix is not None else bool(
                c.pattern is not None and c.pattern.search(job))
            if hit:
                return Attribution(c.rule.partner, c.rule.project, c.index)
        return None
