"""GNSS environment: satellites, a jammer and a spoofer, as a receiver would see them.

Pure model: it takes a ``numpy.random.Generator`` and simulation times, never reads a
clock. ``GnssEnvironment.step(t, truth)`` returns a ``GnssObservation``, everything a
receiver reports for one navigation epoch; ``hil.injectors.gps`` encodes it.

Sky
    ``n_sats`` (default 20) visible satellites, GPS (gnssId 0) and Galileo (gnssId 2),
    drawn from the seed: sin(elevation) uniform in [sin 5 deg, 1], azimuth uniform.
    They move slowly and stay visible: elevation swings a few degrees with a period of
    about an hour, azimuth drifts 0.002..0.006 deg/s.
    Nominal C/N0 = 35 + 13 sin(elevation) + a fixed per-satellite offset (+-1 dB),
    clipped to 35..48 dB-Hz, plus 0.5 dB white noise per epoch.

Jamming (``jammer_js_db``, jammer-to-signal ratio in dB at a reference signal of
``cno_ref_db``; ``-inf`` = no jammer)
    The standard effective-C/N0 formula, 1/(C/N0)eff = 1/(C/N0) + (J/C)/(Q Rc), with
    J/C per satellite = J/S - (C/N0_i - cno_ref) gives

        C/N0_eff = C/N0_nominal - 10 log10(1 + 10^((J/S - knee) / 10))

    where knee = 10 log10(Q Rc) - cno_ref (default 20 dB): no loss well below the knee,
    3 dB at the knee, then 1 dB of C/N0 per dB of J/S. A satellite is tracked while its
    C/N0 >= ``track_db`` (28 dB-Hz) and, once lost, reacquired only at >= ``acquire_db``
    (32 dB-Hz). With the default sky all satellites are lost by J/S ~ 40 dB.

Fix
    3D with >= 5 tracked satellites (3 position unknowns + one clock per constellation),
    2D with 4 (altitude held at the last 3D value, vertical velocity 0), none below, and
    also none when the geometry is singular. Accuracy comes from the weighted
    least-squares covariance of the tracked geometry: pseudorange sigma per satellite
    sqrt(``uere_m``^2 + (``thermal_m`` * 10^((cno_ref - C/N0)/20))^2), Doppler sigma
    likewise (``doppler_base_mps``, ``doppler_thermal_mps``). eph = sqrt(var N + var E),
    epv = sqrt(var D), sAcc = sqrt(trace of the velocity covariance). DOPs are the
    unweighted ones of the same geometry. So accuracy grows as the weak (low) satellites
    drop and the survivors fade. The reported position carries a Gauss-Markov wander
    (``corr_time_s``, as ``hil.sim.sensors.Gps``) scaled by the current per-axis sigma:
    the receiver's accuracy estimate is honest.

Jamming indicators
    ``jam_ind`` (UBX MON-HW/MON-RF jamInd, 0..255): 5 up to J/S = 10 dB, then linear to
    255 at J/S = 50 dB. ``jamming_state`` (MON-RF): 1 ok below J/S ``jam_warn_db``
    (15 dB), 2 warning (interference visible, fix kept), 3 critical (interference
    visible and no fix). ``agc_cnt`` falls and ``noise_per_ms`` rises with the jammer.

Spoofing (``spoof``, a ``Spoof`` or None)
    A coherent spoofer: from ``start_s`` the reported position is offset by
    ``jump_m + rate_mps * (t - start_s)`` along ``bearing_deg``, the reported velocity
    includes the walk velocity (the fix stays self-consistent), the receiver time is
    offset by ``clock_offset_s + clock_drift * (t - start_s)``; satellites, C/N0 and
    accuracy stay nominal. What the receiver can detect (NAV-STATUS spoofDetState):
    a position step, i.e. an epoch whose spoof offset differs from the previous offset
    extrapolated with the previous walk velocity by more than ``spoof_jump_m`` (10 m),
    and a clock step larger than ``spoof_clock_jump_s`` (1 us). Each is an indication,
    remembered for ``spoof_hold_s`` (60 s): state 1 none, 2 one indication, 3 two or
    more. It cannot detect a smooth walk (any rate, since velocity and position agree
    and it has no inertial reference), a slow clock drift, nor signal-level tells (power,
    C/N0 uniformity, angle of arrival), which are not modelled. Removing the spoofer is a
    step back to the truth and is indicated too.

Time
    GPS time = ``start_gps_s`` + t (+ the spoofer's clock offset); ``itow_ms`` and
    ``week`` come from it; UTC = GPS - ``leap_s`` (18 s).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hil.geo import HOME, Home, ned_to_lla

Vec3 = tuple[float, float, float]

SECONDS_PER_WEEK = 604800
GPS_EPOCH = _dt.datetime(1980, 1, 6, tzinfo=_dt.UTC)
DEFAULT_START_GPS_S = 2300 * SECONDS_PER_WEEK + 4 * 86400 + 12 * 3600
"""Sim time 0 is GPS week 2300, Thursday 12:00:00 GPS time (February 2024)."""
LEAP_SECONDS = 18
NO_FIX_ACCURACY_M = 99.99
"""eph/epv reported without a fix (and epv in a 2D fix), as ``hil.sim.sensors``."""
NO_FIX_DOP = 99.99
GNSS_GPS = 0
GNSS_GALILEO = 2
SPEED_OF_LIGHT = 299792458.0

FIX_NONE = 0
FIX_2D = 2
FIX_3D = 3

JAMMING_UNKNOWN = 0
JAMMING_OK = 1
JAMMING_WARNING = 2
JAMMING_CRITICAL = 3

SPOOF_UNKNOWN = 0
SPOOF_NONE = 1
SPOOF_INDICATED = 2
SPOOF_MULTIPLE = 3


class Truth(NamedTuple):
    """The true vehicle state: NED position (m from home) and velocity (m/s).

    ``GnssEnvironment.step`` takes this or anything with ``pos`` and ``vel``
    attributes (``hil.sim.vehicle.Quadrotor`` qualifies).
    """

    pos: Vec3
    vel: Vec3


@dataclass(frozen=True)
class Spoof:
    """A spoofer's plan: a position walk along a bearing and a receiver clock offset."""

    start_s: float
    rate_mps: float = 0.0
    bearing_deg: float = 0.0  # direction of the walk, from north, clockwise
    clock_offset_s: float = 0.0  # a step in receiver time at start_s
    clock_drift: float = 0.0  # s/s, a slow time walk on top
    jump_m: float = 0.0  # a position step at start_s (a crude spoofer)

    def offset_ned(self, t: float) -> Vec3:
        """The position offset (m) at time ``t``."""
        if t < self.start_s:
            return (0.0, 0.0, 0.0)
        d = self.jump_m + self.rate_mps * (t - self.start_s)
        b = math.radians(self.bearing_deg)
        return (d * math.cos(b), d * math.sin(b), 0.0)

    def velocity_ned(self, t: float) -> Vec3:
        """The walk velocity (m/s) at time ``t``."""
        if t < self.start_s:
            return (0.0, 0.0, 0.0)
        b = math.radians(self.bearing_deg)
        return (self.rate_mps * math.cos(b), self.rate_mps * math.sin(b), 0.0)

    def clock_s(self, t: float) -> float:
        """The receiver time offset (s) at time ``t``."""
        if t < self.start_s:
            return 0.0
        return self.clock_offset_s + self.clock_drift * (t - self.start_s)


@dataclass(frozen=True)
class SatelliteObs:
    """One visible satellite in one epoch."""

    gnss_id: int  # UBX gnssId: 0 GPS, 2 Galileo
    svid: int
    elevation_deg: float
    azimuth_deg: float
    cno_dbhz: float  # effective C/N0 (after jamming); reported as an integer
    tracked: bool


@dataclass(frozen=True)
class GnssObservation:
    """What the receiver reports for one navigation epoch (the encoders' input)."""

    t: float  # simulation time, s
    week: int  # GPS week (of the receiver's time, spoofed or not)
    itow_ms: int  # GPS time of week, ms
    tow_s: float  # GPS time of week, s (sub-ms kept)
    fix_type: int  # 0 none, 2 2D, 3 3D
    lat_deg: float
    lon_deg: float
    alt_m: float  # AMSL
    vel_ned: Vec3  # m/s
    num_sv: int  # satellites used in the fix
    eph_m: float  # horizontal accuracy (1 sigma, m): NAV-PVT hAcc
    epv_m: float  # vertical accuracy: vAcc
    sacc_mps: float  # speed accuracy: sAcc
    tacc_ns: float  # time accuracy: tAcc
    gdop: float
    pdop: float
    hdop: float
    vdop: float
    tdop: float
    ndop: float
    edop: float
    satellites: tuple[SatelliteObs, ...]
    jam_ind: int  # 0..255
    jamming_state: int  # MON-RF: 0 unknown, 1 ok, 2 warning, 3 critical
    spoof_state: int  # NAV-STATUS flags2 spoofDetState: 0 unknown, 1 none, 2, 3
    agc_cnt: int  # MON-HW AGC monitor, 0..8191
    noise_per_ms: int  # MON-HW noise level
    spoof_offset_ned: Vec3 = (0.0, 0.0, 0.0)  # diagnostic: the lie, not on the wire
    leap_s: int = LEAP_SECONDS

    @property
    def used_satellites(self) -> tuple[SatelliteObs, ...]:
        return tuple(s for s in self.satellites if s.tracked)

    @property
    def utc(self) -> _dt.datetime:
        """UTC of this epoch (receiver time, leap seconds removed)."""
        return GPS_EPOCH + _dt.timedelta(
            seconds=self.week * SECONDS_PER_WEEK + self.tow_s - self.leap_s
        )

    @property
    def ground_speed_mps(self) -> float:
        return math.hypot(self.vel_ned[0], self.vel_ned[1])

    @property
    def course_deg(self) -> float:
        """Course over ground, 0..360 deg from north."""
        return math.degrees(math.atan2(self.vel_ned[1], self.vel_ned[0])) % 360.0


def _effective_loss_db(js_db: float, knee_db: float) -> float:
    if js_db == -math.inf:
        return 0.0
    x = (js_db - knee_db) / 10.0
    if x > 30.0:
        return 10.0 * x
    return 10.0 * math.log10(1.0 + 10.0**x)


class GnssEnvironment:
    """The sky one receiver sees, with settable ``jammer_js_db`` and ``spoof``.

    See the module docstring for the model. Set ``jammer_js_db`` (dB, ``-inf`` or None
    for none) and ``spoof`` (a ``Spoof`` or None) at any time; they apply from the next
    ``step``. Call ``step`` once per navigation epoch with increasing ``t``.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        home: Home = HOME,
        n_sats: int = 20,
        start_gps_s: float = DEFAULT_START_GPS_S,
        knee_db: float = 20.0,
        cno_ref_db: float = 45.0,
        track_db: float = 28.0,
        acquire_db: float = 32.0,
        min_sv_3d: int = 5,
        min_sv_2d: int = 4,
        uere_m: float = 1.2,
        thermal_m: float = 0.5,
        doppler_base_mps: float = 0.05,
        doppler_thermal_mps: float = 0.05,
        cno_noise_db: float = 0.5,
        corr_time_s: float = 60.0,
        jam_warn_db: float = 15.0,
        spoof_jump_m: float = 10.0,
        spoof_clock_jump_s: float = 1e-6,
        spoof_hold_s: float = 60.0,
    ) -> None:
        self._rng = rng
        self.home = home
        self.start_gps_s = start_gps_s
        self.knee_db = knee_db
        self.cno_ref_db = cno_ref_db
        self.track_db = track_db
        self.acquire_db = acquire_db
        self.min_sv_3d = min_sv_3d
        self.min_sv_2d = min_sv_2d
        self.uere_m = uere_m
        self.thermal_m = thermal_m
        self.doppler_base_mps = doppler_base_mps
        self.doppler_thermal_mps = doppler_thermal_mps
        self.cno_noise_db = cno_noise_db
        self.corr_time_s = corr_time_s
        self.jam_warn_db = jam_warn_db
        self.spoof_jump_m = spoof_jump_m
        self.spoof_clock_jump_s = spoof_clock_jump_s
        self.spoof_hold_s = spoof_hold_s
        self._js = -math.inf
        self.spoof: Spoof | None = None

        n = int(n_sats)
        n_gps = (n + 1) // 2 + 1 if n > 2 else n
        n_gps = min(n_gps, n)
        self._gnss = np.array([GNSS_GPS] * n_gps + [GNSS_GALILEO] * (n - n_gps))
        gps_ids = rng.choice(np.arange(1, 33), size=n_gps, replace=False)
        gal_ids = rng.choice(np.arange(1, 37), size=n - n_gps, replace=False)
        self._svid = np.concatenate([np.sort(gps_ids), np.sort(gal_ids)]).astype(int)
        sin_el = rng.uniform(math.sin(math.radians(5.0)), 1.0, n)
        self._el0 = np.degrees(np.arcsin(sin_el))
        self._az0 = rng.uniform(0.0, 360.0, n)
        self._el_amp = rng.uniform(1.0, 4.0, n)
        self._el_phase = rng.uniform(0.0, 2.0 * math.pi, n)
        self._el_period = rng.uniform(2400.0, 4800.0, n)
        self._az_rate = rng.uniform(0.002, 0.006, n) * rng.choice([-1.0, 1.0], n)
        self._cno_offset = rng.uniform(-1.0, 1.0, n)
        self._tracked = np.ones(n, dtype=bool)
        self._gm = [float(v) for v in rng.standard_normal(3)]
        self._last_t: float | None = None
        self._last_lla: tuple[float, float, float] = (home.lat_deg, home.lon_deg, home.alt_m)
        self._last_alt_3d: float = home.alt_m
        self._prev_spoof_offset: Vec3 = (0.0, 0.0, 0.0)
        self._prev_spoof_vel: Vec3 = (0.0, 0.0, 0.0)
        self._prev_clock = 0.0
        self._prev_clock_rate = 0.0
        self._last_spoof_t: float | None = None
        self._spoof_events: list[float] = []

    # -- threat state -------------------------------------------------------------
    @property
    def jammer_js_db(self) -> float:
        """Jammer-to-signal ratio, dB (``-inf``: no jammer)."""
        return self._js

    @jammer_js_db.setter
    def jammer_js_db(self, value: float | None) -> None:
        self._js = -math.inf if value is None else float(value)

    def cno_loss_db(self, js_db: float | None = None) -> float:
        """C/N0 lost to the jammer at ``js_db`` (default: the current one)."""
        return _effective_loss_db(self._js if js_db is None else js_db, self.knee_db)

    # -- sky ------------------------------------------------------------------------
    def geometry(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Elevations and azimuths (deg) of the satellites at time ``t``."""
        el = self._el0 + self._el_amp * np.sin(2.0 * math.pi * t / self._el_period + self._el_phase)
        el = np.clip(el, 5.0, 89.5)
        az = (self._az0 + self._az_rate * t) % 360.0
        return el, az

    def nominal_cno(self, elevation_deg: np.ndarray) -> np.ndarray:
        return np.clip(
            35.0 + 13.0 * np.sin(np.radians(elevation_deg)) + self._cno_offset, 35.0, 48.0
        )

    # -- one epoch ------------------------------------------------------------------
    def step(self, t: float, truth: Any) -> GnssObservation:
        """The receiver's report at simulation time ``t`` for ``truth`` (pos/vel NED)."""
        rng = self._rng
        n = self._svid.size
        draws = rng.standard_normal(6 + n)
        pos = truth.pos
        vel = truth.vel

        el, az = self.geometry(t)
        loss = self.cno_loss_db()
        cno = self.nominal_cno(el) - loss + self.cno_noise_db * draws[6:]
        # Tracking with hysteresis: lose below track_db, reacquire at acquire_db.
        self._tracked = np.where(self._tracked, cno >= self.track_db, cno >= self.acquire_db)
        tracked = self._tracked
        n_used = int(tracked.sum())

        # Gauss-Markov wander (unit variance), exact discretisation.
        if self._last_t is not None and t > self._last_t:
            phi = math.exp(-(t - self._last_t) / self.corr_time_s)
            k = math.sqrt(1.0 - phi * phi)
            for i in range(3):
                self._gm[i] = self._gm[i] * phi + k * float(draws[i])
        self._last_t = t

        fix, cov, dops, vcov = self._solve(el, az, cno, tracked, n_used)

        # Spoofer.
        sp = self.spoof
        if sp is not None:
            off = sp.offset_ned(t)
            voff = sp.velocity_ned(t)
            clock = sp.clock_s(t)
        else:
            off, voff, clock = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0
        spoof_state = self._spoof_detect(t, off, voff, clock)

        gps_s = self.start_gps_s + t + clock
        week = int(gps_s // SECONDS_PER_WEEK)
        tow = gps_s - week * SECONDS_PER_WEEK
        itow_ms = int(round(tow * 1000.0)) % (SECONDS_PER_WEEK * 1000)

        js = self._js
        if js <= 10.0:
            jam_ind = 5
        else:
            jam_ind = int(round(min(255.0, 5.0 + 250.0 * (js - 10.0) / 40.0)))
        visible = js >= self.jam_warn_db
        agc = int(round(max(0.0, min(8191.0, 5500.0 - 120.0 * max(0.0, (js + 10.0))))))
        if js == -math.inf:
            agc = 5500
        noise = int(round(min(65535.0, 85.0 * 10.0 ** (loss / 10.0))))

        sats = tuple(
            SatelliteObs(
                int(self._gnss[i]),
                int(self._svid[i]),
                float(el[i]),
                float(az[i]),
                float(max(0.0, cno[i])),
                bool(tracked[i]) and fix != FIX_NONE,
            )
            for i in range(n)
        )

        if fix == FIX_NONE:
            lat, lon, alt = self._last_lla
            jam_state = JAMMING_CRITICAL if visible else JAMMING_OK
            return GnssObservation(
                t=t,
                week=week,
                itow_ms=itow_ms,
                tow_s=tow,
                fix_type=FIX_NONE,
                lat_deg=lat,
                lon_deg=lon,
                alt_m=alt,
                vel_ned=(0.0, 0.0, 0.0),
                num_sv=0,
                eph_m=NO_FIX_ACCURACY_M,
                epv_m=NO_FIX_ACCURACY_M,
                sacc_mps=NO_FIX_ACCURACY_M,
                tacc_ns=1e6,
                gdop=NO_FIX_DOP,
                pdop=NO_FIX_DOP,
                hdop=NO_FIX_DOP,
                vdop=NO_FIX_DOP,
                tdop=NO_FIX_DOP,
                ndop=NO_FIX_DOP,
                edop=NO_FIX_DOP,
                satellites=sats,
                jam_ind=jam_ind,
                jamming_state=jam_state,
                spoof_state=spoof_state,
                agc_cnt=agc,
                noise_per_ms=noise,
                spoof_offset_ned=off,
            )

        sn, se = math.sqrt(cov[0]), math.sqrt(cov[1])
        north = pos[0] + self._gm[0] * sn + off[0]
        east = pos[1] + self._gm[1] * se + off[1]
        lat, lon, alt = ned_to_lla(north, east, 0.0, self.home)
        sv = [math.sqrt(v) for v in vcov]
        vn = float(vel[0]) + voff[0] + sv[0] * float(draws[3])
        ve = float(vel[1]) + voff[1] + sv[1] * float(draws[4])
        if fix == FIX_3D:
            sd = math.sqrt(cov[2])
            alt = self.home.alt_m - (pos[2] + self._gm[2] * sd + off[2])
            self._last_alt_3d = alt
            vd = float(vel[2]) + voff[2] + sv[2] * float(draws[5])
            eph, epv = math.hypot(sn, se), sd
            sacc = math.sqrt(sum(vcov))
        else:
            alt = self._last_alt_3d
            vd = 0.0
            eph, epv = math.hypot(sn, se), NO_FIX_ACCURACY_M
            sacc = math.sqrt(vcov[0] + vcov[1])
        self._last_lla = (lat, lon, alt)
        gdop, pdop, hdop, vdop, tdop, ndop, edop = dops
        return GnssObservation(
            t=t,
            week=week,
            itow_ms=itow_ms,
            tow_s=tow,
            fix_type=fix,
            lat_deg=lat,
            lon_deg=lon,
            alt_m=alt,
            vel_ned=(vn, ve, vd),
            num_sv=n_used,
            eph_m=eph,
            epv_m=epv,
            sacc_mps=sacc,
            tacc_ns=cov[3] ** 0.5 / SPEED_OF_LIGHT * 1e9,
            gdop=gdop,
            pdop=pdop,
            hdop=hdop,
            vdop=vdop,
            tdop=tdop,
            ndop=ndop,
            edop=edop,
            satellites=sats,
            jam_ind=jam_ind,
            jamming_state=JAMMING_WARNING if visible else JAMMING_OK,
            spoof_state=spoof_state,
            agc_cnt=agc,
            noise_per_ms=noise,
            spoof_offset_ned=off,
        )

    def _solve(self, el, az, cno, tracked, n_used):
        """Fix type, position variances (N, E, D, clock), DOPs and velocity variances."""
        none = (FIX_NONE, None, None, None)
        if n_used < self.min_sv_2d:
            return none
        idx = np.flatnonzero(tracked)
        e = np.radians(el[idx])
        a = np.radians(az[idx])
        # Unit line of sight in NED; the design row is -los for position, 1 per clock.
        los = np.column_stack((np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), -np.sin(e)))
        systems = sorted(set(int(g) for g in self._gnss[idx]))
        clocks = np.column_stack([(self._gnss[idx] == g).astype(float) for g in systems])
        fix = FIX_3D if n_used >= self.min_sv_3d else FIX_2D
        while fix != FIX_NONE:
            pos_cols = 3 if fix == FIX_3D else 2
            g = np.column_stack((-los[:, :pos_cols], clocks))
            if g.shape[0] >= g.shape[1] and np.linalg.cond(g) < 1e6:
                break
            fix = FIX_2D if fix == FIX_3D and n_used >= self.min_sv_2d else FIX_NONE
        if fix == FIX_NONE:
            return none
        c = cno[idx]
        thermal = 10.0 ** ((self.cno_ref_db - c) / 20.0)
        w_pr = 1.0 / (self.uere_m**2 + (self.thermal_m * thermal) ** 2)
        w_dop = 1.0 / (self.doppler_base_mps**2 + (self.doppler_thermal_mps * thermal) ** 2)
        h = np.linalg.inv(g.T @ g)
        cov = np.linalg.inv(g.T @ (g * w_pr[:, None]))
        vcov = np.linalg.inv(g.T @ (g * w_dop[:, None]))
        d = np.diag(h)
        if pos_cols == 3:
            dops = (
                math.sqrt(d.sum()),
                math.sqrt(d[:3].sum()),
                math.sqrt(d[0] + d[1]),
                math.sqrt(d[2]),
                math.sqrt(d[3]),
                math.sqrt(d[0]),
                math.sqrt(d[1]),
            )
            var = (float(cov[0, 0]), float(cov[1, 1]), float(cov[2, 2]), float(cov[3, 3]))
            vvar = (float(vcov[0, 0]), float(vcov[1, 1]), float(vcov[2, 2]))
        else:
            dops = (
                math.sqrt(d.sum()),
                NO_FIX_DOP,
                math.sqrt(d[0] + d[1]),
                NO_FIX_DOP,
                math.sqrt(d[2]),
                math.sqrt(d[0]),
                math.sqrt(d[1]),
            )
            var = (float(cov[0, 0]), float(cov[1, 1]), NO_FIX_ACCURACY_M**2, float(cov[2, 2]))
            vvar = (float(vcov[0, 0]), float(vcov[1, 1]), 0.0)
        return fix, var, dops, vvar

    def _spoof_detect(self, t: float, off: Vec3, voff: Vec3, clock: float) -> int:
        if self._last_spoof_t is not None:
            dt = max(0.0, t - self._last_spoof_t)
            pred = (
                self._prev_spoof_offset[0] + self._prev_spoof_vel[0] * dt,
                self._prev_spoof_offset[1] + self._prev_spoof_vel[1] * dt,
                self._prev_spoof_offset[2] + self._prev_spoof_vel[2] * dt,
            )
            innov = math.dist(off, pred)
            if innov > self.spoof_jump_m:
                self._spoof_events.append(t)
            if (
                abs(clock - self._prev_clock)
                > self.spoof_clock_jump_s + abs(self._prev_clock_rate) * dt
            ):
                self._spoof_events.append(t)
        self._last_spoof_t = t
        self._prev_spoof_offset = off
        self._prev_spoof_vel = voff
        self._prev_clock_rate = (
            self.spoof.clock_drift if self.spoof is not None and t >= self.spoof.start_s else 0.0
        )
        self._prev_clock = clock
        self._spoof_events = [e for e in self._spoof_events if t - e <= self.spoof_hold_s]
        k = len(self._spoof_events)
        return SPOOF_NONE if k == 0 else SPOOF_INDICATED if k == 1 else SPOOF_MULTIPLE
