"""Simulated Bambu Lab printers in LAN mode: each one is an MQTT broker over TLS, as the real printer is.

A `FakePrinter` runs an amqtt broker behind our own TLS listening socket (handed over with amqtt's public
`external_connected`, as gateway/embedded_broker.py does), admits only user `bblp` with the printer's access code
(anything else gets CONNACK 5, not authorised, as the printers answer), and publishes its reports on
`device/<serial>/report` in the shape the printers use (OpenBambuAPI mqtt.md, ha-bambulab test payloads):

- a full `print` object answering every `pushall` request on `device/<serial>/request`;
- otherwise, X1 series: the full object at every tick; P1 / A1 series: only the fields that changed;
- a print cycle from `simulators.dynamics.Printer`: PREPARE (heating) -> RUNNING (layers, mc_percent,
  mc_remaining_time in minutes) -> FINISH, or PAUSE (filament run-out) and back, or FAILED with a print_error;
  a thermal runaway (planned fault `thermal_runaway`) ends in FAILED with the fatal HMS code 0300_0200_0001_0003
  ("The nozzle temperature is abnormal; the heater is over temperature"). Codes clear when the next job starts.
- one AMS with four spools (Bambu PLA Basic and PETG Basic, `print.ams` as in OpenBambuAPI's pushall: ids and
  most numbers as strings, `remain` an integer %, `tray_color` RRGGBBAA, `tray_now` the loaded tray as a string).
  Each job takes the next spool (one that is empty is replaced by a full one, as a technician would); its
  `remain` falls by 1 % per 20 minutes of printing. `home_flag` has the AMS's "update remaining capacity" bit set,
  `vt_tray` (the external spool holder) is empty. P1-style printers send `ams` only in the deltas where it changed.

The TLS material is made at start with `cryptography` in a throwaway directory: a lab CA and, per printer, a
certificate whose CN is the serial and that has no subjectAltName, like the printers' own. Tests inject HMS codes
(`set_hms`), raw payloads (`publish_raw`), and take a printer away and back (`away`, `back`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import random
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
from amqtt.session import Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drivers.bambu.config import BambuMachine, PrinterTls
from gateway.config.models import MachineBase
from simulators.dynamics import Printer
from simulators.lab import SimulatorEnv

log = logging.getLogger(__name__)

Series = Literal["X1", "P1"]
T = TypeVar("T")
LISTENER = "default"
USER = "bblp"
RUNAWAY_HMS = (0x03000200, 0x00010003)  # HMS_0300_0200_0001_0003, fatal: nozzle heater over temperature
JOB_ERROR = 0x07008006  # print_error 0700_8006: unable to feed filament into the extruder
DEMO_TIME_SCALE = 1.0
FAULT_KINDS = ("thermal_runaway",)
# (tray_type, tray_color, tray_info_idx, tray_sub_brands, nozzle_temp_min, nozzle_temp_max) of the AMS's spools
SPOOLS = (("PLA", "000000FF", "GFA00", "PLA Basic", "190", "230"),
          ("PLA", "FFFFFFFF", "GFA00", "PLA Basic", "190", "230"),
          ("PETG", "F95959FF", "GFG00", "PETG Basic", "230", "260"),
          ("PETG", "0086D6FF", "GFG00", "PETG Basic", "230", "260"))
REMAIN_PCT_PER_S = 1.0 / 1200.0  # 1 % of a 1 kg spool per 20 minutes of printing
HOME_FLAG = 0x587  # axes homed, SD card present, AMS auto switch and "update remaining capacity" (0x80) on


# --- TLS material ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    dir: Path
    ca_file: Path
    certs: Mapping[str, tuple[Path, Path]]  # serial -> (certificate, key)

    def fingerprint(self, serial: str) -> str:
        """SHA-256 of the printer's certificate (DER), as a pin."""
        cert = x509.load_pem_x509_certificate(self.certs[serial][0].read_bytes())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make_pki(directory: Path, serials: Sequence[str], *, ca_name: str = "Kartech virtual lab printer CA") -> Pki:
    """A CA and one certificate per serial (CN = serial, no subjectAltName), written to `directory`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(ca_subject).issuer_name(ca_subject)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs: dict[str, tuple[Path, Path]] = {}
    for serial in serials:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
                .issuer_name(ca_subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_file, key_file = directory / f"{serial}.pem", directory / f"{serial}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        certs[serial] = (cert_file, key_file)
    return Pki(directory, ca_file, certs)


# --- what the printer reports ----------------------------------------------------------------------------------

@dataclass
class Ams:
    """One AMS unit of four spools; `loaded` is the tray feeding the nozzle."""

    remain: list[float] = field(default_factory=lambda: [100.0, 80.0, 60.0, 40.0])
    loaded: int = 0
    humidity_index: int = 4  # 1 wet … 5 dry, as the AMS reports it ("humidity": "4")

    def next_job(self) -> None:
        self.loaded = (self.loaded + 1) % len(SPOOLS)
        if self.remain[self.loaded] < 1.0:
            self.remain[self.loaded] = 100.0

    def use(self, seconds: float) -> None:
        self.remain[self.loaded] = max(0.0, self.remain[self.loaded] - seconds * REMAIN_PCT_PER_S)

    def report(self) -> dict[str, Any]:
        trays = [{
            "id": str(i), "remain": int(self.remain[i]), "k": 0.02, "n": 1.4, "tag_uid": "0000000000000000",
            "tray_id_name": "", "tray_info_idx": idx, "tray_type": kind, "tray_sub_brands": brand,
            "tray_color": color, "tray_weight": "1000", "tray_diameter": "1.75", "tray_temp": "55", "tray_time": "8",
            "bed_temp_type": "0", "bed_temp": "0", "nozzle_temp_max": t_max, "nozzle_temp_min": t_min,
            "xcam_info": "000000000000000000000000", "tray_uuid": "00000000000000000000000000000000",
            "cols": [color],
        } for i, (kind, color, idx, brand, t_min, t_max) in enumerate(SPOOLS)]
        now = str(self.loaded)
        return {"ams": [{"id": "0", "humidity": str(self.humidity_index), "temp": "24.6", "tray": trays}],
                "ams_exist_bits": "1", "tray_exist_bits": "f", "tray_is_bbl_bits": "f", "tray_now": now,
                "tray_pre": now, "tray_tar": now, "tray_read_done_bits": "f", "tray_reading_bits": "0",
                "version": 4, "insert_flag": True, "power_on_flag": False}


EMPTY_VT_TRAY: dict[str, Any] = {  # the external spool holder with nothing on it (OpenBambuAPI pushall)
    "id": "254", "tag_uid": "0000000000000000", "tray_id_name": "", "tray_info_idx": "", "tray_type": "",
    "tray_sub_brands": "", "tray_color": "00000000", "tray_weight": "0", "tray_diameter": "0.00", "tray_temp": "0",
    "tray_time": "0", "bed_temp_type": "0", "bed_temp": "0", "nozzle_temp_max": "0", "nozzle_temp_min": "0",
    "xcam_info": "000000000000000000000000", "tray_uuid": "00000000000000000000000000000000", "remain": 0,
    "cols": ["00000000"],
}


@dataclass
class PrintCycle:
    """The printer's `print` object from a `dynamics.Printer`, with the words and codes a Bambu printer uses."""

    printer: Printer
    series: Series = "X1"
    hms: list[dict[str, int]] = field(default_factory=list)
    print_error: int = 0
    last_end: str = "IDLE"  # what the printer shows between jobs: IDLE after boot, then FINISH or FAILED
    ams: Ams = field(default_factory=Ams)
    _stage: str = ""
    _t_s: float | None = None

    def step(self, t_s: float) -> dict[str, Any]:
        runaway_armed = self.printer.runaway_at is not None
        v = self.printer.step(t_s)
        stage = self.printer.stage
        if self._stage == "printing" and self._t_s is not None:
            self.ams.use(max(0.0, t_s - self._t_s))
        self._t_s = t_s
        if stage != self._stage:
            if stage == "heating":  # a new job: the previous one's codes are cleared
                self.hms, self.print_error = [], 0
                if self._stage:  # not the job the printer is found on
                    self.ams.next_job()
            elif stage == "error":
                if runaway_armed and self.printer.runaway_at is None:
                    self.hms = [{"attr": RUNAWAY_HMS[0], "code": RUNAWAY_HMS[1]}]
                else:
                    self.print_error = JOB_ERROR
                self.last_end = "FAILED"
            elif stage == "cooling" and self._stage == "printing":
                self.last_end = "FINISH"
            self._stage = stage
        words = {"heating": "PREPARE", "printing": "RUNNING", "paused": "PAUSE", "error": "FAILED"}
        job = self.printer.job
        file = str(v["job_file"]) if job is not None else ""
        state = words.get(stage, self.last_end)
        remaining_min = math.ceil(int(v["remaining_s"]) / 60) if state in ("PREPARE", "RUNNING", "PAUSE") else 0
        report: dict[str, Any] = {
            "nozzle_temper": round(float(v["nozzle_temp"]), 1),
            "nozzle_target_temper": float(v["nozzle_target"]),
            "bed_temper": round(float(v["bed_temp"]), 1),
            "bed_target_temper": float(v["bed_target"]),
            "mc_percent": int(float(v["progress_pct"])) if state != "IDLE" else 0,
            "mc_remaining_time": remaining_min,
            "layer_num": int(v["layer"]),
            "total_layer_num": int(v["total_layers"]),
            "gcode_state": state,
            "subtask_name": file.rsplit(".", 1)[0],
            "gcode_file": file,
            "print_error": self.print_error,
            "hms": [dict(h) for h in self.hms],
            "mc_print_stage": "2" if state in ("PREPARE", "RUNNING", "PAUSE") else "1",
            "print_type": "local" if file else "idle",
            "spd_lvl": 2,
            "spd_mag": 100,
            "cooling_fan_speed": "15" if state == "RUNNING" else "0",
            "heatbreak_fan_speed": "15" if float(v["nozzle_temp"]) > 50 else "0",
            "nozzle_diameter": "0.4",
            "wifi_signal": "-45dBm",
            "sdcard": True,
            "lifecycle": "product",
            "home_flag": HOME_FLAG,
            "ams": self.ams.report(),
            "vt_tray": dict(EMPTY_VT_TRAY),
        }
        if self.series == "X1":
            report["chamber_temper"] = round(25.0 + (float(v["bed_temp"]) - 25.0) * 0.15, 1)
        return report


# --- the printer's broker ---------------------------------------------------------------------------------------

class _AccessCode(BaseAuthPlugin):  # type: ignore[misc]  # amqtt is untyped here
    """amqtt plugin: user bblp with the printer's access code, nothing else (CONNACK 5 otherwise)."""

    @dataclass
    class Config:
        access_code: str = ""
        on_connect: Any = None  # called with every CONNECT's user name

    async def authenticate(self, *, session: Session) -> bool | None:
        cfg: Any = self.context.config
        cfg.on_connect(session.username)
        return bool(session.username == USER and (session.password or "") == cfg.access_code)


class _Requests(BasePlugin):  # type: ignore[misc]
    """amqtt plugin: hands what clients publish on the request topic to the printer."""

    @dataclass
    class Config:
        on_request: Any = None

    async def on_broker_message_received(self, *, client_id: str, message: Any) -> None:
        if message is not None and message.topic:
            self.context.config.on_request(message.topic, bytes(message.data or b""))


class FakePrinter:
    """One printer: its broker (TLS, access code) and its reports. Its coroutines run on the lab's loop."""

    def __init__(self, machine_id: str, serial: str, access_code: str, cycle: PrintCycle, *, host: str,
                 port: int, cert: tuple[Path, Path], interval_s: float, time_scale: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.machine_id, self.serial, self.access_code = machine_id, serial, access_code
        self.cycle = cycle
        self.host, self.port = host, port
        self.interval_s, self.time_scale = interval_s, time_scale
        self._clock = clock
        self._t0 = clock()
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(str(cert[0]), str(cert[1]))
        self.requests: list[dict[str, Any]] = []  # every request received, decoded
        self.reports = 0  # reports published
        self.partial_reports = 0  # of which P1-style deltas
        self.sessions = 0  # TLS connections that completed the handshake
        self.connects: list[str | None] = []  # the user name of every CONNECT received (its password was in it)
        self._broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sent: dict[str, Any] = {}
        self._seq = 0
        self._full_due = False
        self._answers: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def report_topic(self) -> str:
        return f"device/{self.serial}/report"

    def model_time(self) -> float:
        return self._t0 + (self._clock() - self._t0) * self.time_scale

    async def start(self) -> None:
        for logger in ("amqtt", "transitions"):  # amqtt warns about its own optional plugins at every start
            logging.getLogger(logger).setLevel(logging.ERROR)
        broker = Broker({
            "listeners": {LISTENER: {"type": "external", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "plugins": {
                f"{__name__}._AccessCode": {"access_code": self.access_code, "on_connect": self.connects.append},
                f"{__name__}._Requests": {"on_request": self._on_request},
            },
        })
        await broker.start()
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=self._ssl,
                                                      ssl_handshake_timeout=5.0)
        except OSError:
            await broker.shutdown()
            raise
        self._broker = broker
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sent = {}
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"bambu-sim:{self.machine_id}")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._broker is not None:  # ends the sessions of the connected clients
            await self._broker.shutdown()
            self._broker = None
        for task in list(self._connections):  # whatever is left (e.g. a client still to send its CONNECT)
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if self._broker is not None:
                await self._broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer),
                                                      LISTENER)
        except Exception as err:  # one client's trouble ends its connection, not the printer
            log.debug("printer %s: connection ended: %s", self.machine_id, err)
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (Exception, asyncio.CancelledError):  # a peer that never closes its side of TLS
                writer.transport.abort()

    def _on_request(self, topic: str, payload: bytes) -> None:
        if topic != f"device/{self.serial}/request":
            return
        try:
            req = json.loads(payload)
        except ValueError:
            return
        if isinstance(req, dict):
            self.requests.append(req)
            if isinstance(req.get("pushing"), dict) and req["pushing"].get("command") == "pushall":
                self._full_due = True
                if self._ticker is not None:  # answered at once, as the printers do
                    task = asyncio.get_running_loop().create_task(self._tick())
                    self._answers.add(task)
                    task.add_done_callback(self._answers.discard)

    async def _tick_loop(self) -> None:
        while True:
            await self._tick()
            await asyncio.sleep(self.interval_s)

    async def _tick(self) -> None:
        report = self.cycle.step(self.model_time())
        full = self._full_due or self.cycle.series == "X1" or not self._sent
        self._full_due = False
        body = report if full else {k: v for k, v in report.items() if self._sent.get(k) != v}
        self._sent = dict(report)
        if not body:
            return
        self._seq += 1
        self.partial_reports += not full
        msg = {"print": {**body, "command": "push_status", "msg": 0 if full else 1, "sequence_id": str(self._seq)}}
        await self.publish(json.dumps(msg, separators=(",", ":")).encode())

    async def publish(self, payload: bytes) -> None:
        if self._broker is not None:
            await self._broker.internal_message_broadcast(self.report_topic, payload, 0)
            self.reports += 1


# --- the lab ------------------------------------------------------------------------------------------------------

class BambuLab:
    """Fake printers on one event loop thread, with the hooks tests and planned faults use."""

    def __init__(self, printers: Sequence[FakePrinter], pki: Pki, *, owns_dir: bool = True) -> None:
        self.printers = {p.machine_id: p for p in printers}
        self.pki = pki
        self._owns_dir = owns_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        assert self._loop is not None, "the lab is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="bambu-sim", daemon=True)
        self._thread.start()
        for p in self.printers.values():
            try:
                self._call(p.start())
            except OSError as err:
                log.error("Bambu printer simulator for %s cannot listen on %s:%d (%s); free the port or change the "
                          "machine's port in the site file", p.machine_id, p.host, p.port, err)

    def stop(self) -> None:
        if self._loop is not None:
            for p in self.printers.values():
                with contextlib.suppress(Exception):
                    self._call(p.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5.0)
            self._loop.close()
            self._loop = None
        if self._owns_dir:
            shutil.rmtree(self.pki.dir, ignore_errors=True)

    def __enter__(self) -> BambuLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def printer(self, machine_id: str) -> FakePrinter:
        if machine_id not in self.printers:
            raise KeyError(f"no simulated printer {machine_id!r}; known: {', '.join(self.printers)}")
        return self.printers[machine_id]

    # --- faults and hooks ---------------------------------------------------------------------------------
    def away(self, machine_id: str) -> None:
        """The printer is switched off: its broker closes every connection and stops listening."""
        self._call(self.printer(machine_id).stop())

    def back(self, machine_id: str) -> None:
        """The printer is on again, at the same address and port."""
        self._call(self.printer(machine_id).start())

    def set_hms(self, machine_id: str, entries: Sequence[tuple[int, int]]) -> None:
        """Show these HMS entries (attr, code) from the next report on."""
        p = self.printer(machine_id)

        async def apply() -> None:
            p.cycle.hms = [{"attr": a, "code": c} for a, c in entries]
        self._call(apply())

    def publish_raw(self, machine_id: str, payload: bytes) -> None:
        """Publish any bytes on the printer's report topic."""
        self._call(self.printer(machine_id).publish(payload))

    def inject_fault(self, machine_id: str, fault: str, after_s: float = 0.0) -> None:
        p = self.printer(machine_id)
        if fault != "thermal_runaway":
            raise ValueError(f"printer {machine_id!r} cannot simulate {fault!r}; faults: {', '.join(FAULT_KINDS)}")

        async def apply() -> None:
            p.cycle.printer.inject_thermal_runaway(p.model_time() + after_s * p.time_scale)
        self._call(apply())

    def describe(self) -> list[str]:
        return [f"{p.machine_id} (Bambu Lab {p.cycle.series}, serial {p.serial}) -> mqtts://{p.host}:{p.port} "
                f"{p.report_topic}" for p in self.printers.values()]


def new_lab(printers: Sequence[tuple[str, str, str]], *, series: Series | Mapping[str, Series] = "X1",
            host: str = "127.0.0.1", ports: Mapping[str, int] | None = None, seed: int = 1, interval_s: float = 1.0,
            time_scale: float = DEMO_TIME_SCALE, job_minutes: tuple[float, float] = (20.0, 120.0),
            gap_minutes: tuple[float, float] = (2.0, 15.0), start_progress: bool = True,
            error_probability: float = 0.03) -> BambuLab:
    """Fake printers for (machine id, serial, access code) triples, with fresh TLS material; `ports`: where each
    listens (default: a free port)."""
    pki = make_pki(Path(tempfile.mkdtemp(prefix="kartech-bambu-sim-")), [s for _, s, _ in printers])
    out: list[FakePrinter] = []
    for mid, serial, code in printers:
        pick = random.Random(f"{seed}:{mid}")
        model = Printer(seed=pick.randrange(2**32), job_minutes=job_minutes, gap_minutes=gap_minutes,
                        start_progress_pct=pick.uniform(5.0, 80.0) if start_progress else None,
                        error_probability=error_probability)
        s = series.get(mid, "X1") if isinstance(series, Mapping) else series
        ams = Ams(remain=[float(pick.randint(5, 100)) for _ in SPOOLS], loaded=pick.randrange(len(SPOOLS)))
        out.append(FakePrinter(mid, serial, code, PrintCycle(model, s, ams=ams), host=host,
                               port=(ports or {}).get(mid, 0), cert=pki.certs[serial], interval_s=interval_s,
                               time_scale=time_scale))
    return BambuLab(out, pki)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class BambuSimulator:
    """The virtual-lab part of the Bambu driver (named by its DRIVER spec): a fake printer for every machine on
    this host, at its configured port (or a free one); `reachable` points the gateway at it with the lab's CA."""

    def __init__(self, machines: Sequence[BambuMachine], env: SimulatorEnv) -> None:
        mine = [m for m in machines if m.host in LOOPBACK_HOSTS]
        self.machines = {m.id: m for m in mine}
        self.lab = new_lab([(m.id, m.serial, m.access_code) for m in mine], seed=env.seed,
                           ports={m.id: 0 if env.free_ports else m.port for m in mine},
                           series={m.id: _series(m.serial) for m in mine},
                           interval_s=min((m.expected_interval_s for m in mine), default=1.0))
        self.faults = [f for f in env.faults if f.get("machine") in self.machines]
        self.free_ports = env.free_ports
        self._planned: list[str] = []

    def start(self) -> None:
        self.lab.start()
        if not self.free_ports:  # `kartech simulate`: a gateway started on its own finds the lab's CA where the
            # site file says (the demo instead points its gateway at it, see `reachable`)
            for m in self.machines.values():
                if m.tls.ca_file is not None:
                    target = Path(m.tls.ca_file).expanduser()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.lab.pki.ca_file, target)
        for f in self.faults:
            self.lab.inject_fault(str(f["machine"]), str(f.get("fault", "thermal_runaway")),
                                  float(f.get("after_s", 0)))
            self._planned.append(f"fault {f.get('fault')} on {f['machine']} in {float(f.get('after_s', 0)):g} s")

    def stop(self) -> None:
        self.lab.stop()

    def describe(self) -> list[str]:
        return self.lab.describe() + self._planned

    def reachable(self, machine: MachineBase) -> MachineBase:
        if not isinstance(machine, BambuMachine) or machine.id not in self.machines:
            return machine
        p = self.lab.printer(machine.id)
        return machine.model_copy(update={"port": p.port, "tls": PrinterTls(ca_file=str(self.lab.pki.ca_file))})


def _series(serial: str) -> Series:
    """X1 series serials start with 00M (X1C) or 00W (X1E) — they send full reports; others send deltas."""
    return "X1" if serial.startswith(("00M", "00W")) else "P1"


simulator = BambuSimulator
