"""In-process closed loop for the flight software tests: Quadrotor + sensors -> Copter.

400 Hz lockstep like the real harness: IMU, baro and compass every step, GPS at 10 Hz,
RC at 50 Hz (sticks centred), battery at 10 Hz, GCS heartbeat at 1 Hz. Not a fixture
module: import ``VfcSim`` and build one per test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hil.firmware.paramdefs import DEFAULTS
from hil.geo import HOME
from hil.sim.sensors import Baro, Battery, Gps, Imu, Mag, Wind
from hil.sim.vehicle import Quadrotor
from hil.vfc.copter import Copter

RATE_HZ = 400
DT = 1.0 / RATE_HZ
CENTRED = [1500, 1500, 1500, 1500, 1000, 1000, 1000, 1000]


class Params:
    """Dict-backed parameter store with the PARAM_DEFS defaults."""

    def __init__(self, **overrides: float) -> None:
        self.values = dict(DEFAULTS)
        self.values.update(overrides)

    def get(self, name: str) -> float:
        return self.values[name]

    def set(self, name: str, value: float) -> None:
        self.values[name] = value


class VfcSim:
    """One simulated vehicle flown by one Copter."""

    def __init__(self, seed: int = 1, wind: float = 0.0, wind_dir: float = 0.0,
                 **params: float) -> None:
        rng = np.random.default_rng(seed)
        self.params = Params(**params)
        self.vehicle = Quadrotor()
        self.vehicle.reset(0.0, 0.0, 0.0)
        self.imu = Imu(rng)
        self.baro = Baro(rng)
        self.mag = Mag(rng)
        self.gps = Gps(rng)
        self.battery = Battery()
        self.wind = Wind(rng, speed=wind, direction_deg=wind_dir)
        self.copter = Copter(self.params)
        self.rc: list[int] | None = list(CENTRED)
        self.gcs = True
        self.step_n = 0
        self.texts: list[str] = []
        self.modes: list[int] = []

    @property
    def t(self) -> float:
        return self.step_n * DT

    def step(self) -> None:
        v = self.vehicle
        c = self.copter
        self.step_n += 1
        t = self.t
        t_us = int(round(t * 1e6))
        n = self.step_n
        if n % 40 == 0 and self.gps.due(t):
            f = self.gps.sample(t, v.pos, v.vel)
            c.on_gps(t_us, f.fix_type, f.lat_deg, f.lon_deg, f.alt_m,
                     (f.vel_n, f.vel_e, f.vel_d), f.eph_m, f.epv_m, f.satellites)
        if n % 8 == 0 and self.rc is not None:
            c.on_rc(t_us, self.rc)
        if n % 40 == 0:
            b = self.battery
            c.on_battery(t_us, b.voltage, b.current, b.consumed_mah)
        if n % 400 == 0 and self.gcs:
            c.on_gcs_heartbeat(t_us)
        imu = self.imu.sample(v)
        p, temp = self.baro.sample(HOME.alt_m - v.pos[2])
        m = self.mag.sample(v.quat) if n % 4 == 0 else None
        motors = c.loop(t_us, imu[:3], imu[3:], m, p, temp)
        v.step(DT, motors, self.wind.step(DT))
        self.battery.step(DT, v.current_a())
        self.texts.extend(s for _, s in c.drain_statustexts())
        self.modes.extend(c.drain_mode_changes())

    def run(self, seconds: float, until: Callable[[VfcSim], bool] | None = None) -> bool:
        """Step for ``seconds``; stop early (True) when ``until`` holds (checked at 10 Hz)."""
        for i in range(int(round(seconds * RATE_HZ))):
            self.step()
            if until is not None and i % 40 == 0 and until(self):
                return True
        return False

    def boot(self, seconds: float = 4.0) -> None:
        """Let the estimator settle and find its position."""
        self.run(seconds)

    def arm_in(self, mode: int) -> None:
        ok, why = self.copter.set_mode(mode)
        assert ok, why
        ok, why = self.copter.arm()
        assert ok, why

    def takeoff(self, alt: float = 10.0, settle: float = 0.0) -> None:
        """GUIDED takeoff to ``alt`` m; runs until near it, then ``settle`` more seconds."""
        self.arm_in(4)
        ok, why = self.copter.takeoff(alt)
        assert ok, why
        assert self.run(20.0, lambda s: -s.vehicle.pos[2] > alt - 0.3), "takeoff too slow"
        self.run(settle)

    def horizontal_distance(self, n: float = 0.0, e: float = 0.0) -> float:
        return math.hypot(self.vehicle.pos[0] - n, self.vehicle.pos[1] - e)

    def altitude(self) -> float:
        return -self.vehicle.pos[2]
