"""OPC UA driver against real asyncua servers: how fast it comes back, and how a refused certificate is reported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.ua.ua_binary import uatcp_to_binary
from kit.poll import until
from test_opcua_driver import PASSWORD, SPECS, Pki, ctx_of, furnace_yaml, gateway, pki, site

from gateway.runtime import Runtime
from simulators.opcua_sim import OpcuaSimServer

__all__ = ["pki"]  # the session fixture, shared with test_opcua_driver


@pytest.fixture
def down_sim() -> Iterator[OpcuaSimServer]:
    s = OpcuaSimServer([("furnace-01", "furnace")], interval_s=0.1)
    s.start()
    yield s
    s.stop()


async def test_values_return_within_5_s_after_a_long_outage(down_sim: OpcuaSimServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A server down for long enough that an uncapped backoff has grown: the retries stay at most
    reconnect_max_s apart, so fresh values are back within 5 s of the server. The loss is one log line."""
    caplog.set_level(logging.INFO)
    async with gateway(site(furnace_yaml(down_sim.endpoint))) as (rt, tap):
        await until(lambda: len(tap.of("furnace-01", "temperature")) >= 2, timeout_s=15.0)
        ctx = ctx_of(rt, "furnace-01")
        await asyncio.to_thread(down_sim.go_down)
        await until(lambda: not ctx.is_connected, timeout_s=5)
        await asyncio.sleep(15)  # the outage itself: nothing to wait for but time
        await asyncio.to_thread(down_sim.come_up)
        up_ns, up = time.time_ns(), time.monotonic()
        await until(lambda: len(tap.of("furnace-01", "temperature", up_ns)) >= 1, timeout_s=20)
        took = time.monotonic() - up
    assert took < 5.0, f"fresh values {took:.1f} s after the server came back"
    lost = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(lost) == 1, lost
    noisy = [f"{r.name}: {r.getMessage()}" for r in caplog.records
             if r.exc_info or (r.name.startswith("asyncua") and r.levelno >= logging.WARNING)]
    assert not noisy, noisy


class RefusingFront:
    """A TCP front for a real asyncua server that refuses, as the OPC UA .NET stack, open62541 and PLC servers do,
    any secure channel opened with a client certificate its administrator has not trusted: it answers the
    OpenSecureChannel request with an ERR message (BadSecurityChecksFailed) and closes the connection."""

    def __init__(self, upstream_port: int, trusted: set[bytes]) -> None:
        self.upstream_port = upstream_port
        self.trusted = trusted
        self.refused = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"opc.tcp://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self._pipe(up_reader, writer))
        try:
            while True:
                head = await reader.readexactly(8)
                body = await reader.readexactly(struct.unpack("<I", head[4:8])[0] - 8)
                if head[:3] == b"OPN" and (cert := _sender_certificate(body)) and cert not in self.trusted:
                    self.refused += 1
                    err = ua.ErrorMessage(ua.StatusCode(ua.StatusCodes.BadSecurityChecksFailed),
                                          "the client certificate is not trusted")
                    writer.write(uatcp_to_binary(ua.MessageType.Error, err))
                    await writer.drain()
                    break
                up_writer.write(head + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            back.cancel()
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


def _sender_certificate(opn_body: bytes) -> bytes | None:
    """SenderCertificate of an OpenSecureChannel message (after SecureChannelId and SecurityPolicyUri)."""
    uri_len = struct.unpack("<i", opn_body[4:8])[0]
    at = 8 + max(uri_len, 0)
    cert_len = struct.unpack("<i", opn_body[at:at + 4])[0]
    cert = opn_body[at + 4:at + 4 + cert_len] if cert_len > 0 else b""
    return _first_der(cert) if cert else None


def _first_der(chain: bytes) -> bytes:
    return chain[: 4 + int.from_bytes(chain[2:4], "big")] if chain[:2] == b"\x30\x82" else chain


@pytest.mark.parametrize("where", ["secure_channel", "session"])
async def test_server_refusing_the_gateway_certificate_says_which_file_to_trust(
        pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str) -> None:
    """Servers refuse an untrusted client certificate either when the secure channel opens (an ERR message) or
    at CreateSession (BadCertificateUntrusted): both are reported as exactly that, once, without a traceback."""
    sim = OpcuaSimServer([("furnace-01", "furnace")], interval_s=0.1, security=("Basic256Sha256",),
                         certificate=pki.server_cert, private_key=pki.server_key, users={"gateway": PASSWORD},
                         allow_anonymous=False, trusted_clients=[] if where == "session" else None)
    sim.start()
    front = RefusingFront(sim.port, set())
    endpoint = await front.start() if where == "secure_channel" else sim.endpoint
    try:
        trust = tmp_path / "trusted"
        trust.mkdir()
        (trust / "sim.der").write_bytes(pki.server_cert)
        security = (f"{{policy: Basic256Sha256, mode: SignAndEncrypt, certificate: {pki.client_cert}, "
                    f"private_key: {pki.client_key}, trust_dir: {trust}}}")
        identity = "    identity: {type: username, username: gateway, password: \"${FURNACE_PW}\"}\n"
        cfg = site(furnace_yaml(endpoint, security=security, identity=identity), env={"FURNACE_PW": PASSWORD})
        caplog.set_level(logging.INFO)
        with tempfile.TemporaryDirectory(prefix="kartech-opcua-test-") as data_dir:
            rt = Runtime(cfg, SPECS, serve_api=False, data_dir=Path(data_dir))
            stop = asyncio.Event()
            task = asyncio.create_task(rt.run(stop))
            try:
                await until(lambda: sim.refused_clients + front.refused >= 3, timeout_s=20)  # it keeps retrying
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
            assert not ctx_of(rt, "furnace-01").is_connected
    finally:
        await front.stop()
        sim.stop()
    code = "BadSecurityChecksFailed" if where == "secure_channel" else "BadCertificateUntrusted"
    ours = [r for r in caplog.records if r.name.startswith(("gateway", "drivers"))]
    refused = [r.getMessage() for r in ours if "refused" in r.getMessage()]
    assert refused == [
        f"opcua:furnace-01 unavailable: {endpoint} refused the gateway's certificate ({code}): ask the server's "
        f"administrator to trust {pki.client_cert} (its trusted client certificates); retrying with backoff"]
    noisy = [r for r in caplog.records if r.exc_info or "AssertionError" in r.getMessage()]
    assert not noisy, [r.getMessage() for r in noisy]
    library = [r for r in caplog.records if r.name.startswith("asyncua.client") and r.levelno >= logging.WARNING]
    assert not library, [r.getMessage() for r in library]


async def test_a_stop_during_the_handshake_closes_the_socket() -> None:
    """A server that accepts the connection but never answers Hello (a PLC busy or hung): stopping the gateway while
    it waits drops the socket at once, instead of leaving it open for the server to time out."""
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await accepted.put(reader)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with tempfile.TemporaryDirectory(prefix="kartech-opcua-test-") as data_dir:
            rt = Runtime(site(furnace_yaml(f"opc.tcp://127.0.0.1:{port}")), SPECS, serve_api=False,
                         data_dir=Path(data_dir))
            stop = asyncio.Event()
            task = asyncio.create_task(rt.run(stop))
            try:
                reader = await asyncio.wait_for(accepted.get(), 10)
                hello = await asyncio.wait_for(reader.readexactly(8), 5)
                assert hello[:3] == b"HEL"
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
            # the gateway has stopped: the server sees the end of the stream now, not at its own timeout
            await asyncio.wait_for(reader.read(), 1)  # the rest of Hello, then the end of the stream
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
