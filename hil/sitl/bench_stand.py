"""A stand-in for a Betaflight board on a bench: the bench SITL variant, at rest.

A `betaflight` board in a rig names real hardware: an MSP port and a receiver UART. On
a machine with no such board, a rig gives it a stand-in (``[board.stand_in]``,
``kind = "betaflight-sitl"``): the harness starts the bench variant of Betaflight SITL
(`hil.sitl.bench_build`: serial RX on, its TCP UARTs behaving like UARTs) on loopback,
where its UART n listens on TCP 5760 + n, so the board's own ``url`` and receiver
``device`` (``socket://127.0.0.1:5761``, ``socket://127.0.0.1:5762``) reach it exactly as
they would reach a board through a network serial server.

The SITL cannot run its loop without sensor packets; a bench board has its own sensors,
sitting still. So the stand-in sends what a board at rest on a level bench reads: no
rotation, gravity on the accelerometer, a level attitude, standard pressure, at
`REST_RATE_HZ`, stamped like the Betaflight loop stamps them (`hil.sim.betaflight_loop`)
so the firmware's clock stays the host's. Nothing moves: the bench board has no physics.

One stand-in per host (the SITL's ports are fixed): it holds the host-wide lock the
``betaflight-sitl`` board uses on loopback, and says so while it waits.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError
from hil.locks import BoardLock
from hil.sitl.betaflight import HOST_PORTS_LOCK, STATE_PORT, UART_TCP_BASE, BetaflightSitl

log = logging.getLogger(__name__)

#: Sensor packets per second while at rest (the firmware's gyro task samples the latest).
REST_RATE_HZ = 500.0
#: The state packet (PROTOCOLS.md section 10): stamp, gyro FRD rad/s, specific force FRD
#: m/s^2, attitude quaternion (w, x, y, z), ENU velocity, (lon, lat, alt), pressure Pa.
STATE = struct.Struct("<d3d3d4d3d3dd")
GRAVITY = 9.80665
SEA_LEVEL_PA = 101325.0
#: As the Betaflight loop stamps: whole steps the SITL never reads as a clock rate.
STAMP_QUANTUM_S = 1 / 32

STAND_IN_KINDS = ("betaflight-sitl",)


def rest_packet(stamp_s: float, lat: float = 0.0, lon: float = 0.0, alt_m: float = 0.0) -> bytes:
    """One state packet of a board lying level and still."""
    return STATE.pack(
        stamp_s, 0.0, 0.0, 0.0, 0.0, 0.0, -GRAVITY, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, lon, lat, alt_m,
        SEA_LEVEL_PA,
    )


class BetaflightBenchStandIn:
    """Starts and stops the bench SITL and its at-rest sensor feed."""

    def __init__(
        self,
        work_dir: Path,
        *,
        executable: Path | None = None,
        lock_dir: Path | None = None,
        lock_wait: float = 600.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self._executable = executable
        self._lock_dir = lock_dir
        self._lock_wait = lock_wait
        self.sitl: BetaflightSitl | None = None
        self._lock: BoardLock | None = None
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self.packets_sent = 0

    @classmethod
    def from_spec(cls, where: str, spec: Any, work_dir: Path, rig_dir: Path, lock_dir: Path | None) -> BetaflightBenchStandIn:
        """From a ``[board.stand_in]`` table; ConfigError names what is wrong."""
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}.stand_in must be a table such as {{ kind = \"betaflight-sitl\" }}")
        unknown = sorted(set(spec) - {"kind", "executable", "lock_wait"})
        if unknown:
            raise ConfigError(f"{where}.stand_in: unknown key(s) {', '.join(map(repr, unknown))}; known: kind, executable, lock_wait")
        kind = spec.get("kind")
        if kind not in STAND_IN_KINDS:
            raise ConfigError(f"{where}.stand_in.kind = {kind!r}: must be one of: {', '.join(STAND_IN_KINDS)}")
        exe = spec.get("executable")
        if exe is not None:
            if not isinstance(exe, str) or not exe:
                raise ConfigError(f"{where}.stand_in.executable must be a path")
            path = Path(exe).expanduser()
            exe = path if path.is_absolute() else rig_dir / path
        wait = spec.get("lock_wait", 600.0)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= 86400:
            raise ConfigError(f"{where}.stand_in.lock_wait = {wait!r}: must be seconds from 0 to 86400")
        return cls(work_dir, executable=exe, lock_dir=lock_dir, lock_wait=float(wait))

    # -- what a rig board sees -------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.sitl is not None and self.sitl.alive

    @property
    def log_path(self) -> Path | None:
        return self.sitl.log_path if self.sitl is not None else None

    @staticmethod
    def uart_url(uart: int) -> str:
        return f"socket://127.0.0.1:{UART_TCP_BASE + uart}"

    def describe(self) -> str:
        return "Betaflight bench SITL (stand-in for the board), on loopback"

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        if self.alive:
            return
        from hil.sitl.bench_build import bench_executable

        exe = self._executable or bench_executable()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = BoardLock(HOST_PORTS_LOCK, self._lock_dir, wait=self._lock_wait)
            self._lock.acquire()
        sitl = BetaflightSitl(self.work_dir, executable=exe, isolation="loopback")
        try:
            sitl.start()
        except BaseException:
            self._release()
            raise
        self.sitl = sitl
        self._stop.clear()
        self._feeder = threading.Thread(target=self._feed, name="bench-rest-feed", daemon=True)
        self._feeder.start()

    def restart(self, timeout: float = 10.0) -> None:
        """What pulling the USB cable does: the firmware starts again from its saved settings."""
        if self.sitl is None:
            raise HilError("the bench stand-in is not running")
        self.sitl.restart(timeout)

    @property
    def generation(self) -> int:
        return self.sitl.generation if self.sitl is not None else 0

    def wait_restarted(self, generation: int, timeout: float = 10.0) -> None:
        if self.sitl is None:
            raise HilError("the bench stand-in is not running")
        self.sitl.wait_restarted(generation, timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join(2.0)
            self._feeder = None
        if self.sitl is not None:
            self.sitl.stop()
            self.sitl = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _feed(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        period = 1.0 / REST_RATE_HZ
        t0 = time.monotonic()
        next_t = t0
        try:
            while not self._stop.is_set():
                sitl = self.sitl
                if sitl is None:
                    return
                now = time.monotonic()
                if sitl.ready_generation != sitl.generation:
                    # Booting: a state packet before init() is done crashes the firmware
                    # (BetaflightSitl.ready_generation); none until it answers MSP.
                    next_t = now
                    self._stop.wait(0.01)
                    continue
                wall = sitl.uptime
                stamp = (wall // STAMP_QUANTUM_S) * STAMP_QUANTUM_S
                try:
                    sock.sendto(rest_packet(stamp), ("127.0.0.1", STATE_PORT))
                    self.packets_sent += 1
                except OSError:
                    pass  # the firmware is restarting; it takes packets again when it is back
                next_t += period
                if next_t < now - 0.1:
                    next_t = now  # after a stall, go on from now rather than burst
                self._stop.wait(max(0.0, next_t - time.monotonic()))
        finally:
            sock.close()
