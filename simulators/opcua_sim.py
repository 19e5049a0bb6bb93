"""Simulated OPC UA machines: an asyncua server per endpoint, in its own thread and event loop, with faults.

Address space (namespace URIs never change; their indexes may, see `restart(reorder_namespaces=True)`):

    Objects/<machine id>                            nsu=urn:kartech:sim:cnc;s=<id>   (a CNC mill)
        Spindle/Speed  Double rpm                   s=<id>.Spindle.Speed
        Spindle/Load   Double %                     s=<id>.Spindle.Load
        FeedRate       Double mm/min                s=<id>.FeedRate
        ProgramName    String                       s=<id>.ProgramName
        PartCounter    UInt32                       s=<id>.PartCounter
        ExecutionState MachineryExecutionState enum s=<id>.ExecutionState  (NotAvailable, OutOfService,
                                                                            NotExecuting, Executing)
        AlarmCode      UInt32 (0 = none)            s=<id>.AlarmCode
    Objects/<machine id>                            nsu=urn:kartech:sim:furnace;s=<id>   (a lab furnace)
        Temperature, Setpoint  Double degC; HeaterPower Double %; DoorOpen Boolean; Programme String;
        State String (running | idle)

Endpoints: security policy None and/or Basic256Sha256, Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss (Sign and
SignAndEncrypt), anonymous and/or username identities. Faults: restart (optionally with namespaces registered in
another order), freeze values, bad status codes, drop every connection, stall the server (it stops answering).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.structures104 import new_enum
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulators.dynamics import Furnace, Model
from simulators.opcua_models import EXECUTION_STATES, Cnc

log = logging.getLogger(__name__)

CNC_NS = "urn:kartech:sim:cnc"
FURNACE_NS = "urn:kartech:sim:furnace"
SPARE_NS = "urn:kartech:sim:spare"
BULK_NS = "urn:kartech:sim:bulk"  # extra_variables of a server without machines: s=Bulk.V<i>
SIM_APP_URI = "urn:kartech:sim:server"
T = TypeVar("T")

Kind = Literal["cnc", "furnace"]
SecurityChoice = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]

_POLICY_TYPES: dict[str, list[ua.SecurityPolicyType]] = {
    "None": [ua.SecurityPolicyType.NoSecurity],
    "Basic256Sha256": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign],
    "Aes128_Sha256_RsaOaep": [ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
                              ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign],
    "Aes256_Sha256_RsaPss": [ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
                             ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign],
}

# signal of the model -> (browse path below the machine object, OPC UA variant type)
CNC_NODES: dict[str, tuple[str, ua.VariantType]] = {
    "spindle_speed": ("Spindle.Speed", ua.VariantType.Double),
    "spindle_load": ("Spindle.Load", ua.VariantType.Double),
    "feed_rate": ("FeedRate", ua.VariantType.Double),
    "program": ("ProgramName", ua.VariantType.String),
    "part_count": ("PartCounter", ua.VariantType.UInt32),
    "execution": ("ExecutionState", ua.VariantType.Int32),
    "alarm_code": ("AlarmCode", ua.VariantType.UInt32),
}
FURNACE_NODES: dict[str, tuple[str, ua.VariantType]] = {
    "temperature": ("Temperature", ua.VariantType.Double),
    "setpoint": ("Setpoint", ua.VariantType.Double),
    "heater_pct": ("HeaterPower", ua.VariantType.Double),
    "door_open": ("DoorOpen", ua.VariantType.Boolean),
    "programme": ("Programme", ua.VariantType.String),
    "state": ("State", ua.VariantType.String),
}

# signal -> (UNECE Rec 20 common code, display name): the variable's EngineeringUnits property (EUInformation)
ENGINEERING_UNITS: dict[str, tuple[str, str]] = {
    "spindle_speed": ("RPM", "r/min"), "spindle_load": ("P1", "%"), "feed_rate": ("H81", "mm/min"),
    "temperature": ("CEL", "°C"), "setpoint": ("CEL", "°C"), "heater_pct": ("P1", "%"),
}
UNECE_NS = "http://www.opcfoundation.org/UA/units/un/cefact"


def unece_id(code: str) -> int:
    """EUInformation.UnitId of a UNECE common code: its ASCII bytes as one number (Part 8, 5.6.3)."""
    return int.from_bytes(code.encode("ascii"), "big")


def namespace_of(kind: Kind) -> str:
    return CNC_NS if kind == "cnc" else FURNACE_NS


def node_id(kind: Kind, machine_id: str, signal: str) -> str:
    """The `nsu=...;s=...` node id of a simulated signal, as a site config writes it."""
    nodes = CNC_NODES if kind == "cnc" else FURNACE_NODES
    return f"nsu={namespace_of(kind)};s={machine_id}.{nodes[signal][0]}"


class _Users:
    """Username/password check for the simulator (asyncua user manager protocol)."""

    def __init__(self, users: Mapping[str, str], allow_anonymous: bool) -> None:
        self.users = dict(users)
        self.allow_anonymous = allow_anonymous

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None:  # a user name token (the channel's certificate may come along: not a login)
            return User(role=UserRole.User) if self.users.get(username) == password else None
        if certificate is not None or self.allow_anonymous:
            return User(role=UserRole.User)
        return None


@dataclass
class SimMachine:
    id: str
    kind: Kind
    model: Model
    nodes: dict[str, Node] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


class OpcuaSimServer:
    """One simulated OPC UA server with one or more machines; thread-safe control methods."""

    def __init__(self, machines: Sequence[tuple[str, Kind]], *, host: str = "127.0.0.1", port: int = 0,
                 security: Sequence[SecurityChoice] = ("None",), certificate: bytes | None = None,
                 private_key: bytes | None = None, users: Mapping[str, str] | None = None,
                 allow_anonymous: bool = True, interval_s: float = 0.5, seed: int = 1,
                 extra_variables: int = 0, trusted_clients: Sequence[bytes] | None = None) -> None:
        self.host = host
        self.port = port
        self.security = tuple(security)
        if any(s != "None" for s in self.security) and not (certificate and private_key):
            raise ValueError("secure endpoints need the server's certificate and private_key")
        self.certificate, self.private_key = certificate, private_key
        self.users = dict(users or {})
        self.allow_anonymous = allow_anonymous
        self.interval_s = interval_s
        self.extra_variables = extra_variables
        # DER certificates of the clients this server trusts (None: any); others are refused at CreateSession
        # with BadCertificateUntrusted, as a server whose administrator has not trusted the gateway yet does
        self.trusted_clients = None if trusted_clients is None else {bytes(c) for c in trusted_clients}
        self.refused_clients = 0
        self.machines: list[SimMachine] = []
        for mid, kind in machines:
            pick = random.Random(f"{seed}:{mid}")
            model: Model = (Cnc(seed=pick.randrange(2**32), start_offset_s=pick.uniform(0, 200)) if kind == "cnc"
                            else Furnace(seed=pick.randrange(2**32), start_offset_s=pick.uniform(0.0, 3 * 3600.0)))
            self.machines.append(SimMachine(mid, kind, model))
        self.frozen = False
        self.bad: dict[tuple[str, str], ua.StatusCode] = {}  # (machine, signal) -> status to report
        self.restarts = 0
        self.updates = 0
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._extra: list[Node] = []

    # --- control (from any thread) -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        """Start the thread and the server; returns the endpoint once it listens."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=f"opcua-sim:{self.port}",
                                        daemon=True)
        self._thread.start()
        ready.result(timeout_s)
        self._call(self._start_server(reorder=False), timeout_s)
        return self.endpoint

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._stop_server(), 15.0)
        with contextlib.suppress(Exception):
            self._call(_cancel_others(), 15.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15.0)
        self._thread = None
        self._loop = None

    def restart(self, *, reorder_namespaces: bool = False, down_s: float = 0.0) -> None:
        """Stop the server (every client loses its session), wait `down_s`, start it again on the same port."""
        self._call(self._stop_server(), 15.0)
        if down_s:
            time.sleep(down_s)
        self._call(self._start_server(reorder=reorder_namespaces), 30.0)
        self.restarts += 1

    def go_down(self) -> None:
        """Stop the server and leave it stopped (until `come_up`)."""
        self._call(self._stop_server(), 15.0)

    def come_up(self, *, reorder_namespaces: bool = False) -> None:
        self._call(self._start_server(reorder=reorder_namespaces), 30.0)
        self.restarts += 1

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) changing values; the server keeps answering."""
        self.frozen = frozen

    def set_bad(self, machine_id: str, signal: str, status: str | None = "BadSensorFailure") -> None:
        """Report `signal` with this status code (the value stays a number on the wire); None restores it."""
        if status is None:
            self.bad.pop((machine_id, signal), None)
        else:
            self.bad[(machine_id, signal)] = ua.StatusCode(getattr(ua.StatusCodes, status))

    def drop_connections(self) -> None:
        """Close every client's TCP connection; the server keeps running."""
        assert self._loop is not None
        self._call(self._drop(), 10.0)

    def stall(self, seconds: float) -> None:
        """Freeze the server's event loop: connections stay open but nothing is answered (a hung PLC)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(time.sleep, seconds)

    def value(self, machine_id: str, signal: str) -> Any:
        """The last value written for a signal (for tests)."""
        return next(m for m in self.machines if m.id == machine_id).values.get(signal)

    def step_now(self) -> None:
        """Write one update at once (tests use this instead of waiting for the next tick)."""
        self._call(self._update(), 10.0)

    # --- the server thread ---------------------------------------------------------------------------------
    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start_server(self, *, reorder: bool) -> None:
        server = Server(user_manager=_Users(self.users, self.allow_anonymous))
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}")
        server.set_server_name("Kartech simulated machines")
        await server.set_application_uri(SIM_APP_URI)
        policies = [p for s in self.security for p in _POLICY_TYPES[s]]
        server.set_security_policy(policies)
        tokens: list[type] = [ua.UserNameIdentityToken] if self.users else []
        if self.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if any(s != "None" for s in self.security):
            tokens.append(ua.X509IdentityToken)
        server.set_identity_tokens(tokens)
        if self.trusted_clients is not None:
            server.set_certificate_validator(self._validate_client)
        if self.certificate and self.private_key:
            await server.load_certificate(self.certificate, format=_format(self.certificate))
            await server.load_private_key(self.private_key, format=_format(self.private_key))
        kinds = list(dict.fromkeys(m.kind for m in self.machines))
        uris = [namespace_of(k) for k in kinds] or [BULK_NS]
        if reorder:  # another order than the last run, with a namespace in front: every index moves
            uris = [SPARE_NS, *reversed(uris)] if (self.restarts % 2 == 0) else [*uris, SPARE_NS]
        idx = {uri: await server.register_namespace(uri) for uri in uris}
        enum_type: ua.NodeId | None = None
        if "cnc" in kinds:
            enum_node = await new_enum(server, idx[CNC_NS], "MachineryExecutionState", list(EXECUTION_STATES))
            enum_type = enum_node.nodeid
        objects = server.nodes.objects
        for m in self.machines:
            ns = idx[namespace_of(m.kind)]
            obj = await objects.add_object(ua.NodeId(m.id, ns), ua.QualifiedName(m.id, ns))
            nodes = CNC_NODES if m.kind == "cnc" else FURNACE_NODES
            parents: dict[str, Node] = {"": obj}
            for signal, (path, vtype) in nodes.items():
                parent_path, _, leaf = path.rpartition(".")
                if parent_path not in parents:
                    parents[parent_path] = await obj.add_object(ua.NodeId(f"{m.id}.{parent_path}", ns),
                                                                ua.QualifiedName(parent_path, ns))
                initial = _initial(vtype)
                var = await parents[parent_path].add_variable(
                    ua.NodeId(f"{m.id}.{path}", ns), ua.QualifiedName(leaf, ns), ua.Variant(initial, vtype),
                    datatype=enum_type if signal == "execution" else None)
                m.nodes[signal] = var
                if signal in ENGINEERING_UNITS:
                    code, shown = ENGINEERING_UNITS[signal]
                    eu = ua.EUInformation(NamespaceUri=UNECE_NS, UnitId=unece_id(code),
                                          DisplayName=ua.LocalizedText(shown), Description=ua.LocalizedText(shown))
                    await var.add_property(ua.NodeId(f"{m.id}.{path}.EngineeringUnits", ns),
                                           ua.QualifiedName("EngineeringUnits", 0), eu,
                                           datatype=ua.NodeId(ua.ObjectIds.EUInformation))
            if m.kind == "cnc":
                ident = await obj.add_object(ua.NodeId(f"{m.id}.Identification", ns),
                                             ua.QualifiedName("Identification", ns))
                for name, text in (("Manufacturer", "Kartech Sim"), ("Model", "VMC-650"),
                                   ("SerialNumber", f"SIM-{m.id.upper()}")):
                    await ident.add_variable(ua.NodeId(f"{m.id}.Identification.{name}", ns),
                                             ua.QualifiedName(name, ns), text)
        self._extra = []
        if self.extra_variables:
            bulk = await objects.add_object(ua.NodeId("Bulk", idx[uris[0]]), ua.QualifiedName("Bulk", idx[uris[0]]))
            for i in range(self.extra_variables):
                self._extra.append(await bulk.add_variable(ua.NodeId(f"Bulk.V{i}", idx[uris[0]]),
                                                           ua.QualifiedName(f"V{i}", idx[uris[0]]), 0.0))
        await server.start()
        if self.port == 0:
            self.port = server.bserver.port if server.bserver else 0
            for ep in await server.get_endpoints():
                ep.EndpointUrl = self.endpoint
        self._server = server
        await self._update()
        self._task = asyncio.create_task(self._ticker())

    async def _validate_client(self, cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        assert self.trusted_clients is not None
        if cert.public_bytes(serialization.Encoding.DER) not in self.trusted_clients:
            self.refused_clients += 1
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def _stop_server(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            server, self._server = self._server, None
            listener = server.bserver._server if server.bserver is not None else None
            if listener is not None:
                # stop accepting first: a client that reconnects at once (as the gateway does) must not get a new
                # connection in while the old ones close — asyncua's stop() would then wait for it forever
                listener.close()
            with contextlib.suppress(Exception):
                await server.stop()

    async def _drop(self) -> None:
        if self._server is not None:
            for transport in list(self._server.iserver.asyncio_transports):
                transport.close()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if not self.frozen:
                await self._update()

    async def _update(self) -> None:
        server = self._server
        if server is None:
            return
        now_s = time.time()
        now = datetime.fromtimestamp(now_s, UTC)
        for m in self.machines:
            values = m.model.step(now_s)
            if m.kind == "cnc":
                values["execution"] = EXECUTION_STATES.index(str(values["execution"]))
            nodes = CNC_NODES if m.kind == "cnc" else FURNACE_NODES
            for signal, node in m.nodes.items():
                vtype = nodes[signal][1]
                value = values[signal]
                status = self.bad.get((m.id, signal), ua.StatusCode(ua.StatusCodes.Good))
                dv = ua.DataValue(ua.Variant(_cast(value, vtype), vtype), StatusCode=status,
                                  SourceTimestamp=now, ServerTimestamp=now)
                await server.write_attribute_value(node.nodeid, dv)
                m.values[signal] = value
        for i, node in enumerate(self._extra):
            if i % 100 == 0:  # writing thousands of values takes a while: stamp them as they are written
                now = datetime.now(UTC)
            dv = ua.DataValue(ua.Variant(now_s + i, ua.VariantType.Double), SourceTimestamp=now,
                              ServerTimestamp=now)
            await server.write_attribute_value(node.nodeid, dv)
        self.updates += 1


async def _cancel_others() -> None:
    """Cancel what the stopped server left running (session timeouts, subscription loops)."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _format(data: bytes) -> str:
    return "pem" if data.lstrip().startswith(b"-----BEGIN") else "der"


def _initial(vtype: ua.VariantType) -> Any:
    if vtype == ua.VariantType.Double:
        return 0.0
    if vtype == ua.VariantType.String:
        return ""
    if vtype == ua.VariantType.Boolean:
        return False
    return 0


def _cast(value: Any, vtype: ua.VariantType) -> Any:
    if vtype == ua.VariantType.Double:
        return float(value)
    if vtype == ua.VariantType.String:
        return str(value)
    if vtype == ua.VariantType.Boolean:
        return bool(value)
    return int(value)


def describe(server: OpcuaSimServer) -> list[str]:
    """One line per machine: `id (kind) -> opc.tcp://host:port nsu=...`."""
    return [f"{m.id} ({m.kind}) -> {server.endpoint} {namespace_of(m.kind)} [{', '.join(server.security)}]"
            for m in server.machines]
