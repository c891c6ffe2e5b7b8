"""Sensor, battery and wind models for the simulator.

Every model that needs noise takes a ``numpy.random.Generator``: the same seed (and the
same sequence of calls) repeats a run exactly. Normal deviates are drawn in batches and
handed out as Python floats, because one numpy call per sample would cost more than the
whole per-step budget.

Fault hooks are plain attributes (``noise_scale``, ``stuck_axis``, ``drift_m_per_s``,
``interference``, ``available``, ``offset_ned``, ``sag_v`` ...) that the harness may set
at any time; they take effect from the next sample.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hil.geo import (
    EARTH_FIELD_NED,
    GRAVITY,
    HOME,
    Home,
    ned_to_lla,
    pressure_hpa,
    temperature_c,
)

Vec3 = tuple[float, float, float]


class _Normals:
    """Standard normal deviates drawn from ``rng`` in batches, served as floats."""

    __slots__ = ("_rng", "_size", "_buf", "_i")

    def __init__(self, rng: np.random.Generator, size: int = 8192) -> None:
        self._rng = rng
        self._size = size
        self._buf: list[float] = []
        self._i = 0

    def take(self, k: int) -> list[float]:
        """The next ``k`` deviates."""
        i = self._i
        j = i + k
        if j > len(self._buf):
            self._buf = self._rng.standard_normal(max(self._size, k)).tolist()
            i = 0
            j = k
        self._i = j
        return self._buf[i:j]

    def one(self) -> float:
        """The next deviate."""
        i = self._i
        if i >= len(self._buf):
            self._buf = self._rng.standard_normal(self._size).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]


class _VehicleState(Protocol):
    specific_force: Sequence[float]
    rates: Sequence[float]


class Imu:
    """Accelerometer + gyro: ``specific_force`` and ``rates`` plus bias, noise, clipping.

    Hooks: ``noise_scale`` multiplies both noises; ``stuck_axis`` (None or 0..5 for
    ax, ay, az, gx, gy, gz) makes that output repeat the value it had when it stuck;
    ``clip`` (m/s^2) and ``gyro_clip`` (rad/s) saturate the outputs. Biases are FRD
    tuples and are zero unless given.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        accel_noise: float = 0.05,
        gyro_noise: float = 0.004,
        accel_bias: Sequence[float] = (0.0, 0.0, 0.0),
        gyro_bias: Sequence[float] = (0.0, 0.0, 0.0),
        clip: float = 16 * GRAVITY,
        gyro_clip: float = math.radians(2000.0),
    ) -> None:
        self._noise = _Normals(rng)
        self.accel_noise = accel_noise
        self.gyro_noise = gyro_noise
        self.accel_bias: Vec3 = tuple(float(v) for v in accel_bias)  # type: ignore[assignment]
        self.gyro_bias: Vec3 = tuple(float(v) for v in gyro_bias)  # type: ignore[assignment]
        self.clip = clip
        self.gyro_clip = gyro_clip
        self.noise_scale = 1.0
        self.stuck_axis: int | None = None
        self._last: tuple[float, ...] = (0.0, 0.0, -GRAVITY, 0.0, 0.0, 0.0)
        self._stuck_value: tuple[int, float] | None = None

    def sample(self, vehicle: _VehicleState) -> tuple[float, float, float, float, float, float]:
        """One reading (ax, ay, az m/s^2, gx, gy, gz rad/s) in FRD."""
        sfx, sfy, sfz = vehicle.specific_force
        rp, rq, rr = vehicle.rates
        n = self._noise.take(6)
        s = self.noise_scale
        an = self.accel_noise * s
        gn = self.gyro_noise * s
        bax, bay, baz = self.accel_bias
        bgx, bgy, bgz = self.gyro_bias
        c = self.clip
        gc = self.gyro_clip
        ax = sfx + bax + an * n[0]
        ay = sfy + bay + an * n[1]
        az = sfz + baz + an * n[2]
        gx = rp + bgx + gn * n[3]
        gy = rq + bgy + gn * n[4]
        gz = rr + bgz + gn * n[5]
        out = (
            c if ax > c else (-c if ax < -c else ax),
            c if ay > c else (-c if ay < -c else ay),
            c if az > c else (-c if az < -c else az),
            gc if gx > gc else (-gc if gx < -gc else gx),
            gc if gy > gc else (-gc if gy < -gc else gy),
            gc if gz > gc else (-gc if gz < -gc else gz),
        )
        axis = self.stuck_axis
        if axis is not None:
            stuck = self._stuck_value
            if stuck is None or stuck[0] != axis:
                stuck = self._stuck_value = (axis, self._last[axis])
            lst = list(out)
            lst[axis] = stuck[1]
            out = tuple(lst)  # type: ignore[assignment]
        elif self._stuck_value is not None:
            self._stuck_value = None
        self._last = out
        return out


class Baro:
    """Barometer: ISA pressure at the true altitude plus noise and an optional drift.

    Drift is integrated by ``step(dt)``, which the loop calls once per physics step:
    ``drift_error_m`` grows by ``drift_m_per_s * dt`` and is added to the altitude the
    pressure is computed from (so a positive drift reads as climbing). Set
    ``drift_error_m`` back to 0 to clear it.
    """

    def __init__(self, rng: np.random.Generator, noise_m: float = 0.1) -> None:
        self._noise = _Normals(rng, 4096)
        self.noise_m = noise_m
        self.temperature_noise_c = 0.02
        self.drift_m_per_s = 0.0
        self.drift_error_m = 0.0

    def step(self, dt: float) -> None:
        """Advance the drift by ``dt`` seconds."""
        self.drift_error_m += self.drift_m_per_s * dt

    def sample(self, alt_m_amsl: float) -> tuple[float, float]:
        """(pressure hPa, temperature deg C) at true altitude ``alt_m_amsl``."""
        n = self._noise.take(2)
        alt = alt_m_amsl + self.drift_error_m + self.noise_m * n[0]
        return pressure_hpa(alt), temperature_c(alt_m_amsl) + self.temperature_noise_c * n[1]


class Mag:
    """Magnetometer: the earth field rotated into the body, plus interference and noise.

    ``field_ned`` is the earth field (gauss, NED); ``interference`` is an extra FRD
    vector in gauss (default zeros), e.g. motor currents or a nearby magnet.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        noise: float = 0.003,
        field_ned: Sequence[float] = EARTH_FIELD_NED,
    ) -> None:
        self._noise = _Normals(rng, 4096)
        self.noise = noise
        self.field_ned: Vec3 = tuple(float(v) for v in field_ned)  # type: ignore[assignment]
        self.interference: Vec3 = (0.0, 0.0, 0.0)

    def sample(self, quat: Sequence[float]) -> Vec3:
        """(mx, my, mz) gauss in FRD for attitude ``quat`` ([w, x, y, z] body->NED)."""
        w, x, y, z = quat
        bn, be, bd = self.field_ned
        ix, iy, iz = self.interference
        n = self._noise.take(3)
        s = self.noise
        # R^T * B, with R the body->NED rotation of quat.
        mx = (
            (1.0 - 2.0 * (y * y + z * z)) * bn
            + 2.0 * (x * y + w * z) * be
            + 2.0 * (x * z - w * y) * bd
        )
        my = (
            2.0 * (x * y - w * z) * bn
            + (1.0 - 2.0 * (x * x + z * z)) * be
            + 2.0 * (y * z + w * x) * bd
        )
        mz = (
            2.0 * (x * z + w * y) * bn
            + 2.0 * (y * z - w * x) * be
            + (1.0 - 2.0 * (x * x + y * y)) * bd
        )
        return mx + ix + s * n[0], my + iy + s * n[1], mz + iz + s * n[2]


@dataclass(frozen=True)
class GpsFix:
    """One GPS report, in the units HIL_GPS needs after scaling."""

    time_usec: int
    fix_type: int  # 0 no fix, 2 2D, 3 3D
    lat_deg: float
    lon_deg: float
    alt_m: float  # AMSL
    vel_n: float
    vel_e: float
    vel_d: float
    eph_m: float
    epv_m: float
    satellites: int


NO_FIX_ACCURACY_M = 99.99


class Gps:
    """GPS receiver with a slowly wandering position error.

    The position error is first-order Gauss-Markov per axis (``pos_sigma_m``
    horizontal, ``vert_sigma_m`` vertical, correlation ``corr_time_s``); velocity gets
    white noise ``vel_noise``. Hooks: ``available`` (False: fix_type 0, 0 satellites,
    eph/epv 99.99 m, position frozen at the last reported value, velocity 0),
    ``offset_ned`` (m, added to the reported position: spoofing), ``extra_noise_m``
    (white noise sigma added to each position axis; eph/epv grow with it).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        rate_hz: float = 10.0,
        home: Home = HOME,
        pos_sigma_m: float = 0.5,
        vert_sigma_m: float = 0.8,
        corr_time_s: float = 60.0,
        vel_noise: float = 0.1,
        eph_m: float = 0.8,
        epv_m: float = 1.2,
    ) -> None:
        self._rng = rng
        self.rate_hz = rate_hz
        self.home = home
        self.pos_sigma_m = pos_sigma_m
        self.vert_sigma_m = vert_sigma_m
        self.corr_time_s = corr_time_s
        self.vel_noise = vel_noise
        self.eph_m = eph_m
        self.epv_m = epv_m
        self.available = True
        self.offset_ned: Vec3 = (0.0, 0.0, 0.0)
        self.extra_noise_m = 0.0
        self._next_due = 0.0
        self._last_t: float | None = None
        n0 = rng.standard_normal(3)
        self._err = [
            pos_sigma_m * float(n0[0]),
            pos_sigma_m * float(n0[1]),
            vert_sigma_m * float(n0[2]),
        ]
        self._sats = int(rng.integers(14, 19))
        self._last_lla: tuple[float, float, float] = (home.lat_deg, home.lon_deg, home.alt_m)

    @property
    def error_ned(self) -> Vec3:
        """The current wandering position error, m (for tests and diagnostics)."""
        return self._err[0], self._err[1], self._err[2]

    def due(self, t: float) -> bool:
        """True when a fix is due at simulation time ``t`` seconds."""
        return t >= self._next_due - 1e-9

    def sample(self, t: float, pos_ned: Sequence[float], vel_ned: Sequence[float]) -> GpsFix:
        """The fix at time ``t`` for true position/velocity (NED m, m/s); schedules the next."""
        period = 1.0 / self.rate_hz
        self._next_due += period
        if self._next_due <= t:
            self._next_due = t + period
        rng = self._rng
        n = rng.standard_normal(9)
        # Gauss-Markov error, exact discretisation over the time since the last fix.
        if self._last_t is not None and t > self._last_t:
            phi = math.exp(-(t - self._last_t) / self.corr_time_s)
            k = math.sqrt(1.0 - phi * phi)
            self._err[0] = self._err[0] * phi + self.pos_sigma_m * k * float(n[0])
            self._err[1] = self._err[1] * phi + self.pos_sigma_m * k * float(n[1])
            self._err[2] = self._err[2] * phi + self.vert_sigma_m * k * float(n[2])
        self._last_t = t
        if rng.random() < 0.02:
            self._sats = min(18, max(14, self._sats + (1 if rng.random() < 0.5 else -1)))
        time_usec = int(round(t * 1e6))

        if not self.available:
            lat, lon, alt = self._last_lla
            return GpsFix(
                time_usec,
                0,
                lat,
                lon,
                alt,
                0.0,
                0.0,
                0.0,
                NO_FIX_ACCURACY_M,
                NO_FIX_ACCURACY_M,
                0,
            )

        x = self.extra_noise_m
        on, oe, od = self.offset_ned
        north = pos_ned[0] + self._err[0] + on + x * float(n[3])
        east = pos_ned[1] + self._err[1] + oe + x * float(n[4])
        down = pos_ned[2] + self._err[2] + od + x * float(n[5])
        lla = ned_to_lla(north, east, down, self.home)
        self._last_lla = lla
        v = self.vel_noise
        return GpsFix(
            time_usec=time_usec,
            fix_type=3,
            lat_deg=lla[0],
            lon_deg=lla[1],
            alt_m=lla[2],
            vel_n=float(vel_ned[0]) + v * float(n[6]),
            vel_e=float(vel_ned[1]) + v * float(n[7]),
            vel_d=float(vel_ned[2]) + v * float(n[8]),
            eph_m=math.hypot(self.eph_m, x),
            epv_m=math.hypot(self.epv_m, x),
            satellites=self._sats,
        )


# LiPo open-circuit voltage per cell against state of charge (0..1).
_SOC = (0.0, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 1.0)
_OCV = (3.30, 3.55, 3.62, 3.67, 3.72, 3.88, 4.02, 4.20)


def lipo_cell_voltage(soc: float) -> float:
    """Open-circuit voltage of one LiPo cell at state of charge ``soc`` (0..1)."""
    if soc <= 0.0:
        return _OCV[0]
    if soc >= 1.0:
        return _OCV[-1]
    i = bisect.bisect_right(_SOC, soc)
    s0, s1 = _SOC[i - 1], _SOC[i]
    v0, v1 = _OCV[i - 1], _OCV[i]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


class Battery:
    """LiPo pack: coulomb counting, an open-circuit curve and an internal resistance.

    ``internal_resistance`` is for the whole pack, ohms. ``voltage`` is the terminal
    voltage: cells * OCV(state of charge) - current * resistance - ``sag_v`` (the fault
    hook, an extra drop in volts), never below 0.
    """

    def __init__(
        self, cells: int = 3, capacity_mah: float = 5000.0, internal_resistance: float = 0.015
    ) -> None:
        self.cells = cells
        self.capacity_mah = capacity_mah
        self.internal_resistance = internal_resistance
        self.sag_v = 0.0
        self.current = 0.0
        self.consumed_mah = 0.0
        self.remaining_pct = 100.0
        self.voltage = 0.0
        self._update_voltage()

    def step(self, dt: float, current_a: float) -> None:
        """Draw ``current_a`` amps for ``dt`` seconds."""
        self.current = current_a
        self.consumed_mah += current_a * dt / 3.6
        self._update_voltage()

    def _update_voltage(self) -> None:
        soc = 1.0 - self.consumed_mah / self.capacity_mah
        self.remaining_pct = 100.0 * min(1.0, max(0.0, soc))
        v = (
            self.cells * lipo_cell_voltage(soc)
            - self.current * self.internal_resistance
            - self.sag_v
        )
        self.voltage = v if v > 0.0 else 0.0


class Wind:
    """Mean wind plus Ornstein-Uhlenbeck gusts, as the air velocity in NED.

    ``direction_deg`` is where the wind blows FROM (meteorological): 270 blows toward
    east. Gusts have standard deviation ``gust_std`` (m/s) horizontally and
    ``vertical_ratio`` times that vertically, with time constant ``gust_tau`` (s). All
    attributes can be changed at any time; ``velocity_ned`` holds the last value.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        speed: float = 0.0,
        direction_deg: float = 0.0,
        gust_std: float = 0.0,
        gust_tau: float = 2.0,
        vertical_ratio: float = 0.5,
    ) -> None:
        self._noise = _Normals(rng)
        self.speed = speed
        self.direction_deg = direction_deg
        self.gust_std = gust_std
        self.gust_tau = gust_tau
        self.vertical_ratio = vertical_ratio
        self._gust = (0.0, 0.0, 0.0)
        self._phi_key = (-1.0, -1.0)
        self._phi = 0.0
        self._k = 0.0
        self._mean_key = (math.nan, math.nan)
        self._mean_ne = (0.0, 0.0)
        mn, me = self._mean()
        self.velocity_ned: Vec3 = (mn, me, 0.0)

    def _mean(self) -> tuple[float, float]:
        key = (self.speed, self.direction_deg)
        if key != self._mean_key:
            self._mean_key = key
            d = math.radians(self.direction_deg)
            self._mean_ne = (-self.speed * math.cos(d), -self.speed * math.sin(d))
        return self._mean_ne

    def step(self, dt: float) -> Vec3:
        """Advance the gusts by ``dt`` seconds; the air velocity (wn, we, wd) m/s."""
        gn, ge, gd = self._gust
        std = self.gust_std
        if std > 0.0 or gn != 0.0 or ge != 0.0 or gd != 0.0:
            key = (dt, self.gust_tau)
            if key != self._phi_key:
                self._phi_key = key
                self._phi = math.exp(-dt / self.gust_tau) if self.gust_tau > 0.0 else 0.0
                self._k = math.sqrt(1.0 - self._phi * self._phi)
            phi = self._phi
            if std > 0.0:
                k = self._k * std
                n = self._noise.take(3)
                gn = gn * phi + k * n[0]
                ge = ge * phi + k * n[1]
                gd = gd * phi + k * self.vertical_ratio * n[2]
            else:
                # Gusts switched off: let the remaining gust die away, then stop.
                gn *= phi
                ge *= phi
                gd *= phi
                if abs(gn) + abs(ge) + abs(gd) < 1e-6:
                    gn = ge = gd = 0.0
            self._gust = (gn, ge, gd)
        mn, me = self._mean()
        self.velocity_ned = (mn + gn, me + ge, gd)
        return self.velocity_ned
