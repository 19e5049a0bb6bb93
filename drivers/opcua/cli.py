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
from pydantic import ValidationError

from drivers.opcua.config import Identity, Security
from drivers.opcua.nodes import format_node, parse_node
from drivers.opcua.security import apply_security, write_certificate
from drivers.opcua.values import ENUMERATION, KNOWN_BASE_TYPES
from gateway.errors import DriverUnavailable

PASSWORD_ENV = "KARTECH_OPCUA_PASSWORD"
MAX_NODES = 5000


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

    b = osub.add_parser("browse", help="print a server's address space with node ids, types and values")
    b.add_argument("endpoint", help="opc.tcp://HOST:PORT")
    b.add_argument("--security", default="None",
                   help="None (default) or POLICY,MODE e.g. Basic256Sha256,SignAndEncrypt")
    b.add_argument("--cert", default=None, help="gateway certificate (for --security other than None)")
    b.add_argument("--key", default=None, help="gateway private key")
    b.add_argument("--trust-dir", default=None, help="directory of trusted server certificates")
    b.add_argument("--trust-on-first-use", action="store_true", help="trust and save an unknown server certificate")
    b.add_argument("--user", default=None, help=f"user name; the password is read from ${PASSWORD_ENV} or asked")
    b.add_argument("--root", default="i=85", help="start node (default i=85, the Objects folder)")
    b.add_argument("--depth", type=int, default=6, help="levels to descend (default 6)")
    b.add_argument("--all", action="store_true", help="include the standard Server object")
    b.add_argument("--yaml", nargs="+", metavar="NODE", default=None,
                   help="print a ready-to-paste `signals:` block for these node ids instead of the tree")
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


def _security(args: argparse.Namespace) -> tuple[Security, Identity]:
    policy, _, mode = str(args.security).partition(",")
    sec: dict[str, Any] = {"policy": policy}
    if mode:
        sec.update(mode=mode, certificate=args.cert, private_key=args.key, trust_dir=args.trust_dir,
                   trust_on_first_use=args.trust_on_first_use)
    ident: dict[str, Any] = {"type": "anonymous"}
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ")
        ident = {"type": "username", "username": args.user, "password": password}
    return Security.model_validate(sec), Identity.model_validate(ident)


async def _browse(args: argparse.Namespace) -> int:
    try:
        security, identity = _security(args)
    except ValidationError as err:
        msgs = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        print(f"kartech opcua browse: --security {args.security}: {msgs}", file=sys.stderr)
        return 2
    client = Client(args.endpoint, timeout=args.timeout)
    await apply_security(client, args.endpoint, security, identity, "browse", args.timeout)
    async with asyncio.timeout(args.timeout * 3):
        await client.connect()
    try:
        namespaces = list(await client.get_namespace_array())
        browser = _Browser(client, namespaces)
        if args.yaml:
            print(await browser.yaml_block(args.yaml))
        else:
            root = parse_node(args.root).resolve(namespaces)
            for line in await browser.tree(root, args.depth, include_server=args.all):
                print(line)
    finally:
        await client.disconnect()
    return 0


@dataclass
class _Var:
    name: str
    node_text: str
    type_name: str
    value: str
    enum_names: list[str]
    base: int | None


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

    async def _variable(self, nid: ua.NodeId, name: str) -> _Var:
        node = self.client.get_node(nid)
        try:
            dv = await node.read_data_value(raise_on_bad_status=False)
            dt_id = await node.read_data_type()
        except ua.UaError as err:
            return _Var(name, format_node(nid, self.namespaces), "?", f"<{err}>", [], None)
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
        return _Var(name, format_node(nid, self.namespaces), type_name, value, enum_names, base)

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

    async def yaml_block(self, node_texts: Sequence[str]) -> str:
        lines = ["signals:"]
        for text in node_texts:
            nid = parse_node(text).resolve(self.namespaces)
            bn = await self.client.get_node(nid).read_browse_name()
            v = await self._variable(nid, str(bn.Name))
            signal = _snake(text.rpartition("=")[2] if "." in text.rpartition("=")[2] else v.name)
            lines.append(f"  {signal}:")
            lines.append(f"    node: \"{v.node_text}\"   # {v.type_name}, now {v.value}")
            if v.enum_names:
                guess = {n: _state_guess(n) for n in v.enum_names}
                lines.append("    map: {" + ", ".join(f"{k}: {g}" for k, g in guess.items() if g) + "}"
                             "   # values -> machine states; edit or remove")
        return "\n".join(lines)


def _snake(text: str) -> str:
    parts = [p for p in re.split(r"[.\s/]+", text) if p]
    # Spindle.Speed -> spindle_speed; cnc-01.ExecutionState -> execution_state (an id is not part of the name)
    tail = "_".join(parts[-2:]) if len(parts) >= 2 and parts[-2].isalpha() else (parts[-1] if parts else "signal")
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", tail).lower()
    return re.sub(r"[^a-z0-9_]+", "_", s).strip("_") or "signal"


_STATE_WORDS = {"executing": "running", "running": "running", "notexecuting": "idle", "idle": "idle",
                "outofservice": "maintenance", "maintenance": "maintenance", "notavailable": "offline",
                "error": "error", "fault": "error", "paused": "paused", "hold": "paused"}


def _state_guess(name: str) -> str | None:
    return _STATE_WORDS.get(name.lower().replace("_", ""))
