"""A Prusa printer's PrusaLink, as the firmware of an MK4 / XL / MINI serves it, and the virtual-lab part for it.

What it speaks follows the PrusaLink OpenAPI spec (prusa3d/Prusa-Link-Web, spec/openapi.yaml) and the Buddy
firmware's web server (lib/WUI/nhttp):

- `GET /api/v1/status`, `GET /api/v1/job` (204 No Content without a job), `GET /api/v1/info`; any other method
  is refused with 405 and counted in `writes` (the gateway must never send one);
- HTTP Digest (RFC 7616 with MD5, in the form without `qop` the firmware uses): a 401 carries
  `WWW-Authenticate: Digest realm="Printer API", nonce="<16 hex digits>", stale=false`; the response is
  MD5(HA1:nonce:HA2) with HA1 = MD5(user:realm:password) and HA2 = MD5(method:request-target); a nonce lives
  `nonce_lifetime_s` (5 s on the firmware), after which a right answer gets a new nonce with `stale=true`;
- the older `X-Api-Key` header, checked against the same password as on the firmware; a wrong key gets 401 with
  `WWW-Authenticate: ApiKey realm="Printer API"`;
- printer states IDLE, PRINTING (heating up included), ATTENTION (filament run-out, the job PAUSED), ERROR,
  FINISHED and STOPPED (the job shown until the printer is idle again).

The print cycle is `simulators.dynamics.Printer` (heat up, print with progress, maybe a run-out or an error, cool
down, idle, the next job), run `time_scale` times faster than the wall clock.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

from drivers.prusalink.config import PrusaLinkMachine
from simulators.dynamics import Printer
from simulators.http_sim import HttpLab, HttpSim, Request, Response
from simulators.lab import SimulatorEnv

REALM = "Printer API"
PRINT_FILES = (
    "bracket_v3_0.4n_0.2mm_PLA_MK4_1h12m.bgcode",
    "mine_sensor_mount_0.4n_0.2mm_PETG_MK4_2h5m.bgcode",
    "drone_arm_petg_0.4n_0.15mm_PETG_MK4_3h40m.bgcode",
    "sensor_enclosure_0.4n_0.2mm_PLA_MK4_58m.bgcode",
    "calibration_cube_0.4n_0.2mm_PLA_MK4_14m.bgcode",
)
Corruption = Literal["malformed_json", "unexpected_shape", "unknown_state"]
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def md5_hex(*parts: str) -> str:
    return hashlib.md5(":".join(parts).encode(), usedforsecurity=False).hexdigest()


class DigestGuard:
    """PrusaLink's Digest check (Buddy firmware: nonce = 32 random bits and the seconds since boot, in hex)."""

    def __init__(self, username: str, password: str, *, nonce_lifetime_s: float = 5.0) -> None:
        self.username = username
        self.password = password
        self.lifetime_s = nonce_lifetime_s
        self._random = secrets.randbits(32) or 1
        self._boot = time.monotonic()
        self.challenges = 0  # 401s sent, for tests

    def _now(self) -> int:
        return int(time.monotonic() - self._boot)

    def new_nonce(self) -> str:
        return f"{self._random:08x}{self._now():08x}"

    def _fresh(self, nonce: str) -> bool:
        if not re.fullmatch(r"[0-9a-f]{16}", nonce):
            return False
        rnd, ticks = int(nonce[:8], 16), int(nonce[8:], 16)
        return rnd == self._random and 0 <= time.monotonic() - self._boot - ticks < self.lifetime_s

    def check(self, req: Request) -> Response | None:
        """None when the request may pass; else the 401 to send."""
        header = req.headers.get("authorization", "")
        params = {m[1]: m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(header)}
        right = False
        nonce = params.get("nonce", "")
        if header.startswith("Digest ") and params.get("username") == self.username:
            ha1 = md5_hex(self.username, REALM, self.password)
            right = params.get("response") == md5_hex(ha1, nonce, md5_hex(req.method, req.target))
        if right and self._fresh(nonce):
            return None
        stale = "true" if right else "false"  # the client knows the password; only the nonce is old
        self.challenges += 1
        return Response(401, b"401: Unauthorized\n\n\n", "text/plain", (
            ("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{self.new_nonce()}", stale={stale}'),))


class PrusaLinkPrinter:
    """One simulated printer's PrusaLink: answers requests from its print cycle."""

    def __init__(self, *, password: str | None, username: str = "maker", seed: int = 1,
                 time_scale: float = 10.0, job_minutes: tuple[float, float] = (20.0, 90.0),
                 gap_minutes: tuple[float, float] = (2.0, 6.0), start_progress_pct: float | None = None,
                 nonce_lifetime_s: float = 5.0, serial: str = "10589-3742441633124") -> None:
        self.model = Printer(seed=seed, files=PRINT_FILES, job_minutes=job_minutes, gap_minutes=gap_minutes,
                             start_progress_pct=start_progress_pct, error_probability=0.02)
        self.password = password
        self.digest = DigestGuard(username, password, nonce_lifetime_s=nonce_lifetime_s) if password else None
        self.time_scale = time_scale
        self.serial = serial
        self.writes = 0  # requests other than GET: the gateway must never send one
        self.corrupt: Corruption | None = None  # the next status answers are broken this way
        self._t0 = time.monotonic()
        self._job_id: int | None = None
        self._printing_s = 0.0
        self._last_t: float | None = None
        self._failed = False  # the current job ended in an error (shown STOPPED while cooling)

    # --- the printer ---------------------------------------------------------------------------------------
    def _step(self) -> dict[str, Any]:
        t = (time.monotonic() - self._t0) * self.time_scale
        v = self.model.step(t)
        stage, job = self.model.stage, self.model.job
        if job is not None and job.job_id != self._job_id:
            self._job_id, self._printing_s, self._failed = job.job_id, 0.0, False
        if self._last_t is not None and stage in ("heating", "printing", "paused"):
            self._printing_s += t - self._last_t
        if stage == "error":
            self._failed = True
        self._last_t = t
        return v

    def _words(self) -> tuple[str, str | None]:
        """(printer state, job state or None without a job)."""
        stage = self.model.stage
        if stage in ("heating", "printing"):
            return "PRINTING", "PRINTING"
        if stage == "paused":
            return "ATTENTION", "PAUSED"
        if stage == "error":
            return "ERROR", "ERROR"
        if stage == "cooling" and self.model.job is not None:
            return ("STOPPED", "STOPPED") if self._failed else ("FINISHED", "FINISHED")
        return "IDLE", None

    def status(self) -> dict[str, Any]:
        v = self._step()
        printer_word, job_word = self._words()
        nozzle = float(v["nozzle_temp"])
        printer: dict[str, Any] = {
            "state": printer_word,
            "temp_nozzle": nozzle, "target_nozzle": v["nozzle_target"],
            "temp_bed": v["bed_temp"], "target_bed": v["bed_target"],
            "axis_z": round(0.2 * float(v["layer"]), 2),
            "flow": 100, "speed": 100,
            "fan_hotend": 6800 if nozzle > 50 else 0,
            "fan_print": 5200 if printer_word == "PRINTING" and self.model.stage == "printing" else 0,
        }
        if printer_word != "PRINTING":  # "available only when the printer is not moving"
            printer.update(axis_x=241.0, axis_y=170.0)
        out: dict[str, Any] = {"storage": {"path": "/usb/", "name": "usb", "read_only": False}, "printer": printer}
        if job_word is not None and self.model.job is not None:
            out["job"] = {"id": self.model.job.job_id, "progress": round(float(v["progress_pct"]), 2),
                          "time_remaining": int(v["remaining_s"]), "time_printing": int(self._printing_s)}
        return out

    def job(self) -> dict[str, Any] | None:
        status = self.status()
        _, job_word = self._words()
        job = self.model.job
        if job_word is None or job is None or "job" not in status:
            return None
        j = status["job"]
        short = re.sub(r"[^A-Z0-9]", "", job.file.upper())[:6] + "~1.BGC"
        return {"id": job.job_id, "state": job_word, "progress": j["progress"], "time_remaining": j["time_remaining"],
                "time_printing": j["time_printing"],
                "file": {"refs": {"icon": f"/thumb/s/usb/{short}", "thumbnail": f"/thumb/l/usb/{short}",
                                  "download": f"/usb/{short}"},
                         "name": short, "display_name": job.file, "path": "/usb", "size": 2_393_142,
                         "m_timestamp": 1_764_500_000}}

    def info(self) -> dict[str, Any]:
        return {"nozzle_diameter": 0.40, "mmu": False, "serial": self.serial, "hostname": "prusa-mk4",
                "min_extrusion_temp": 170}

    # --- HTTP ----------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method != "GET":
            self.writes += 1
            return Response(405, b"405: Method Not Allowed\n\n\n", "text/plain")
        if self.password is not None:
            if "x-api-key" in req.headers:
                if req.headers["x-api-key"] != self.password:
                    return Response(401, b"401: Unauthorized\n\n\n", "text/plain",
                                    (("WWW-Authenticate", f'ApiKey realm="{REALM}"'),))
            elif self.digest is not None and (refused := self.digest.check(req)) is not None:
                return refused
        if req.path == "/api/v1/status":
            return self._status_response()
        if req.path == "/api/v1/job":
            job = self.job()
            return Response(204, b"", "text/plain") if job is None else _json(job)
        if req.path == "/api/v1/info":
            return _json(self.info())
        return Response(404, b"404: Not Found\n\n\n", "text/plain")

    def _status_response(self) -> Response:
        status = self.status()
        match self.corrupt:
            case "malformed_json":
                return Response(200, b'{"printer": {"state": "PRINTING", "temp_noz', "application/json")
            case "unexpected_shape":
                return _json({"printer": [status["printer"]["state"]], "job": "none"})
            case "unknown_state":
                status["printer"]["state"] = "WARMING_UP"
        return _json(status)


def _json(doc: object) -> Response:
    return Response(200, json.dumps(doc, allow_nan=False).encode(), "application/json")


class PrusaLinkLab(HttpLab[PrusaLinkPrinter]):
    """The virtual-lab part: one simulated printer per machine whose url is on this host."""

    machine_type = PrusaLinkMachine

    def __init__(self, machines: Sequence[PrusaLinkMachine], *, seed: int = 1, free_ports: bool = False,
                 time_scale: float = 10.0) -> None:
        super().__init__()
        for i, m in enumerate(machines):
            if (port := self.local_port(m.url, free_ports)) is None:
                continue
            printer = PrusaLinkPrinter(password=m.password or m.api_key, username=m.username, seed=seed + i,
                                       time_scale=time_scale, start_progress_pct=35.0 if i == 0 else None)
            self.sims[m.id] = HttpSim(printer, port=port, name=m.id)

    def describe(self) -> list[str]:
        return [f"prusalink: {mid} at {s.url} (PrusaLink v1, {'Digest' if s.app.digest else 'no'} auth)"
                for mid, s in self.sims.items()]


def simulator(machines: Sequence[PrusaLinkMachine], env: SimulatorEnv) -> PrusaLinkLab:
    """The virtual-lab part of the PrusaLink driver (named by its DRIVER spec)."""
    return PrusaLinkLab(machines, seed=env.seed, free_ports=env.free_ports)

