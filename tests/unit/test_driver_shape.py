"""Every folder in drivers/ has the same shape, declares its DRIVER, and ships an example that validates."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from gateway.config.loader import ENV_REF, check_text
from gateway.driver import DriverSpec
from gateway.registry import discover

DRIVERS = Path(__file__).resolve().parents[2] / "drivers"
FOLDERS = sorted(p.name for p in DRIVERS.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
REQUIRED = ("__init__.py", "config.py", "driver.py", "README.md", "example.yaml")
README_SECTIONS = ("## What it reads", "## Configuration", "## Troubleshooting")


def test_every_driver_folder_is_registered() -> None:
    assert FOLDERS, "no driver folders found"
    assert sorted(discover()) == FOLDERS


@pytest.mark.parametrize("name", FOLDERS)
def test_folder_has_the_driver_files(name: str) -> None:
    missing = [f for f in REQUIRED if not (DRIVERS / name / f).is_file()]
    assert not missing, f"drivers/{name}/ lacks {', '.join(missing)} (see drivers/README.md)"


@pytest.mark.parametrize("name", FOLDERS)
def test_init_declares_the_spec_and_nothing_else_heavy(name: str) -> None:
    module = importlib.import_module(f"drivers.{name}")
    spec = module.DRIVER
    assert isinstance(spec, DriverSpec)
    assert spec.name == name
    assert spec.machine_model.__module__ == f"drivers.{name}.config"
    # the CLI, when there is one, lives in cli.py
    assert (spec.commands is None) == (not (DRIVERS / name / "cli.py").is_file())
    if spec.commands is not None:
        assert spec.commands.__module__ == f"drivers.{name}.cli"
    # classes are defined in the other modules; __init__.py holds DRIVER and its small build/check only
    source = (DRIVERS / name / "__init__.py").read_text(encoding="utf-8")
    assert not re.search(r"^class ", source, re.MULTILINE), f"drivers/{name}/__init__.py defines a class"


@pytest.mark.parametrize("name", FOLDERS)
def test_simulator_slot_names_a_callable(name: str) -> None:
    spec = discover()[name]
    assert spec.simulator is not None, f"drivers/{name}: DRIVER names no simulator"
    module, _, attr = spec.simulator.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("name", FOLDERS)
def test_readme_has_the_common_sections(name: str) -> None:
    text = (DRIVERS / name / "README.md").read_text(encoding="utf-8")
    missing = [s for s in README_SECTIONS if s not in text]
    assert not missing, f"drivers/{name}/README.md lacks {missing}"


@pytest.mark.parametrize("name", FOLDERS)
def test_example_validates_inside_a_minimal_site(name: str) -> None:
    example = (DRIVERS / name / "example.yaml").read_text(encoding="utf-8")
    env = {m.group(1): "x" * 16 for m in ENV_REF.finditer(example)}
    result = check_text("site: {id: kartech, name: Test}\n" + example, f"drivers/{name}/example.yaml", discover(),
                        env)
    assert [str(p) for p in result.problems] == []
    assert result.config is not None
    assert {m.driver for m in result.config.machines} == {name}
