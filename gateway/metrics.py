"""The gateway's own counters and gauges, rendered in Prometheus text format for `/metrics`.

Small on purpose: labelled counters and gauges kept in dicts, no global registry (one `Metrics` object is built
in `main()` and passed to whoever counts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Labels = tuple[tuple[str, str], ...]


def _labels(kw: dict[str, str]) -> Labels:
    return tuple(sorted(kw.items()))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self, prefix: str = "kartech") -> None:
        self.prefix = prefix
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[Labels, float]] = {}
        self._gauge_fns: dict[str, list[tuple[Labels, Callable[[], float]]]] = {}

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help.setdefault(name, (kind, help_text))
        self._values.setdefault(name, {})

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        series = self._values.setdefault(name, {})
        key = _labels(labels)
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values.setdefault(name, {})[_labels(labels)] = value

    def gauge_fn(self, name: str, fn: Callable[[], float], **labels: str) -> None:
        """A gauge read at scrape time (queue depth, oldest queued age)."""
        self._gauge_fns.setdefault(name, []).append((_labels(labels), fn))

    def value(self, name: str, **labels: str) -> float:
        key = _labels(labels)
        for lbl, fn in self._gauge_fns.get(name, []):
            if lbl == key:
                return fn()
        return self._values.get(name, {}).get(key, 0.0)

    def total(self, name: str, **match: str) -> float:
        """Sum of a metric over every label set that contains `match`."""
        want = set(match.items())
        return sum(v for lbl, v in self._values.get(name, {}).items() if want <= set(lbl))

    def series(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for lbl, v in self._values.get(name, {}).items():
            yield dict(lbl), v
        for lbl, fn in self._gauge_fns.get(name, []):
            yield dict(lbl), fn()

    def render(self) -> str:
        out: list[str] = []
        names = sorted(set(self._values) | set(self._gauge_fns))
        for name in names:
            full = f"{self.prefix}_{name}"
            kind, help_text = self._help.get(name, ("untyped", ""))
            if help_text:
                out.append(f"# HELP {full} {help_text}")
            out.append(f"# TYPE {full} {kind}")
            for lbl, v in self.series(name):
                text = ",".join(f'{k}="{_escape(x)}"' for k, x in sorted(lbl.items()))
                out.append(f"{full}{{{text}}} {v:g}" if text else f"{full} {v:g}")
        return "\n".join(out) + "\n"
