"""A pilot who flies an MSP board's quad to a point on the sticks, in ANGLE mode.

The real-time Betaflight loop has a pilot on the throttle who holds an altitude
(`hil.sim.pilot.AltitudePilot`); this one adds the roll and pitch sticks, by
eye (the simulator's true position), as a pilot flying line of sight does: a speed
towards the point that falls off near it, a tilt from the speed error, a stick from the
tilt. Yaw is left alone: the quad keeps the heading it took off with (north in the
simulation), so pitch moves it north-south and roll east-west in the body frame, which
the pilot turns by the heading it sees.

It runs in its own thread at `RATE_HZ` and only calls ``loop.set_sticks`` and reads
``loop.pose()`` and ``loop.vehicle``; ``stop()`` centres the sticks.
"""

from __future__ import annotations

import math
import threading

#: Stick updates per second (a radio's frame rate).
RATE_HZ = 50.0
#: Betaflight's ANGLE mode: full stick (500 us) is `angle_limit` degrees (60 on 4.6,
#: pid.c ANGLE mode, pidProfile angle_limit default); the pilot uses at most MAX_TILT.
FULL_STICK_DEG = 60.0
MAX_TILT_DEG = 20.0
#: Speed towards the point (m/s) per metre away, and its cap.
SPEED_GAIN = 0.5
MAX_SPEED = 6.0
#: Tilt (degrees) per m/s of speed error.
TILT_PER_MPS = 4.0


class PositionPilot:
    """Flies ``loop`` to (north, east) m from home on the roll and pitch sticks."""

    def __init__(self, loop, north: float, east: float) -> None:
        self.loop = loop
        self.target = (float(north), float(east))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="position-pilot", daemon=True)

    def start(self) -> PositionPilot:
        self._thread.start()
        return self

    def distance(self) -> float:
        """Metres from the point now (true position)."""
        _alt, n, e, _speed, _roll, _pitch = self.loop.pose()
        return math.hypot(self.target[0] - n, self.target[1] - e)

    def sticks(self) -> tuple[int, int]:
        """(roll, pitch) stick in us for the vehicle's state now."""
        v = self.loop.vehicle
        n, e = float(v.pos[0]), float(v.pos[1])
        vn, ve = float(v.vel[0]), float(v.vel[1])
        _roll, _pitch, yaw = v.euler()
        dn, de = self.target[0] - n, self.target[1] - e
        dist = math.hypot(dn, de)
        speed = min(MAX_SPEED, SPEED_GAIN * dist)
        want_n, want_e = (speed * dn / dist, speed * de / dist) if dist > 1e-6 else (0.0, 0.0)
        # Tilt in the earth frame: towards the speed error.
        tn = max(-MAX_TILT_DEG, min(MAX_TILT_DEG, TILT_PER_MPS * (want_n - vn)))
        te = max(-MAX_TILT_DEG, min(MAX_TILT_DEG, TILT_PER_MPS * (want_e - ve)))
        # Into the body frame by the heading: pitch forward (nose down) is + on the stick.
        c, s = math.cos(yaw), math.sin(yaw)
        forward = c * tn + s * te
        right = -s * tn + c * te
        pitch = 1500 + int(round(500.0 * forward / FULL_STICK_DEG))
        roll = 1500 + int(round(500.0 * right / FULL_STICK_DEG))
        return roll, pitch

    def _run(self) -> None:
        period = 1.0 / RATE_HZ
        while not self._stop.wait(period):
            roll, pitch = self.sticks()
            self.loop.set_sticks(roll=roll, pitch=pitch)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.loop.set_sticks()  # centred: ANGLE levels the craft


def fly_to(wait, loop, target: tuple[float, float], *, arrive_m: float = 2.0, within: float | None = None) -> None:
    """Fly ``loop``'s quad to ``target`` (north, east) m and let it settle there, sticks
    centred; ``wait(what, predicate, within)`` is the runner's bounded wait (it names what
    it waited for when it times out)."""
    pilot = PositionPilot(loop, *target).start()
    far = pilot.distance()
    try:
        wait(
            f"arrival within {arrive_m:.0f} m of ({target[0]:.0f} N, {target[1]:.0f} E)",
            lambda: pilot.distance() < arrive_m and loop.pose()[3] < 1.0,
            within=within if within is not None else 15.0 + far / 2.0,
        )
    finally:
        pilot.stop()
