"""The import graph of the code: no cycles at all (imports for type checking and inside functions included), and
the layers depend downwards only — drivers on the driver contract, the API on services, services on the core."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "drivers", "simulators", "dashboards", "benchmarks")

# what a driver may import from the gateway: the contract and the small value types it is written in
DRIVER_MAY_IMPORT = (
    "gateway.driver",
    "gateway.reading",
    "gateway.errors",
    "gateway.units",
    "gateway.signals",
    "gateway.backoff",
    "gateway.config.models",
)


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every module of ours that `name` imports, wherever the import statement is, with its line."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:  # `from pkg import module`
                    yield sub, node.lineno
                elif target in known:
                    yield target, node.lineno


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    g: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges = g.setdefault(name, {})
        for target, line in imports(name, path, known):
            if target != name:
                edges.setdefault(target, line)
    return g


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(g.get(w, {})))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def describe(g: dict[str, dict[str, int]], comp: list[str]) -> str:
    members = set(comp)
    arrows = [f"    {a} -> {b} (line {g[a][b]})" for a in comp for b in sorted(g[a]) if b in members]
    return "  " + ", ".join(comp) + ":\n" + "\n".join(arrows)


def test_the_checker_finds_a_cycle() -> None:
    g = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_checker_reads_every_import_form(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    init = tmp_path / "pkg" / "__init__.py"
    init.write_text("from .x import X\nfrom pkg import y\nimport pkg.z\nif True:\n    from pkg.w import W\n"
                    "def f() -> None:\n    from . import v\n")
    known = {n: tmp_path / "pkg" / f"{n.split('.')[-1]}.py" for n in ("pkg.x", "pkg.y", "pkg.z", "pkg.w", "pkg.v")}
    known["pkg"] = init
    assert sorted(t for t, _ in imports("pkg", init, known)) == ["pkg.v", "pkg.w", "pkg.x", "pkg.y", "pkg.z"]


def test_no_import_cycles() -> None:
    g = graph()
    assert len(g) > 100  # the whole code base was read
    found = cycles(g)
    assert not found, "modules import each other in a circle (type-checking and local imports count):\n" + "\n".join(
        describe(g, c) for c in found)


def test_drivers_depend_only_on_the_contract() -> None:
    g = graph()
    bad = [f"{m} imports {t} (line {line})" for m, edges in g.items() if m.startswith("drivers")
           for t, line in edges.items()
           if t.startswith("gateway") and not any(t == ok or t.startswith(ok + ".") for ok in DRIVER_MAY_IMPORT)]
    assert not bad, "drivers may import only the driver contract from the gateway:\n" + "\n".join(bad)


def test_the_core_does_not_depend_on_the_api_or_tools() -> None:
    g = graph()
    bad = [f"{m} imports {t} (line {line})" for m, edges in g.items()
           if m.startswith("gateway") and not m.startswith(("gateway.api", "gateway.cli", "gateway.runtime"))
           and not m.endswith(".cli")
           for t, line in edges.items() if t.startswith(("gateway.api", "benchmarks", "simulators"))]
    assert not bad, "only the runtime and the command line wire up the API and the simulators:\n" + "\n".join(bad)
