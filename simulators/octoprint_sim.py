"""An OctoPrint server with a printer connected, as its REST API documents it, and the virtual-lab part for it.

Field names and words follow OctoPrint's docs (docs.octoprint.org: api/printer, api/job, api/datamodel) and its
code (src/octoprint/server/api/printer.py):

- `GET /api/printer`: `temperature.tool0` / `bed` (`actual`, `target`, `offset`), `sd.ready`, `state.text` and
  `state.flags`; `409 Conflict` with `{"error": "Printer is not operational"}` while the printer is not connected;
- `GET /api/job`: `job.file` (`name`, `display`, `path`, `origin`, `size`, `date`), `estimatedPrintTime`,
  `progress` (`completion` in percent, `filepos`, `printTime`, `printTimeLeft`, all null before the first print),
  `state` ("Operational", "Printing", "Paused", "Offline", "Offline after error"), `error` after an error;
- `X-Api-Key`: a missing or wrong key gets `403 Forbidden` (the anonymous user lacks the STATUS permission);
  anything but GET is refused (405) and counted in `writes`.

The print cycle is `simulators.dynamics.Printer`; a firmware error disconnects the printer ("Offline after
error", 409) until the simulated technician reconnects it when it has cooled down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Literal

from drivers.octoprint.config import OctoPrintMachine
from simulators.dynamics import Printer
from simulators.http_sim import HttpLab, HttpSim, Request, Response
from simulators.lab import SimulatorEnv

PRINT_FILES = (
    "gripper_finger_tpu_ender3.gcode",
    "conveyor_roller_ender3.gcode",
    "sensor_enclosure_ender3.gcode",
    "hinge_clip_ender3.gcode",
    "calibration_cube_ender3.gcode",
)
FORBIDDEN = {"error": "You don't have the permission to access the requested resource. It is either read-protected "
                      "or not readable by the server."}
Corruption = Literal["malformed_json", "unexpected_shape"]
FLAGS = ("operational", "printing", "cancelling", "pausing", "resuming", "finishing", "closedOrError", "error",
         "paused", "ready", "sdReady")


class OctoPrintServer:
    """One simulated OctoPrint with its printer: answers requests from the printer's print cycle."""

    def __init__(self, *, api_key: str, seed: int = 1, time_scale: float = 10.0,
                 job_minutes: tuple[float, float] = (20.0, 90.0), gap_minutes: tuple[float, float] = (2.0, 6.0),
                 start_progress_pct: float | None = None) -> None:
        self.model = Printer(seed=seed, files=PRINT_FILES, job_minutes=job_minutes, gap_minutes=gap_minutes,
                             start_progress_pct=start_progress_pct, nozzle_c=200.0, error_probability=0.02)
        self.api_key = api_key
        self.time_scale = time_scale
        self.connected = True  # the printer's serial connection to OctoPrint
        self.writes = 0
        self.corrupt: Corruption | None = None
        self._t0 = time.monotonic()
        self._last_t: float | None = None
        self._job_id: int | None = None
        self._printing_s = 0.0

    def _step(self) -> dict[str, Any]:
        t = (time.monotonic() - self._t0) * self.time_scale
        v = dict(self.model.step(t))
        job = self.model.job
        if job is not None and job.job_id != self._job_id:
            self._job_id, self._printing_s = job.job_id, 0.0
        if self._last_t is not None and self.model.stage in ("heating", "printing", "paused"):
            self._printing_s += t - self._last_t
        self._last_t = t
        return v

    def _text(self) -> str:
        if not self.connected:
            return "Offline"
        return {"heating": "Printing", "printing": "Printing", "paused": "Paused",
                "error": "Offline after error"}.get(self.model.stage, "Operational")

    def printer(self) -> Response:
        v = self._step()
        text = self._text()
        if text.startswith("Offline"):
            return _json({"error": "Printer is not operational"}, 409)
        flags = dict.fromkeys(FLAGS, False)
        flags["operational"] = True
        flags["printing"] = text == "Printing"
        flags["paused"] = text == "Paused"
        flags["ready"] = text == "Operational"
        doc: dict[str, Any] = {
            "temperature": {"tool0": {"actual": v["nozzle_temp"], "target": v["nozzle_target"], "offset": 0},
                            "bed": {"actual": v["bed_temp"], "target": v["bed_target"], "offset": 0}},
            "sd": {"ready": False},
            "state": {"text": text, "flags": flags, "error": ""},
        }
        match self.corrupt:
            case "malformed_json":
                return Response(200, b'{"temperature": {"tool0": {"actual": 21', "application/json")
            case "unexpected_shape":
                doc["state"] = "Printing"
        return _json(doc)

    def job(self) -> Response:
        v = self._step()
        job = self.model.job
        text = self._text()
        out: dict[str, Any] = {"job": {"file": dict.fromkeys(("name", "display", "path", "origin", "size", "date")),
                                       "estimatedPrintTime": None, "filament": None, "user": None},
                               "progress": dict.fromkeys(("completion", "filepos", "printTime", "printTimeLeft",
                                                          "printTimeLeftOrigin")),
                               "state": text}
        if job is not None:
            size = 1_468_987
            progress = float(v["progress_pct"])
            remaining = int(v["remaining_s"])
            out["job"] = {"file": {"name": job.file, "display": job.file, "path": job.file, "origin": "local",
                                   "size": size, "date": 1_764_500_000},
                          "estimatedPrintTime": round(job.print_s), "filament": {"tool0": {"length": 810.0,
                                                                                          "volume": 5.36}},
                          "user": "lab"}
            out["progress"] = {"completion": round(progress, 2), "filepos": int(size * progress / 100.0),
                               "printTime": int(self._printing_s), "printTimeLeft": remaining,
                               "printTimeLeftOrigin": "estimate"}
        if text == "Offline after error":
            out["error"] = "Printer halted. kill() called!"
        return _json(out)

    def handle(self, req: Request) -> Response:
        if req.method != "GET":
            self.writes += 1
            return _json({"error": "Method Not Allowed"}, 405)
        if req.headers.get("x-api-key") != self.api_key:
            return _json(FORBIDDEN, 403)
        if req.path == "/api/printer":
            return self.printer()
        if req.path == "/api/job":
            return self.job()
        return _json({"error": "Not Found"}, 404)


def _json(doc: object, status: int = 200) -> Response:
    return Response(status, json.dumps(doc, allow_nan=False).encode(), "application/json")


class OctoPrintLab(HttpLab[OctoPrintServer]):
    """The virtual-lab part: one simulated OctoPrint per machine whose url is on this host."""

    machine_type = OctoPrintMachine

    def __init__(self, machines: Sequence[OctoPrintMachine], *, seed: int = 1, free_ports: bool = False,
                 time_scale: float = 10.0) -> None:
        super().__init__()
        for i, m in enumerate(machines):
            if (port := self.local_port(m.url, free_ports)) is None:
                continue
            server = OctoPrintServer(api_key=m.api_key, seed=seed + 100 + i, time_scale=time_scale)
            self.sims[m.id] = HttpSim(server, port=port, name=m.id)

    def describe(self) -> list[str]:
        return [f"octoprint: {mid} at {s.url} (OctoPrint REST API, X-Api-Key)" for mid, s in self.sims.items()]


def simulator(machines: Sequence[OctoPrintMachine], env: SimulatorEnv) -> OctoPrintLab:
    """The virtual-lab part of the OctoPrint driver (named by its DRIVER spec)."""
    return OctoPrintLab(machines, seed=env.seed, free_ports=env.free_ports)
