"""JSON Schema of site files, generated from the same pydantic models that validate them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.config.site import site_model
from gateway.driver import DriverSpec


def schema_text(specs: Mapping[str, DriverSpec[Any]]) -> str:
    schema = site_model(specs).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Kartech Gateway site configuration"
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
