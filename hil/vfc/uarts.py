"""The virtual board's serial ports besides USB: the GPS and RC receiver inputs.

On a bench these UARTs are wired to USB-UART adapters on which the harness plays the GPS
receiver and the radio receiver. Here each is a pty that lives as long as the board
process (a reboot does not rewire the bench), announced in the registry under `uarts`.
The board reads them with its own UBX/NMEA and CRSF/SBUS drivers, as firmware does.

In lockstep the harness announces, before each step's HIL_SENSOR, how many bytes it
wrote to each UART for that step (hil.mavlink.uart_marker). The board then feeds its
drivers exactly those bytes before it runs the step: it waits for any the kernel has not
handed over yet and holds back any that belong to the next step. Without announcements
(a board in real time) it feeds whatever has arrived.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass
from typing import Any

from hil.vfc.pty import Pty

GPS_PROTOCOLS = ("ubx", "nmea", "auto")
#: How long the board waits for announced UART bytes still in the kernel (wall seconds).
UART_WAIT_S = 2.0
RC_PROTOCOLS = ("crsf", "sbus")


@dataclass(frozen=True)
class GpsRaw:
    """The last GPS fix in GPS_RAW_INT units, for the board's telemetry."""

    fix_type: int
    lat: int
    lon: int
    alt: int
    eph: int
    epv: int
    vel: int
    cog: int
    satellites_visible: int


def parse_uart_spec(text: str) -> tuple[str, str]:
    """`gps=ubx` or `rc=crsf` -> (name, protocol); ValueError naming what is allowed."""
    name, _, protocol = text.partition("=")
    allowed = {"gps": GPS_PROTOCOLS, "rc": RC_PROTOCOLS}
    if name not in allowed:
        raise ValueError(f"UART {name!r}: not one of {', '.join(allowed)} (e.g. gps=ubx, rc=crsf)")
    if protocol not in allowed[name]:
        raise ValueError(f"UART {name}: protocol {protocol!r} is not one of {', '.join(allowed[name])}")
    return name, protocol


class BoardUarts:
    """The board's GPS and RC UARTs, their drivers, and what they last delivered."""

    def __init__(self, spec: dict[str, str]) -> None:
        from hil.vfc.gps_uart import GpsUartParser
        from hil.vfc.rc_uart import RcUartInput

        self.ptys: dict[str, Pty] = {}
        self._gps = GpsUartParser(spec["gps"]) if "gps" in spec else None
        self._rc = RcUartInput(spec["rc"]) if "rc" in spec else None
        for name in spec:
            self.ptys[name] = Pty.open()
        self.last_gps: GpsRaw | None = None
        self.rc_lq: int | None = None
        self.rc_rssi_dbm: int | None = None
        self.jamming_indicator: int | None = None
        #: Bytes announced by the harness and not yet fed, per UART; a UART is in here
        #: once it has been announced (sequenced) until the firmware restarts.
        self._owed: dict[str, int] = {}
        #: Bytes read ahead of the announcements (they belong to a later step).
        self._held: dict[str, bytearray] = {name: bytearray() for name in self.ptys}
        #: What went wrong with the last sequenced read, for a STATUSTEXT ("" if nothing).
        self.shortfall = ""

    @property
    def paths(self) -> dict[str, str]:
        return {name: pty.path for name, pty in self.ptys.items()}

    def announce(self, name: str, count: int) -> None:
        """The harness wrote `count` more bytes to UART `name` for the coming step."""
        if name in self.ptys:
            self._owed[name] = self._owed.get(name, 0) + count

    def reset(self) -> None:
        """The firmware restarts: forget announcements and drop whatever is waiting."""
        self._owed.clear()
        for name, pty in self.ptys.items():
            self._held[name].clear()
            while pty.read():
                pass
        self.shortfall = ""

    def _take(self, name: str, pty: Pty) -> bytes:
        """The bytes of UART `name` that belong to the step about to run."""
        held = self._held[name]
        owed = self._owed.get(name)
        if owed is None:  # not sequenced: everything that has arrived
            data = pty.read()
            if held:
                data = bytes(held) + data
                held.clear()
            return data
        if owed == 0:
            return b""
        deadline = None
        while len(held) < owed:
            chunk = pty.read()
            if chunk:
                held += chunk
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = now + UART_WAIT_S
            elif now >= deadline:
                self.shortfall = (
                    f"UART {name}: {owed} bytes announced for this step, only {len(held)} "
                    f"arrived within {UART_WAIT_S:g} s"
                )
                owed = len(held)
                break
            select.select([pty.master_fd], [], [], min(0.05, deadline - now))
        data = bytes(held[:owed])
        del held[:owed]
        self._owed[name] = 0
        return data

    def poll(self, copter: Any, t_us: int) -> bool:
        """Feed whatever arrived to the drivers and the flight software; True on a new GPS fix."""
        new_fix = False
        gps_pty = self.ptys.get("gps")
        if gps_pty is not None and self._gps is not None:
            data = self._take("gps", gps_pty)
            if data:
                for fix in self._gps.feed(data):
                    copter.on_gps(
                        t_us, fix.fix_type, fix.lat_deg, fix.lon_deg, fix.alt_m,
                        tuple(fix.vel_ned), fix.eph_m, fix.epv_m, fix.satellites,
                        hdop=fix.hdop,
                    )
                    self.last_gps = _gps_raw(fix)
                    if fix.jamming_indicator is not None:
                        self.jamming_indicator = fix.jamming_indicator
                    new_fix = True
        rc_pty = self.ptys.get("rc")
        if rc_pty is not None and self._rc is not None:
            data = self._take("rc", rc_pty)
            if data:
                for report in self._rc.feed(data, t_us):
                    if report.lq is not None:
                        self.rc_lq = report.lq
                    if report.rssi_dbm is not None:
                        self.rc_rssi_dbm = report.rssi_dbm
                    if report.valid and report.channels_us:
                        copter.on_rc(t_us, list(report.channels_us))
        return new_fix

    def close(self) -> None:
        for pty in self.ptys.values():
            pty.close()


def _gps_raw(fix: Any) -> GpsRaw:
    import math

    vn, ve, _ = fix.vel_ned
    speed = math.hypot(vn, ve)
    cog = int(round((math.degrees(math.atan2(ve, vn)) % 360.0) * 100)) if speed > 0.2 else 0xFFFF

    def cm(x: float) -> int:
        return 0xFFFF if not math.isfinite(x) else int(max(0, min(0xFFFE, round(x * 100))))

    return GpsRaw(
        fix_type=int(fix.fix_type),
        lat=int(round(fix.lat_deg * 1e7)),
        lon=int(round(fix.lon_deg * 1e7)),
        alt=int(round(fix.alt_m * 1000)),
        eph=cm(fix.eph_m),
        epv=cm(fix.epv_m),
        vel=cm(speed),
        cog=cog,
        satellites_visible=int(fix.satellites),
    )
