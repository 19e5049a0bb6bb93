"""Serial driver: one port, one machine — a Marlin-family printer or a line-based instrument.

`run()` opens the port (exclusively, DTR low so the board does not reset), reports the machine connected and runs
the protocol session until the port goes away. On unplug, a closed pty or a silent device it emits `state`
`offline` for the machine, releases the port and raises `DriverUnavailable`; the supervisor calls `run()` again
with capped, jittered backoff, so the machine comes back by itself when the device does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from drivers.serial.config import SerialMachine
from drivers.serial.instrument import InstrumentSession
from drivers.serial.printer import PrinterModel
from drivers.serial.printer_session import PrinterSession
from drivers.serial.session import FirmwareSilent
from drivers.serial.transport import PortLost, PortSettings, SerialLink, open_port
from gateway.driver import DriverContext, Retry
from gateway.errors import DriverUnavailable
from gateway.reading import Quality, Reading, now_ns

log = logging.getLogger(__name__)


class SerialDriver:
    retry = Retry()

    def __init__(self, machine: SerialMachine) -> None:
        self.machine = machine
        self.name = f"serial:{machine.id}"
        self.machine_ids = [machine.id]
        self.settings = PortSettings.of(machine)
        # the printer's job state outlives a reconnect: a replugged cable is not a new job
        self.model = PrinterModel(machine.id, heater_power_full_scale=machine.printer_options().heater_power_full_scale)
        self.online = False

    async def run(self, ctx: DriverContext) -> None:
        ser = await asyncio.to_thread(open_port, self.settings)
        link: SerialLink | None = None
        try:
            link = SerialLink(ser, self.settings)
            ctx.connected()
            self.online = True
            log.info("%s: opened %s at %d baud", self.name, self.settings.port, self.settings.baud_rate)
            if self.machine.protocol == "marlin":
                await ctx.emit(self.model.on_connected(now_ns()))
                await PrinterSession(self.machine.id, self.settings, self.machine.printer_options(), self.model,
                                     ctx).run(link)
            else:
                assert self.machine.instrument is not None
                await InstrumentSession(self.machine.id, self.settings, self.machine.instrument, ctx,
                                        hold_s=self.machine.expected_interval_s).run(link)
        except (PortLost, FirmwareSilent) as err:
            await self._offline(ctx)
            raise DriverUnavailable(str(err)) from err
        finally:
            if link is not None:
                link.close()
            else:
                with contextlib.suppress(Exception):
                    ser.close()

    async def _offline(self, ctx: DriverContext) -> None:
        """Say at once that the machine is offline (instead of waiting for its data to go stale)."""
        if not self.online:
            return
        self.online = False
        t = now_ns()
        if self.machine.protocol == "marlin":
            readings = self.model.on_link_lost(t)
        else:
            readings = [Reading(self.machine.id, "state", "offline", None, Quality.GOOD, t, t)]
        await ctx.emit(readings)
