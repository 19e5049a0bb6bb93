"""The naming rule of tests/README.md: every unit test file is named after a module, or is a listed cross-cutting
check; no integration test shares a base name with a unit test."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
PACKAGES = ("gateway", "drivers", "simulators", "dashboards")
DROPPED = ("gateway", "drivers")  # top packages left out of the name
CROSS_CUTTING = {"test_import_graph", "test_driver_shape", "test_api_fuzz", "test_billing_properties",
                 "test_test_layout"}


def expected_name(module: Path) -> str:
    parts = list(module.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] in DROPPED:
        parts.pop(0)
    return "test_" + "_".join(parts) if parts else ""


def modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def test_the_rule_gives_every_module_its_own_name() -> None:
    names = Counter(expected_name(m) for m in modules())
    assert [n for n, count in names.items() if count > 1 and n] == []
    assert expected_name(ROOT / "gateway" / "alerts" / "book.py") == "test_alerts_book"
    assert expected_name(ROOT / "drivers" / "mqtt" / "mapping.py") == "test_mqtt_mapping"
    assert expected_name(ROOT / "simulators" / "dynamics.py") == "test_simulators_dynamics"


def test_every_unit_test_file_is_named_after_a_module_or_is_cross_cutting() -> None:
    known = {expected_name(m) for m in modules()} | CROSS_CUTTING
    unit = sorted(p.stem for p in (TESTS / "unit").glob("*.py"))
    assert [n for n in unit if n not in known] == [], "rename them as tests/README.md says, or list them there"


def test_cross_cutting_checks_exist_and_are_documented() -> None:
    readme = (TESTS / "README.md").read_text()
    for name in CROSS_CUTTING:
        assert (TESTS / "unit" / f"{name}.py").is_file(), name
        assert f"`{name}.py`" in readme, name


def test_integration_tests_do_not_share_a_name_with_unit_tests() -> None:
    unit = {p.name for p in (TESTS / "unit").glob("test_*.py")}
    integration = {p.name for p in (TESTS / "integration").glob("test_*.py")}
    assert unit & integration == set()
