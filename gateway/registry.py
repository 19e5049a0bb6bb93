"""Collects the `DRIVER` constant of every folder under drivers/ (explicit constants, not import side effects)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import drivers
from gateway.driver import DriverSpec


def discover() -> dict[str, DriverSpec[Any]]:
    found: dict[str, DriverSpec[Any]] = {}
    for info in sorted(pkgutil.iter_modules(drivers.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"drivers.{info.name}")
        spec = getattr(module, "DRIVER", None)
        if not isinstance(spec, DriverSpec):
            raise TypeError(f"drivers/{info.name}/__init__.py must define DRIVER = DriverSpec(...)")
        if spec.name in found:
            raise TypeError(f"two drivers are named {spec.name!r}")
        found[spec.name] = spec
    return found
