"""Load a site YAML file, substitute ${ENV_VARS}, validate, and report every problem with its line.

Problems are reported the way STYLE.md shows, all at once:

    config/site.yaml:41 — machine "cnc-01" (driver opcua)
      endpoint: "http://10.0.3.17:4840" is not an OPC UA address; use opc.tcp://10.0.3.17:4840
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.references import cross_checks as ops_checks
from gateway.config.site import SiteConfig, site_model
from gateway.driver import DriverSpec
from gateway.errors import ConfigError
from gateway.redact import secret_param

Loc = tuple[str | int, ...]
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECRET_KEYS = ("password", "token", "secret", "private_key_password", "api_key", "access_code")
# HTTP headers that carry a credential (webhooks' `headers:`)
SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "x-auth-token", "cookie",
                  "x-access-token")
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?P<userinfo>[^/@\s?#]+)@")
_USER_PASSWORD = re.compile(r"(?P<user>(?:\$\{[^}]*\}|[^:])*)(?::(?P<password>.*))?$")
_URL_QUERY = re.compile(r"[?&;](?P<name>[A-Za-z_-]+)=(?P<value>[^&#\s]*)")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    where: str  # 'machine "cnc-01" (driver opcua)' or 'storage.influxdb'
    key: str
    message: str

    def __str__(self) -> str:
        pos = f"{self.file}:{self.line}" if self.line else self.file
        body = f"{self.key}: {self.message}" if self.key else self.message
        return f"{pos} — {self.where}\n  {body}"


@dataclass(frozen=True)
class CheckResult:
    config: SiteConfig | None
    problems: list[Problem]
    notes: list[Problem] = field(default_factory=list)


class _Doc:
    """YAML data plus the line of every key and list item, and which scalars came from ${ENV} references."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self.from_env: set[Loc] = set()
        self.raw_text: dict[Loc, str] = {}  # scalars with ${ENV} references, as written
        self.missing_env: dict[Loc, list[str]] = {}

    def line_of(self, loc: Loc) -> int | None:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


def _construct(node: yaml.Node, loader: yaml.SafeLoader, doc: _Doc, loc: Loc, env: Mapping[str, str],
               problems: list[tuple[Loc, object, str]]) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (dict, list)):
                problems.append((loc, key, "a key must be a plain word"))
                continue
            sub = (*loc, str(key))
            doc.lines[sub] = key_node.start_mark.line + 1
            if key in out:
                problems.append((sub, key, "appears twice in the same section; the second would win silently"))
            out[key] = _construct(value_node, loader, doc, sub, env, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sub = (*loc, i)
            doc.lines[sub] = item.start_mark.line + 1
            items.append(_construct(item, loader, doc, sub, env, problems))
        return items
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "${" in value:
        missing: list[str] = []

        def sub_env(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        original = value
        value = ENV_REF.sub(sub_env, value)
        doc.from_env.add(loc)
        doc.raw_text[loc] = original
        if missing:
            doc.missing_env[loc] = missing
            return original  # validated as written; the missing variable is reported on its own
    return value


def parse_yaml(text: str, env: Mapping[str, str]) -> tuple[Any, _Doc, list[tuple[Loc, object, str]]]:
    doc = _Doc()
    problems: list[tuple[Loc, object, str]] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, doc, problems
        doc.lines[()] = node.start_mark.line + 1
        return _construct(node, loader, doc, (), env, problems), doc, problems
    finally:
        loader.dispose()


def _fmt(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return text if len(text) <= 60 else text[:57] + "..."
    return json.dumps(value, default=str)


def _where(data: Any, loc: Loc, drivers: Collection[str] = ()) -> tuple[str, Loc]:
    """Split a location into the section a technician recognises and the key path inside it."""
    if len(loc) >= 2 and loc[0] == "machines" and isinstance(loc[1], int):
        machines = data.get("machines") if isinstance(data, dict) else None
        m = machines[loc[1]] if isinstance(machines, list) and loc[1] < len(machines) else None
        if isinstance(m, dict) and m.get("id"):
            drv = f" (driver {m['driver']})" if m.get("driver") in drivers else ""
            return f'machine "{m["id"]}"{drv}', loc[2:]
        return f"machines[{loc[1]}]", loc[2:]
    if len(loc) >= 3 and loc[0] == "mqtt" and loc[1] == "brokers" and isinstance(loc[2], int):
        brokers = data.get("mqtt", {}).get("brokers") if isinstance(data, dict) else None
        b = brokers[loc[2]] if isinstance(brokers, list) and loc[2] < len(brokers) else None
        if isinstance(b, dict) and b.get("id"):
            return f'mqtt broker "{b["id"]}"', loc[3:]
        return f"mqtt.brokers[{loc[2]}]", loc[3:]
    if not loc:
        return "top level", ()
    return str(loc[0]), loc[1:]


def _key(path: Loc) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], path: Loc, specs: Mapping[str, DriverSpec[Any]],
              data: Any) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `path` (for 'did you mean' on unknown keys)."""
    current: Any = model
    node: Any = data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            current = _inner_model(current, node, specs)  # a list item: pick the driver's machine model
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        node = node.get(part) if isinstance(node, dict) else None
        if field is None:
            return None
        current = _inner_model(field.annotation, node, specs)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any, node: Any, specs: Mapping[str, DriverSpec[Any]]) -> Any:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if any(c.__name__ == "MachineBase" for c in annotation.__mro__) and isinstance(node, dict):
            spec = specs.get(str(node.get("driver")))
            return spec.machine_model if spec else annotation
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg, node, specs)
        if found is not None:
            if isinstance(found, type) and issubclass(found, BaseModel) and "version" in found.model_fields \
                    and isinstance(node, dict):
                # discriminated storage unions: pick the member whose literal matches
                for member in get_args(annotation):
                    if isinstance(member, type) and issubclass(member, BaseModel):
                        field = member.model_fields.get("version")
                        lit = get_args(field.annotation) if field is not None else ()
                        if node.get("version") in lit:
                            return member
            return found
    return None


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Drop the union tags pydantic inserts into locations (e.g. 'mqtt' in machines.3.mqtt.broker)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            if isinstance(node, list) and part < len(node):
                out.append(part)
                node = node[part]
            continue
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and part in (node.get("driver"), node.get("type")):
            continue  # a union tag (e.g. "mqtt" in machines.3.mqtt.broker, "threshold" in an alert rule)
        elif isinstance(node, dict) or node is None:
            # a missing key (reported as missing) or an unknown one: keep it as the last part
            out.append(part)
            node = None
    return tuple(out)


def _message(err: Mapping[str, Any], loc: Loc, model: type[SiteConfig], specs: Mapping[str, DriverSpec[Any]],
             data: Any) -> str:
    etype = err["type"]
    value = err.get("input")
    if etype == "extra_forbidden":
        owner = _model_at(model, loc[:-1], specs, data)
        hint = ""
        if owner is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else "; allowed: " + ", ".join(owner.model_fields)
        return f"is not a known key{hint}"
    if etype == "missing":
        owner = _model_at(model, loc[:-1], specs, data)
        desc = ""
        if owner is not None and loc and loc[-1] in owner.model_fields:
            desc = owner.model_fields[str(loc[-1])].description or ""
        return "is required" + (f" — {desc}" if desc else "")
    if etype == "union_tag_invalid":
        ctx = err.get("ctx", {})
        tag = ctx.get("tag")
        if ctx.get("discriminator") == "'driver'":
            close = difflib.get_close_matches(str(tag), list(specs), n=1, cutoff=0.5)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            return f"{_fmt(tag)} is not a known driver; {hint}(known: {', '.join(sorted(specs))})"
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{_fmt(tag)} is not allowed; use one of {expected}"
    if etype == "union_tag_not_found":
        ctx = err.get("ctx", {})
        if ctx.get("discriminator") == "'driver'":
            return f"is required; one of {', '.join(sorted(specs))}"
        return "is required"
    if etype == "literal_error" and loc[-1:] == ("driver",) and loc[:1] == ("machines",):
        close = difflib.get_close_matches(str(value), list(specs), n=1, cutoff=0.5)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        return f"{_fmt(value)} is not a known driver; {hint}(known: {', '.join(sorted(specs))})"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = re.findall(r"'([^']*)'|(\d+)", str(expected))
        names = [a or b for a, b in options]
        close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        return f"{_fmt(value)} is not allowed; use one of {', '.join(names)}{hint}"
    if etype == "string_pattern_mismatch":
        return f"{_fmt(value)} is not valid here; use lower-case letters, digits, '-' and '_' (e.g. fdm-03)"
    if etype == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
        return f"{_fmt(value)} {msg}" if value is not None and not isinstance(value, dict) else msg
    if etype in ("float_parsing", "int_parsing", "float_type", "int_type", "int_from_float"):
        kind = "a whole number" if etype.startswith("int") else "a number"
        return f"{_fmt(value)} is not {kind}"
    if etype in ("bool_parsing", "bool_type"):
        return f"{_fmt(value)} is not true or false"
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{_fmt(value)} is out of range: {str(err['msg']).lower()}"
    if etype in ("dict_type", "model_type"):
        return f"{_fmt(value)} should be a section of keys (key: value lines)"
    if etype == "list_type":
        return f"{_fmt(value)} should be a list (lines starting with '- ')"
    if etype == "too_short":
        return "is empty; it needs at least one entry"
    return f"{_fmt(value)}: {err['msg']}"


def _literal_part(text: str) -> str:
    """What of `text` is written in the file itself: ${VAR} references dropped, ${VAR:-default} kept as default."""
    return ENV_REF.sub(lambda m: m.group(2) or "", text)


def _secret_problems(data: Any, doc: _Doc, loc: Loc = ()) -> list[tuple[Loc, object, str]]:
    """Secrets written into the file, wherever they hide: secret keys (also as a ${VAR:-default}), credential
    headers, user:password@ in URLs, secret-looking query parameters of URLs."""
    out: list[tuple[Loc, object, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            sub = (*loc, str(k))
            raw = doc.raw_text.get(sub, v)
            if str(k) in SECRET_KEYS and isinstance(v, str) and isinstance(raw, str) and v:
                example = f"{k}: ${{{_env_name(loc, str(k))}}}"
                if sub not in doc.from_env:
                    out.append((sub, "***", f"is written literally; write it as ${{ENV_VAR}} so the secret stays "
                                f"out of the file (e.g. {example})"))
                elif _literal_part(raw):
                    out.append((sub, "***", "has a literal default (${VAR:-...}), which puts the secret in the "
                                f"file after all; drop the default (e.g. {example})"))
            elif (loc[-1:] == ("headers",) and str(k).lower() in SECRET_HEADERS and isinstance(raw, str)
                  and _literal_part(raw).strip().lower() not in ("", "bearer", "basic", "token")):
                scheme = "Bearer " if str(k).lower() == "authorization" else ""
                out.append((sub, "***", "carries a credential written literally; take it from the environment "
                            f"(e.g. {k}: {scheme}${{{_env_name(loc[:-1], 'token')}}})"))
            out.extend(_secret_problems(v, doc, sub))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.extend(_secret_problems(v, doc, (*loc, i)))
    elif isinstance(data, str):
        out.extend(_url_secret_problems(doc.raw_text.get(loc, data), loc))
    return out


def _url_secret_problems(raw: str, loc: Loc) -> list[tuple[Loc, object, str]]:
    out: list[tuple[Loc, object, str]] = []
    if "://" not in raw:
        return out
    for m in _URL_USERINFO.finditer(raw):
        split = _USER_PASSWORD.match(m["userinfo"])  # the ':' between user and password, not one inside ${..:-..}
        user, password = (split["user"], split["password"] or "") if split else (m["userinfo"], "")
        if _literal_part(password) or (not password and _literal_part(user)):
            out.append((loc, "***", "has credentials in the URL (user:password@), where logs and error texts "
                        "would show them; give them in their own keys as ${ENV_VAR} (username:, password:)"))
            break
    for m in _URL_QUERY.finditer(raw):
        if secret_param(m["name"]) and _literal_part(m["value"]):
            out.append((loc, "***", f"has a secret in the URL's query ({m['name']}=...); take it from the "
                        f"environment (e.g. {m['name']}=${{{_env_name(loc, m['name'])}}})"))
            break
    return out


def _env_name(loc: Loc, key: str) -> str:
    words = [str(p) for p in loc if isinstance(p, str) and p not in ("brokers", "machines", "tokens")]
    return "_".join(["KARTECH", *words, key]).upper().replace("-", "_")


def check_text(text: str, filename: str, specs: Mapping[str, DriverSpec[Any]], env: Mapping[str, str] | None = None,
               *, require_env: bool = True) -> CheckResult:
    """Validate a site file: the config (None if there are problems), every problem, and notes.

    With `require_env=False` (check-config on a machine other than the gateway) unset ${VARS} are not
    problems but notes.
    """
    env = os.environ if env is None else env
    try:
        data, doc, raw = parse_yaml(text, env)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(err, "problem", None) or str(err)
        return CheckResult(None, [Problem(filename, line, "YAML syntax", "", f"{what}; check indentation and quotes")])
    if not isinstance(data, dict):
        return CheckResult(None, [Problem(filename, 1, "top level", "",
                                          "the file must be a YAML mapping with site: and machines:")])
    # top-level keys starting with x- hold YAML anchors for reuse (as in Docker Compose); they are not config
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    raw += _secret_problems(data, doc)
    model = site_model(specs)
    cfg: SiteConfig | None = None
    try:
        cfg = model.model_validate(data)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            loc = _strip_tags(tuple(e["loc"]), data)
            if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
                # point at the tag key itself (driver:, version:), not at the whole section
                loc = (*loc, str(e.get("ctx", {}).get("discriminator", "")).strip("'"))
            if loc in doc.missing_env:
                continue  # reported below (or noted) as an unset variable
            raw.append((loc, e.get("input"), _message(e, loc, model, specs, data)))
    if require_env:
        for loc, names in doc.missing_env.items():
            for name in names:
                raw.append((loc, f"${{{name}}}", f"environment variable {name} is not set; export it before start"))
    raw += _duplicate_ids(data)  # from the raw data: reported with the schema problems, not only once they are fixed
    if cfg is not None:
        raw += _cross_checks(cfg, specs)
    notes = [
        Problem(filename, doc.line_of(loc), _where(data, loc, specs)[0], _key(_where(data, loc, specs)[1]),
                f"uses environment variable {name}, which is not set here; set it where the gateway runs")
        for loc, names in doc.missing_env.items() for name in names
    ] if not require_env else []
    problems = []
    seen: set[tuple[Loc, str]] = set()
    for loc, _value, message in raw:
        if (loc, message) in seen:
            continue
        seen.add((loc, message))
        where, key_path = _where(data, loc, specs)
        problems.append(Problem(filename, doc.line_of(loc), where, _key(key_path), message))
    problems.sort(key=lambda p: (p.line or 0))
    return CheckResult(cfg if not problems else None, problems, notes)


def _duplicate_ids(data: Mapping[str, Any]) -> list[tuple[Loc, object, str]]:
    """Machine and broker ids used twice, read from the raw data so that machines with other problems count."""
    def ids(items: object) -> list[tuple[int, str]]:
        if not isinstance(items, list):
            return []
        return [(i, item["id"]) for i, item in enumerate(items)
                if isinstance(item, dict) and isinstance(item.get("id"), str)]

    out: list[tuple[Loc, object, str]] = []
    first: dict[str, int] = {}
    for i, mid in ids(data.get("machines")):
        if mid in first:
            out.append((("machines", i, "id"), mid, f"{_fmt(mid)} is already used by machines[{first[mid]}]; "
                        "machine ids must be unique"))
        first.setdefault(mid, i)
    mqtt = data.get("mqtt")
    broker_ids: set[str] = set()
    for i, bid in ids(mqtt.get("brokers") if isinstance(mqtt, dict) else None):
        if bid in broker_ids:
            out.append((("mqtt", "brokers", i, "id"), bid, f"{_fmt(bid)} is used by two brokers"))
        broker_ids.add(bid)
    return out


def _cross_checks(cfg: SiteConfig, specs: Mapping[str, DriverSpec[Any]]) -> list[tuple[Loc, object, str]]:
    out: list[tuple[Loc, object, str]] = []
    for name, spec in specs.items():
        if spec.check is not None:
            mine = [(i, m) for i, m in enumerate(cfg.machines) if m.driver == name]
            out.extend(spec.check(mine, cfg.section(spec.section)))
    out.extend(ops_checks(cfg))
    return out


def load(path: str | Path, specs: Mapping[str, DriverSpec[Any]], env: Mapping[str, str] | None = None) -> SiteConfig:
    """Load and validate a site file; raise ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read the config file: {err}") from err
    result = check_text(text, str(path), specs, env)
    if result.problems or result.config is None:
        raise ConfigError(report(result.problems, started=False))
    return result.config


def report(problems: list[Problem], *, started: bool = False) -> str:
    files = {p.file for p in problems}
    n = len(problems)
    tail = f"{n} problem{'s' if n != 1 else ''} in {len(files)} file{'s' if len(files) != 1 else ''}."
    lines = [str(p) for p in problems]
    lines.append(tail if started else f"Gateway not started: {tail}")
    return "\n".join(lines)
