"""The virtual board's serial ports besides USB: the GPS and RC receiver inputs.

On a bench these UARTs are wired to USB-UART adapters on which the harness plays the GPS
receiver and the radio receiver. Here each is a pty that lives as long as the board
process (a reboot does not rewire the bench), announced in the registry under `uarts`.
The board reads them with its own UBX/NMEA and CRSF/SBUS drivers, as firmware does.

In lockstep the harness writes a UART's bytes before the HIL_SENSOR of the same step and
the board drains every UART before it runs that step's loop, so the data is used in the
step it belongs to (a pty may, rarely, hand the bytes over one step late).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hil.vfc.pty import Pty

GPS_PROTOCOLS = ("ubx", "nmea", "auto")
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

    @property
    def paths(self) -> dict[str, str]:
        return {name: pty.path for name, pty in self.ptys.items()}

    def poll(self, copter: Any, t_us: int) -> bool:
        """Feed whatever arrived to the drivers and the flight software; True on a new GPS fix."""
        new_fix = False
        gps_pty = self.ptys.get("gps")
        if gps_pty is not None and self._gps is not None:
            data = gps_pty.read()
            if data:
                for fix in self._gps.feed(data):
                    copter.on_gps(
                        t_us, fix.fix_type, fix.lat_deg, fix.lon_deg, fix.alt_m,
                        tuple(fix.vel_ned), fix.eph_m, fix.epv_m, fix.satellites,
                    )
                    self.last_gps = _gps_raw(fix)
                    if fix.jamming_indicator is not None:
                        self.jamming_indicator = fix.jamming_indicator
                    new_fix = True
        rc_pty = self.ptys.get("rc")
        if rc_pty is not None and self._rc is not None:
            data = rc_pty.read()
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
