"""OPC UA driver: one asyncua client per machine, rebuilt from scratch after every loss.

Each `run` creates a new client, applies security (server certificate checked against the trust directory),
connects, reads the namespace array, resolves every signal again (namespace indexes and browse paths can change
when a server restarts), then subscribes (or polls). asyncua's own auto-reconnect is not used: it would re-create
monitored items with the old namespace indexes. Instead, any loss — socket closed, server-state probe failing
(asyncua's watchdog, every `watchdog_s`), a subscription status change, or a subscription silent beyond its
keep-alive — raises `DriverUnavailable`, and the supervisor starts over with capped, jittered backoff.

Notifications are converted inside the subscription's publish callback and handed to the pipeline with
`await ctx.emit(...)`. asyncua's publish loop awaits that callback, so a slow pipeline delays the next
PublishRequest and the server keeps the values in its own queues; nothing is dropped in the gateway. Values the
server itself had to discard carry the Overflow bit and are counted (bad_input reason server_queue_overflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from drivers.opcua.config import OpcuaMachine
from drivers.opcua.nodes import UnresolvedNode, format_node, parse_node, resolve_path
from drivers.opcua.security import UntrustedServer, apply_security
from drivers.opcua.values import ENUMERATION, KNOWN_BASE_TYPES, SignalPlan, to_reading, type_for_base
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable
from gateway.reading import Reading

log = logging.getLogger(__name__)


# asyncua's own lines for what the driver reports itself, once, through the supervisor (a closed connection, an
# error status or ERR message from the server during connect): logged at every retry otherwise, some as tracebacks.
# "is already done": the answer to a request the driver stopped waiting for (a timeout, or a stop mid-handshake)
# came after all; the driver has already reported the timeout or is stopping
_LIBRARY_REPEATS = ("called but connection is closed", "Received an error", "Got error status from server",
                    "ServiceFault (", "create_session fault response", "Exception raised while parsing message",
                    "is already done")


class _ExpectedLoss(logging.Filter):
    """Drops asyncua's tracebacks for a connection that closed: the supervisor logs the loss once, plainly."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError, ua.UaStatusCodeError)):
            return False
        msg = str(record.msg)
        return not any(text in msg for text in _LIBRARY_REPEATS)


_LOSS_FILTER = _ExpectedLoss()
# status codes a server answers with when it does not trust the client's application certificate
_CERT_REFUSED = re.compile(r"^Bad(SecurityChecksFailed|Certificate\w*|SecurityPolicyRejected)$")


def _quiet_expected_losses() -> None:
    for name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_session", "asyncua.client.client",
                 "asyncua.client.ua_client.UaClient", "asyncua.client.ua_client.UASocketProtocol",
                 "asyncua.uaprotocol", "asyncua.common.subscription"):
        logger = logging.getLogger(name)
        if _LOSS_FILTER not in logger.filters:
            logger.addFilter(_LOSS_FILTER)

CHUNK = 1000  # nodes per read / create-monitored-items request
_NET_ERRORS = (OSError, TimeoutError, ua.UaError, ConnectionError, asyncio.IncompleteReadError)


def _err(err: BaseException) -> str:
    if isinstance(err, ua.UaStatusCodeError):
        return f"{type(err).__name__} ({err})"
    return str(err) or type(err).__name__


class _Feed(Subscription):  # type: ignore[misc]  # asyncua is treated as untyped
    """A subscription whose publish results go straight to the driver (awaited: back-pressure, no drops)."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters, driver: OpcuaDriver,
                 ctx: DriverContext) -> None:
        super().__init__(session, params, handler=None, queue_maxsize=1)
        self._driver = driver
        self._ctx = ctx
        self.busy = False

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        self.busy = True
        try:
            await self._driver.deliver(self._ctx, data)
        except Exception as err:  # asyncua would log it and go on with a broken feed: restart the driver instead
            log.error("%s: handling a publish response failed: %s: %s; restarting the driver", self._driver.name,
                      type(err).__name__, err, exc_info=err)
            self._ctx.fault(err)
        finally:
            self.busy = False
            self.last_publish_at = time.monotonic()


class OpcuaDriver:
    """Reads one machine's OPC UA server."""

    def __init__(self, machine: OpcuaMachine, *, endpoint: str | None = None) -> None:
        _quiet_expected_losses()
        self.machine = machine
        self.name = f"opcua:{machine.id}"
        self.machine_ids = [machine.id]
        # after a loss: retry at once, then at most reconnect_max_s apart
        self.retry = Retry(initial_s=min(1.0, machine.reconnect_max_s), cap_s=machine.reconnect_max_s,
                           immediate_first=True)
        self.endpoint = endpoint or machine.endpoint
        self._types: dict[str, str] = {}  # decided at the first connect, kept for life
        self._reported: dict[str, str] = {}  # signal -> problem last logged
        self._handles: dict[int, SignalPlan] = {}
        self._last: dict[str, Reading] = {}
        self._last_emit = time.monotonic()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self.namespaces: list[str] = []
        self.plans: list[SignalPlan] = []
        self._nodes: dict[str, ua.NodeId] = {}
        self._warned = False

    # --- the connection ------------------------------------------------------------------------------------
    async def run(self, ctx: DriverContext) -> None:
        m = self.machine
        self._lost = asyncio.Event()
        self._lost_reason = ""
        client = Client(self.endpoint, timeout=m.timeout_s, watchdog_intervall=m.watchdog_s)
        client.name = client.description = f"Kartech gateway ({m.id})"
        client.session_timeout = int(max(30.0, 10 * m.watchdog_s) * 1000)

        async def on_lost(exc: Exception) -> None:
            self._set_lost(f"connection lost: {_err(exc)}")

        client.connection_lost_callback = on_lost
        await apply_security(client, self.endpoint, m.security, m.identity, self.name, m.timeout_s,
                             warn_insecure=not self._warned)
        self._warned = True
        try:
            async with asyncio.timeout(m.timeout_s * 3):
                await client.connect()
        except asyncio.CancelledError:  # stopped mid-handshake: drop the socket at once, or it stays open
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            raise
        except UntrustedServer:
            raise
        except (*_NET_ERRORS, ValueError, AssertionError) as err:
            # AssertionError: asyncua's handshake asserts on a channel the server closed instead of answering
            await self._close(client)
            raise DriverUnavailable(self._connect_error(err)) from err
        try:
            async with asyncio.timeout(m.timeout_s * 4):
                self.namespaces = list(await client.get_namespace_array())
                plans = await self._resolve(client, ctx)
            if m.read == "subscribe":
                await self._subscribe(client, plans, ctx)
            else:
                ctx.connected()
                await self._poll(client, plans, ctx)
        except DriverUnavailable:
            raise
        except _NET_ERRORS as err:
            reason = self._lost_reason or _err(err)
            raise DriverUnavailable(f"lost {self.endpoint}: {reason}") from err
        finally:
            await self._close(client)

    def _connect_error(self, err: BaseException) -> str:
        """Why connecting failed, in words that say what to do (a refused certificate names the file)."""
        sec = self.machine.security
        code = ua.StatusCode(err.code).name if isinstance(err, ua.UaStatusCodeError) else ""
        if sec.policy != "None" and (_CERT_REFUSED.match(code) or isinstance(err, AssertionError)):
            how = f"refused the gateway's certificate ({code})" if code else \
                "closed the connection while the secure channel was opened: it probably refuses the gateway's " \
                "certificate"
            return (f"{self.endpoint} {how}: ask the server's administrator to trust {sec.certificate} (its trusted "
                    "client certificates)")
        if isinstance(err, AssertionError):
            return f"cannot connect to {self.endpoint}: the server closed the connection during the handshake"
        return f"cannot connect to {self.endpoint}: {_err(err)}"

    def _set_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _close(self, client: Client) -> None:
        try:
            async with asyncio.timeout(self.machine.timeout_s):
                await client.disconnect()
        except (Exception, TimeoutError):  # the server may be gone or hung: drop the socket and move on
            with contextlib.suppress(Exception):
                client.disconnect_socket()
        session = client.uaclient.session
        task = getattr(session, "_publish_task", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- resolving signals ---------------------------------------------------------------------------------
    def _problem(self, ctx: DriverContext, plan_name: str, message: str) -> None:
        """A signal that cannot be read: counted, and logged once until its problem changes."""
        ctx.bad_input("unknown_node", self.machine.id, f'signal "{plan_name}": {message}')
        if self._reported.get(plan_name) != message:
            self._reported[plan_name] = message
            log.error('%s: machine "%s" signal "%s": %s; the other signals are read', self.name, self.machine.id,
                      plan_name, message, extra={"driver": self.name, "machine": self.machine.id,
                                                  "signal": plan_name})

    async def _resolve(self, client: Client, ctx: DriverContext) -> list[SignalPlan]:
        m = self.machine
        found: list[tuple[SignalPlan, ua.NodeId]] = []
        path_cache: dict[str, ua.NodeId] = {}
        for name, sc in m.signals.items():
            plan = SignalPlan(m.id, name, sc, sc.timestamp or m.timestamp, self._types.get(name))
            try:
                if sc.node is not None:
                    nid = parse_node(sc.node, m.namespace).resolve(self.namespaces)
                else:
                    assert sc.path is not None
                    nid = await resolve_path(client, sc.path, m.namespace, self.namespaces, path_cache)
            except UnresolvedNode as err:
                self._problem(ctx, name, f"{sc.node or sc.path}: {err}")
                continue
            plan.node_text = format_node(nid, self.namespaces)
            found.append((plan, nid))
        attrs = (ua.AttributeIds.NodeClass, ua.AttributeIds.DataType, ua.AttributeIds.ValueRank)
        results: list[ua.DataValue] = []
        for i in range(0, len(found), CHUNK):
            params = ua.ReadParameters()
            for _, nid in found[i:i + CHUNK]:
                params.NodesToRead += [ua.ReadValueId(NodeId=nid, AttributeId=a) for a in attrs]
            results += await client.uaclient.read(params)
        base_cache: dict[ua.NodeId, int | None] = {}
        enum_cache: dict[ua.NodeId, dict[int, str]] = {}
        plans: list[SignalPlan] = []
        plan_nodes: dict[str, ua.NodeId] = {}
        for k, (plan, nid) in enumerate(found):
            node_class, data_type, value_rank = results[3 * k:3 * k + 3]
            written = plan.cfg.node or plan.cfg.path
            where = f"node {written}" + (f" ({plan.node_text})" if plan.node_text != written else "")
            if not node_class.StatusCode.is_good():
                self._problem(ctx, plan.name, f"{where} does not exist on {self.endpoint} "
                              f"({node_class.StatusCode.name})")
                continue
            nc = node_class.Value.Value if node_class.Value else None
            if nc != ua.NodeClass.Variable:
                self._problem(ctx, plan.name, f"{where} is a {ua.NodeClass(nc).name if nc else '?'}, not a "
                              "variable; browse it with `kartech opcua browse` and pick a variable below it")
                continue
            rank = value_rank.Value.Value if value_rank.Value else -1
            if rank is not None and rank >= 0 and plan.cfg.index is None:
                self._problem(ctx, plan.name, f"{where} holds an array (ValueRank {rank}); set index: N to read "
                              "one element")
                continue
            dt_id = data_type.Value.Value if data_type.Value else None
            base = await self._base_type(client, dt_id, base_cache) if isinstance(dt_id, ua.NodeId) else None
            if plan.type is None:
                if plan.cfg.type != "auto":
                    plan.type = plan.cfg.type
                elif base is not None:
                    plan.type = type_for_base(base)
                    if plan.type == "int" and (plan.cfg.scale != 1.0 or plan.cfg.offset != 0.0):
                        plan.type = "float"
                if plan.type is None and isinstance(dt_id, ua.NodeId) and not (
                        dt_id.NamespaceIndex == 0 and dt_id.Identifier == ua.ObjectIds.BaseDataType):
                    self._problem(ctx, plan.name, f"{where} has data type {format_node(dt_id, self.namespaces)}, "
                                  "which is not a number, boolean, text or enumeration; structures are not read")
                    continue
            if base == ENUMERATION and isinstance(dt_id, ua.NodeId):
                if dt_id not in enum_cache:
                    enum_cache[dt_id] = await self._enum_names(client, dt_id)
                plan.enum_names = enum_cache[dt_id]
            if plan.type is not None:
                self._types[plan.name] = plan.type
            self._reported.pop(plan.name, None)
            plans.append(plan)
            plan_nodes[plan.name] = nid
        self.plans = plans
        self._nodes = plan_nodes
        if not plans:
            raise DriverUnavailable(f"none of the {len(m.signals)} configured signals can be read on "
                                    f"{self.endpoint}; check the node ids with `kartech opcua browse "
                                    f"{self.endpoint}`")
        return plans

    async def _base_type(self, client: Client, dt_id: ua.NodeId, cache: dict[ua.NodeId, int | None]) -> int | None:
        """The namespace-0 base type (Double, Int32, String, Enumeration, ...) a data type derives from."""
        chain: list[ua.NodeId] = []
        cur = dt_id
        result: int | None = None
        for _ in range(12):
            if cur.NamespaceIndex == 0 and cur.Identifier in KNOWN_BASE_TYPES:
                result = int(cur.Identifier)
                break
            if cur in cache:
                result = cache[cur]
                break
            if cur.NamespaceIndex == 0 and cur.Identifier in (ua.ObjectIds.BaseDataType, ua.ObjectIds.Structure):
                break
            chain.append(cur)
            refs = await client.get_node(cur).get_references(refs=ua.ObjectIds.HasSubtype,
                                                             direction=ua.BrowseDirection.Inverse)
            if not refs:
                break
            cur = refs[0].NodeId
        for c in chain:
            cache[c] = result
        return result

    async def _enum_names(self, client: Client, dt_id: ua.NodeId) -> dict[int, str]:
        node = client.get_node(dt_id)
        with contextlib.suppress(*_NET_ERRORS):
            definition = await node.read_data_type_definition()
            if isinstance(definition, ua.EnumDefinition) and definition.Fields:
                return {int(f.Value): str(f.Name) for f in definition.Fields}
        with contextlib.suppress(*_NET_ERRORS):
            strings = await (await node.get_child("0:EnumStrings")).read_value()
            return {i: (s.Text if isinstance(s, ua.LocalizedText) else str(s)) or str(i)
                    for i, s in enumerate(strings)}
        with contextlib.suppress(*_NET_ERRORS):
            values = await (await node.get_child("0:EnumValues")).read_value()
            return {int(v.Value): v.DisplayName.Text or str(v.Value) for v in values}
        return {}

    # --- subscribe mode ------------------------------------------------------------------------------------
    async def _subscribe(self, client: Client, plans: Sequence[SignalPlan], ctx: DriverContext) -> None:
        m = self.machine
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = m.publishing_interval_s * 1000.0
        keepalive = max(1, math.ceil(m.watchdog_s / m.publishing_interval_s))
        params.RequestedMaxKeepAliveCount = keepalive
        params.RequestedLifetimeCount = max(10_000, 3 * keepalive)
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        sub = _Feed(client.uaclient.session, params, self, ctx)
        result = await sub.init()
        revised_s = max(result.RevisedPublishingInterval / 1000.0, m.publishing_interval_s)
        silent_limit_s = revised_s * max(result.RevisedMaxKeepAliveCount, 1) + m.timeout_s + revised_s
        self._handles = {}
        requests: list[tuple[SignalPlan, ua.MonitoredItemCreateRequest]] = []
        for handle, plan in enumerate(plans, start=1):
            requests.append((plan, self._item_request(plan, self._nodes[plan.name], handle)))
            self._handles[handle] = plan
        ok = 0
        for i in range(0, len(requests), CHUNK):
            chunk = requests[i:i + CHUNK]
            ids = await sub.create_monitored_items([r for _, r in chunk])
            for (plan, req), res in zip(chunk, ids, strict=True):
                if isinstance(res, ua.StatusCode):
                    self._handles.pop(req.RequestedParameters.ClientHandle, None)
                    self._problem(ctx, plan.name, f"node {plan.node_text} cannot be monitored: {res.name}")
                else:
                    ok += 1
        if ok == 0:
            raise DriverUnavailable(f"{self.endpoint} refused to monitor every configured signal")
        ctx.connected()
        log.debug("%s subscribed to %d signals", self.name, ok, extra={"driver": self.name})
        self._last_emit = started = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(m.watchdog_s):
                    await self._lost.wait()
            if self._lost.is_set():
                raise DriverUnavailable(f"lost {self.endpoint}: {self._lost_reason}")
            silent = time.monotonic() - (sub.last_publish_at or started)
            if not sub.busy and silent > silent_limit_s:
                raise DriverUnavailable(f"{self.endpoint} sent nothing, not even a keep-alive, for {silent:.0f} s; "
                                        "rebuilding the session")
            await self._heartbeat(ctx)

    def _item_request(self, plan: SignalPlan, nid: ua.NodeId, handle: int) -> ua.MonitoredItemCreateRequest:
        m, sc = self.machine, plan.cfg
        mparams = ua.MonitoringParameters()
        mparams.ClientHandle = handle
        mparams.SamplingInterval = (sc.sampling_interval_s if sc.sampling_interval_s is not None
                                    else m.sampling_interval_s) * 1000.0
        mparams.QueueSize = sc.queue_size or m.queue_size
        mparams.DiscardOldest = True
        if sc.deadband:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValue
            flt.DeadbandType = 1 if sc.deadband_type == "absolute" else 2
            # absolute: in the reading's unit, so in the node's own unit before scaling
            flt.DeadbandValue = sc.deadband / abs(sc.scale) if sc.deadband_type == "absolute" else sc.deadband
            mparams.Filter = flt
        req = ua.MonitoredItemCreateRequest()
        req.ItemToMonitor = ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value)
        req.MonitoringMode = ua.MonitoringMode.Reporting
        req.RequestedParameters = mparams
        return req

    async def deliver(self, ctx: DriverContext, data: Sequence[Any]) -> None:
        """Readings of one publish response, or the end of the connection if the subscription died."""
        receive = time.time_ns()
        out: list[Reading] = []
        handles = self._handles
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    plan = handles.get(item.ClientHandle)
                    if plan is None:
                        continue
                    r = to_reading(plan, item.Value, receive, ctx.bad_input)
                    if r is not None:
                        out.append(r)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._set_lost(f"subscription ended by the server ({notification.Status.name})")
        if out:
            await self._emit(ctx, out)

    async def _emit(self, ctx: DriverContext, readings: list[Reading]) -> None:
        for r in readings:
            self._last[r.signal] = r
        self._last_emit = time.monotonic()
        await ctx.emit(readings)

    async def _heartbeat(self, ctx: DriverContext) -> None:
        """Repeat unchanged values of a quiet machine so the hub sees it alive (same source time: idempotent)."""
        if time.monotonic() - self._last_emit < self.machine.expected_interval_s or not self._last:
            return
        now = time.time_ns()
        await self._emit(ctx, [Reading(r.machine, r.signal, r.value, r.unit, r.quality, r.source_ns, now)
                               for r in self._last.values()])

    # --- poll mode -----------------------------------------------------------------------------------------
    async def _poll(self, client: Client, plans: Sequence[SignalPlan], ctx: DriverContext) -> None:
        m = self.machine
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if self._lost.is_set():
                raise DriverUnavailable(f"lost {self.endpoint}: {self._lost_reason}")
            values: list[ua.DataValue] = []
            async with asyncio.timeout(m.timeout_s * 2):
                for i in range(0, len(plans), CHUNK):
                    params = ua.ReadParameters()
                    params.TimestampsToReturn = ua.TimestampsToReturn.Both
                    params.NodesToRead = [ua.ReadValueId(NodeId=self._nodes[p.name],
                                                         AttributeId=ua.AttributeIds.Value)
                                          for p in plans[i:i + CHUNK]]
                    values += await client.uaclient.read(params)
            receive = time.time_ns()
            out = [r for p, dv in zip(plans, values, strict=True)
                   if (r := to_reading(p, dv, receive, ctx.bad_input)) is not None]
            if out:
                await self._emit(ctx, out)
            next_at = max(next_at + m.poll_interval_s, loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(next_at - loop.time()):
                    await self._lost.wait()
