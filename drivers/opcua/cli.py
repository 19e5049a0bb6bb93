"""`kartech opcua cert` (the gateway's application certificate) and `kartech opcua browse` (discovery)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.node import Node
from pydantic import ValidationError

from drivers.opcua.config import Identity, Security
from drivers.opcua.nodes import format_node, parse_node
from drivers.opcua.security import apply_security, write_certificate
from drivers.opcua.values import ENUMERATION, KNOWN_BASE_TYPES
from gateway.errors import DriverUnavailable
from gateway.units import ALIASES, CANONICAL

PASSWORD_ENV = "KARTECH_OPCUA_PASSWORD"
MAX_NODES = 5000
DEFAULT_CERT = "pki/own/kartech-gateway.der"  # where `kartech opcua cert` puts them
DEFAULT_KEY = "pki/own/kartech-gateway.key.pem"
DEFAULT_TRUST = "pki/trusted"
# most secure first: encryption beats signing beats nothing, then the stronger policy
_MODE_RANK = {"SignAndEncrypt": 2, "Sign": 1, "None": 0}
_POLICY_RANK = {"Aes256_Sha256_RsaPss": 3, "Aes128_Sha256_RsaOaep": 2, "Basic256Sha256": 1, "None": 0}


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("opcua", help="OPC UA tools: the gateway certificate and browsing a server")
    osub = p.add_subparsers(dest="opcua_command", required=True)

    c = osub.add_parser("cert", help="create the gateway's OPC UA application certificate (self-signed)")
    c.add_argument("--out", default="pki/own", help="directory for <name>.der and <name>.key.pem (default pki/own)")
    c.add_argument("--name", default="kartech-gateway", help="file name stem (default kartech-gateway)")
    c.add_argument("--uri", default=None, help="application URI (default urn:kartech:gateway:<hostname>)")
    c.add_argument("--host", action="append", default=None,
                   help="host name or address to put in the certificate (repeatable; default: this host)")
    c.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    c.add_argument("--force", action="store_true", help="replace existing files")
    c.set_defaults(func=cmd_cert)

    b = osub.add_parser("browse", help="print a paste-ready machine block (endpoint, security, signals with units) "
                        "for a server's variables")
    b.add_argument("endpoint", help="opc.tcp://HOST:PORT")
    b.add_argument("--security", default="auto",
                   help="auto (default: the most secure policy and mode the server offers), None, or POLICY,MODE "
                        "e.g. Basic256Sha256,SignAndEncrypt")
    b.add_argument("--cert", default=None, help=f"gateway certificate for a secure policy (default {DEFAULT_CERT})")
    b.add_argument("--key", default=None, help=f"gateway private key (default {DEFAULT_KEY})")
    b.add_argument("--trust-dir", default=None,
                   help=f"directory of trusted server certificates (default {DEFAULT_TRUST})")
    b.add_argument("--trust-on-first-use", action="store_true", help="trust and save an unknown server certificate")
    b.add_argument("--user", default=None, help=f"user name; the password is read from ${PASSWORD_ENV} or asked")
    b.add_argument("--root", default="i=85", help="start node (default i=85, the Objects folder)")
    b.add_argument("--depth", type=int, default=6, help="levels to descend (default 6)")
    b.add_argument("--all", action="store_true", help="include the standard Server object")
    b.add_argument("--yaml", nargs="+", metavar="NODE", default=None,
                   help="only these node ids in the `signals:` block (default: every variable below --root)")
    b.add_argument("--tree", action="store_true", help="print the address-space tree instead of the block")
    b.add_argument("--timeout", type=float, default=5.0, help="request timeout in seconds (default 5)")
    b.set_defaults(func=cmd_browse)


def cmd_cert(args: argparse.Namespace) -> int:
    try:
        files = write_certificate(Path(args.out), name=args.name, application_uri=args.uri, hostnames=args.host,
                                  days=args.days, force=args.force)
    except (FileExistsError, OSError) as err:
        print(f"kartech opcua cert: {err}", file=sys.stderr)
        return 1
    print(f"certificate: {files.certificate}\nprivate key: {files.private_key} (keep it secret; mode 0600)\n"
          f"application URI: {files.application_uri}\n\n"
          "Give the certificate to each server's administrator to trust it, then in the site file:\n"
          "    security:\n"
          "      policy: Basic256Sha256\n"
          "      mode: SignAndEncrypt\n"
          f"      certificate: {files.certificate.resolve()}\n"
          f"      private_key: {files.private_key.resolve()}\n"
          f"      trust_dir: {files.certificate.resolve().parent.parent / 'trusted'}")
    return 0


def cmd_browse(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_browse(args))
    except DriverUnavailable as err:
        print(f"kartech opcua browse: {err}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, ua.UaError) as err:
        print(f"kartech opcua browse: {args.endpoint}: {err or type(err).__name__}", file=sys.stderr)
        return 1


def _identity(args: argparse.Namespace) -> Identity:
    ident: dict[str, Any] = {"type": "anonymous"}
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ")
        ident = {"type": "username", "username": args.user, "password": password}
    return Identity.model_validate(ident)


def _security(args: argparse.Namespace, policy: str, mode: str) -> Security:
    sec: dict[str, Any] = {"policy": policy}
    if mode and policy != "None":
        sec.update(mode=mode, certificate=args.cert or DEFAULT_CERT, private_key=args.key or DEFAULT_KEY,
                   trust_dir=args.trust_dir or DEFAULT_TRUST, trust_on_first_use=args.trust_on_first_use)
    return Security.model_validate(sec)


async def _offered(endpoint: str, timeout_s: float) -> list[tuple[str, str]]:
    """(policy, mode) pairs the server offers that the gateway supports, most secure first."""
    async with asyncio.timeout(timeout_s * 2):
        endpoints = await Client(endpoint, timeout=timeout_s).connect_and_get_server_endpoints()
    pairs = {(e.SecurityPolicyUri.rpartition("#")[2], e.SecurityMode.name.rstrip("_")) for e in endpoints}
    supported = [p for p in pairs if p[0] in _POLICY_RANK and p[1] in _MODE_RANK]
    return sorted(supported, key=lambda p: (_MODE_RANK[p[1]], _POLICY_RANK[p[0]]), reverse=True)


async def _choose_security(args: argparse.Namespace) -> tuple[Security, str]:
    """The security to browse with, and a comment line saying why."""
    if str(args.security) != "auto":
        policy, _, mode = str(args.security).partition(",")
        return _security(args, policy, mode), f"security {args.security}, as asked"
    offered = await _offered(args.endpoint, args.timeout)
    if not offered:
        raise DriverUnavailable(f"{args.endpoint} offers no security policy the gateway supports "
                                f"({', '.join(_POLICY_RANK)})")
    policy, mode = offered[0]
    listed = ", ".join(f"{p}/{m}" for p, m in offered)
    why = f"security {policy}/{mode}: the most secure of {listed}"
    if policy == "None":
        return _security(args, "None", ""), why
    sec = _security(args, policy, mode)
    files = [f for f in (sec.certificate, sec.private_key) if f is not None]
    missing = [f for f in files if not await asyncio.to_thread(Path(f).is_file)]
    if missing:
        raise DriverUnavailable(
            f"{args.endpoint} offers {policy}/{mode} (its most secure), which needs the gateway's certificate: "
            f"{' and '.join(missing)} not found; create it with `kartech opcua cert --out {Path(DEFAULT_CERT).parent}`"
            ", pass --cert and --key, or browse without security with --security None")
    return sec, why


async def _browse(args: argparse.Namespace) -> int:
    try:
        identity = _identity(args)
        security, why = await _choose_security(args)
    except ValidationError as err:
        msgs = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        print(f"kartech opcua browse: --security {args.security}: {msgs}", file=sys.stderr)
        return 2
    client = Client(args.endpoint, timeout=args.timeout)
    await apply_security(client, args.endpoint, security, identity, "browse", args.timeout, warn_insecure=False)
    async with asyncio.timeout(args.timeout * 3):
        await client.connect()
    try:
        namespaces = list(await client.get_namespace_array())
        browser = _Browser(client, namespaces)
        root = parse_node(args.root).resolve(namespaces)
        if args.tree:
            for line in await browser.tree(root, args.depth, include_server=args.all):
                print(line)
            return 0
        nodes = ([parse_node(text).resolve(namespaces) for text in args.yaml] if args.yaml else
                 await browser.variables(root, args.depth, include_server=args.all))
        print(f"# {args.endpoint}: {why}")
        print(f"endpoint: {args.endpoint}")
        print(f"security: {_flow(security)}")
        print(await browser.yaml_block(nodes))
    finally:
        await client.disconnect()
    return 0


def _flow(security: Security) -> str:
    """The security settings as one YAML flow mapping, file paths made absolute."""
    parts = [f"policy: {security.policy}"]
    if security.mode is not None:
        parts.append(f"mode: {security.mode}")
    for key in ("certificate", "private_key", "trust_dir"):
        value = getattr(security, key)
        if value is not None:
            parts.append(f"{key}: {json.dumps(str(Path(value).resolve()))}")
    return "{" + ", ".join(parts) + "}"


@dataclass
class _Var:
    name: str
    node_text: str
    type_name: str
    value: str
    enum_names: list[str]
    base: int | None
    rank: int = -1
    unit: str | None = None
    unit_note: str = ""


class _Browser:
    def __init__(self, client: Client, namespaces: Sequence[str]) -> None:
        self.client = client
        self.namespaces = namespaces
        self.count = 0
        self._type_names: dict[ua.NodeId, tuple[str, int | None, list[str]]] = {}

    async def tree(self, root: ua.NodeId, depth: int, *, include_server: bool) -> list[str]:
        lines = [f"{await self._name(root)}  {format_node(root, self.namespaces)}"]
        await self._walk(root, 1, depth, include_server, lines)
        if self.count >= MAX_NODES:
            lines.append(f"... stopped after {MAX_NODES} nodes; use --root and --depth to look further")
        return lines

    async def _name(self, nid: ua.NodeId) -> str:
        bn = await self.client.get_node(nid).read_browse_name()
        return str(bn.Name)

    async def _walk(self, nid: ua.NodeId, level: int, depth: int, include_server: bool, lines: list[str]) -> None:
        if level > depth or self.count >= MAX_NODES:
            return
        refs = await self.client.get_node(nid).get_references(
            refs=ua.ObjectIds.HierarchicalReferences, direction=ua.BrowseDirection.Forward,
            nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable)
        for ref in sorted(refs, key=lambda r: str(r.BrowseName.Name)):
            if not include_server and ref.NodeId == ua.NodeId(ua.ObjectIds.Server):
                continue
            if ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasProperty):
                continue  # EngineeringUnits, EURange, EnumStrings: about a variable, not one to read
            self.count += 1
            if self.count > MAX_NODES:
                return
            indent = "  " * level
            text = format_node(ref.NodeId, self.namespaces)
            if ref.NodeClass == ua.NodeClass.Variable:
                v = await self._variable(ref.NodeId, str(ref.BrowseName.Name))
                lines.append(f"{indent}{v.name}  {text}  {v.type_name} = {v.value}")
            else:
                lines.append(f"{indent}{ref.BrowseName.Name}/  {text}")
            await self._walk(ref.NodeId, level + 1, depth, include_server, lines)

    async def variables(self, root: ua.NodeId, depth: int, *, include_server: bool) -> list[ua.NodeId]:
        """Every variable below `root` (not properties), in browse order."""
        out: list[ua.NodeId] = []
        await self._collect(root, 1, depth, include_server, out, set())
        return out

    async def _collect(self, nid: ua.NodeId, level: int, depth: int, include_server: bool, out: list[ua.NodeId],
                       seen: set[ua.NodeId]) -> None:
        if level > depth or len(seen) >= MAX_NODES:
            return
        refs = await self.client.get_node(nid).get_references(
            refs=ua.ObjectIds.HierarchicalReferences, direction=ua.BrowseDirection.Forward,
            nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable)
        for ref in sorted(refs, key=lambda r: str(r.BrowseName.Name)):
            if ref.NodeId in seen or ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasProperty):
                continue
            if not include_server and ref.NodeId == ua.NodeId(ua.ObjectIds.Server):
                continue
            seen.add(ref.NodeId)
            if ref.NodeClass == ua.NodeClass.Variable:
                out.append(ref.NodeId)
            await self._collect(ref.NodeId, level + 1, depth, include_server, out, seen)

    async def _unit(self, node: Node) -> tuple[str | None, str]:
        """The gateway unit of a variable's EngineeringUnits property (EUInformation), and a note if unknown."""
        try:
            eu = await (await node.get_child("0:EngineeringUnits")).read_value()
        except ua.UaError:
            return None, ""
        if not isinstance(eu, ua.EUInformation):
            return None, ""
        shown = eu.DisplayName.Text if eu.DisplayName is not None else None
        unit = unit_of(eu.UnitId, shown)
        return unit, ("" if unit else f"unit {shown or eu.UnitId!r} unknown to the gateway")

    async def _variable(self, nid: ua.NodeId, name: str) -> _Var:
        node = self.client.get_node(nid)
        try:
            dv = await node.read_data_value(raise_on_bad_status=False)
            dt_id = await node.read_data_type()
            rank = await node.read_value_rank()
        except ua.UaError as err:
            return _Var(name, format_node(nid, self.namespaces), "?", f"<{err}>", [], None)
        unit, unit_note = await self._unit(node)
        type_name, base, enum_names = await self._type(dt_id)
        raw = dv.Value.Value if dv.Value is not None else None
        if dv.StatusCode is not None and not dv.StatusCode.is_good():
            value = f"<{dv.StatusCode.name}>"
        elif isinstance(raw, int) and not isinstance(raw, bool) and enum_names and 0 <= raw < len(enum_names):
            value = f"{raw} ({enum_names[raw]})"
        elif isinstance(raw, ua.LocalizedText):
            value = json.dumps(raw.Text, ensure_ascii=False)
        elif isinstance(raw, str):
            value = json.dumps(raw, ensure_ascii=False)
        else:
            value = str(raw)
        if len(value) > 80:
            value = value[:77] + "..."
        return _Var(name, format_node(nid, self.namespaces), type_name, value, enum_names, base, rank, unit,
                    unit_note)

    async def _type(self, dt_id: ua.NodeId) -> tuple[str, int | None, list[str]]:
        if dt_id in self._type_names:
            return self._type_names[dt_id]
        name = str((await self.client.get_node(dt_id).read_browse_name()).Name)
        base: int | None = None
        cur = dt_id
        for _ in range(12):
            if cur.NamespaceIndex == 0 and cur.Identifier in KNOWN_BASE_TYPES:
                base = int(cur.Identifier)
                break
            refs = await self.client.get_node(cur).get_references(refs=ua.ObjectIds.HasSubtype,
                                                                  direction=ua.BrowseDirection.Inverse)
            if not refs:
                break
            cur = refs[0].NodeId
        names: list[str] = []
        if base == ENUMERATION:
            try:
                definition = await self.client.get_node(dt_id).read_data_type_definition()
                if isinstance(definition, ua.EnumDefinition):
                    names = [str(f.Name) for f in sorted(definition.Fields, key=lambda f: int(f.Value))]
            except ua.UaError:
                names = []
        self._type_names[dt_id] = (name, base, names)
        return name, base, names

    async def yaml_block(self, nodes: Sequence[ua.NodeId]) -> str:
        lines = ["signals:"]
        names: set[str] = set()
        for nid in nodes:
            bn = await self.client.get_node(nid).read_browse_name()
            v = await self._variable(nid, str(bn.Name))
            if v.base is None or v.base not in KNOWN_BASE_TYPES or v.rank >= 0:
                why = "an array" if v.rank >= 0 else f"of type {v.type_name}"
                lines.append(f"  # {v.node_text} is {why}: not read as one value, left out")
                continue
            signal = base = _snake(v.node_text.rpartition("=")[2] if "." in v.node_text.rpartition("=")[2]
                                   else v.name)
            k = 2
            while signal in names:
                signal, k = f"{base}_{k}", k + 1
            names.add(signal)
            fields = [f"node: {json.dumps(v.node_text, ensure_ascii=False)}"]
            if v.unit:
                fields.append(f"unit: {json.dumps(v.unit, ensure_ascii=False)}")
            note = f"{v.type_name}, now {v.value}" + (f"; {v.unit_note}" if v.unit_note else "")
            if v.enum_names:  # machine states come from state rules on these values (docs/operations.md)
                note += f"; values {', '.join(v.enum_names)}"
            lines.append(f"  {signal}: {{{', '.join(fields)}}}   # {note}")
        return "\n".join(lines)


def _snake(text: str) -> str:
    parts = [p for p in re.split(r"[.\s/]+", text) if p]
    # Spindle.Speed -> spindle_speed; cnc-01.ExecutionState -> execution_state (an id is not part of the name)
    tail = "_".join(parts[-2:]) if len(parts) >= 2 and parts[-2].isalpha() else (parts[-1] if parts else "signal")
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", tail).lower()
    return re.sub(r"[^a-z0-9_]+", "_", s).strip("_") or "signal"


# UNECE Rec 20 common codes (EUInformation.UnitId, OPC 10000-8 5.6.3) of the units the gateway knows
_UNECE = {"CEL": "degC", "FAH": "degF", "KEL": "K", "P1": "%", "WTT": "W", "KWT": "kW", "WHR": "Wh", "KWH": "kWh",
          "VLT": "V", "AMP": "A", "HTZ": "Hz", "RPM": "rpm", "MMT": "mm", "MTR": "m", "KMT": "km", "C16": "mm/s",
          "H81": "mm/min", "2X": "m/min", "GRM": "g", "KGM": "kg", "MGM": "mg", "TNE": "t", "PAL": "Pa",
          "KPA": "kPa", "MPA": "MPa", "BAR": "bar", "MBR": "mbar", "59": "ppm", "61": "ppb", "SEC": "s",
          "C26": "ms", "MIN": "min", "HUR": "h", "LUX": "lux", "2N": "dB", "MQH": "m3/h", "L2": "l/min",
          "NEW": "N", "NU": "Nm", "MMQ": "mm3", "CMQ": "cm3", "MLT": "ml", "LTR": "l", "2Z": "mV", "4K": "mA",
          "KVA": "kVA", "D54": "var", "D48": "VA", "C62": "count"}


def unit_of(unit_id: int | None, display: str | None) -> str | None:
    """A gateway unit for an EUInformation: by its UNECE code, else by its display name; None if unknown."""
    if unit_id is not None and unit_id > 0:
        code = unit_id.to_bytes(4, "big").lstrip(b"\0").decode("ascii", "replace")
        if code in _UNECE:
            return _UNECE[code]
    if display:
        text = display.strip()
        if text in CANONICAL:
            return text
        low = text.lower()
        return ALIASES.get(low) or next((u for u in CANONICAL if u.lower() == low), None)
    return None
