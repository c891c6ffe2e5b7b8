"""The virtual flight controller's flight software, ArduPilot Copter semantics, no I/O.

The server (hil.vfc.server) calls ``loop`` once per IMU sample and feeds GPS, RC,
battery and GCS heartbeats through the ``on_*`` methods; commands return
``(accepted, reason)``. Per loop: estimator prediction and baro, then (every 4th loop,
100 Hz) attitude correction, mode logic and the position controller, then (every 40th,
10 Hz) failsafes, land detector bookkeeping and parameter refresh; attitude, rate
control and mixing run every loop.

Every input is checked: NaN, inf or absurd values are dropped and the last good value
is kept, so garbage never raises and never reaches the controllers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hil.firmware.paramdefs import read_param
from hil.vfc import failsafe as fs
from hil.vfc.control import (
    AttitudeRateController,
    Gains,
    PositionController,
    euler_to_quat,
    mix,
)
from hil.vfc.estimator import Estimator
from hil.vfc.modes import (
    ALT_HOLD,
    GUIDED,
    LAND,
    LOITER,
    RTL,
    STABILIZE,
    XY_POS,
    Z_ALT,
    Z_THR,
    Z_VEL,
    Guided,
    Mode,
    NavTargets,
    make_modes,
)

__all__ = ["Copter", "STABILIZE", "ALT_HOLD", "GUIDED", "LOITER", "RTL", "LAND"]

# MAV_SEVERITY
CRITICAL, ERROR, WARNING, NOTICE, INFO = 2, 3, 4, 5, 6

NAV_DIVIDER = 4
SLOW_DIVIDER = 40
LAND_DETECT_S = 1.0
RC_MIN, RC_MID, RC_MAX = 1100, 1500, 1900
RC_DZ = 20
#: AP_GPS.cpp GPS_TIMEOUT_MS: a receiver silent this long is NO_GPS.
GPS_TIMEOUT_S = 4.0
#: ArduCopter/config.h GPS_HDOP_GOOD_DEFAULT (140, HDOP x 100): the arming check's bound.
GPS_HDOP_GOOD = 1.40


def _finite(v: object, limit: float) -> bool:
    """A real number with |v| < limit (False for NaN, inf, non-numbers)."""
    try:
        return -limit < v < limit  # type: ignore[operator]
    except TypeError:
        return False


class Copter:
    """ArduPilot-Copter-like flight software: one ``loop`` per IMU sample."""

    def __init__(self, params, behaviour: Mapping[str, Any] | None = None,
                 personality: Any = None) -> None:
        self.params = params
        #: Another firmware's ways (hil.vfc.px4.Px4Personality): its failsafe actions,
        #: the hold before them, its STATUSTEXT wording. None: ArduCopter's.
        self.personality = personality
        #: A failsafe action held back by the personality: (failsafe, action, due s,
        #: mode to go back to if the failsafe clears first).
        self._delayed: tuple[str, str, float, int] | None = None
        # The store's cache of read_param results (ParamStore empties it on every change):
        # the controllers read a dozen parameters per 100 Hz step.
        cache = getattr(params, "read_cache", None)
        self._param_cache: dict[str, float] | None = cache if isinstance(cache, dict) else None
        #: Flight-software knobs of this build (hil.firmware.app_image.BEHAVIOUR_KEYS).
        self.behaviour = dict(behaviour or {})
        self.gains = Gains(params)
        self.est = Estimator(self._p("COMPASS_DEC"))
        self.att = AttitudeRateController(self.gains)
        self.hover = min(max(self._p("MOT_THST_HOVER"), 0.125), 0.6875)
        self.pos = PositionController(self.gains, self.hover)
        self.nav = NavTargets()
        self.modes = make_modes()
        self._mode: Mode = self.modes[STABILIZE]
        self.mode = STABILIZE
        self.time_us = 0
        self._t = 0.0
        self._last_t_us: int | None = None
        self._nominal_dt = 1.0 / 400.0
        self._n = 0
        self.armed = False
        self.landed = True
        self._armed_at = 0.0
        self._land_timer = 0.0
        self._disarm_timer = 0.0
        self._home_ned = (0.0, 0.0, 0.0)
        self.home: tuple[float, float, float] | None = None
        self.gps: tuple | None = None
        self._last_gps_t: float | None = None
        #: When the last GPS report came (board seconds) and its HDOP (None: not reported).
        self._gps_seen_t: float | None = None
        self._gps_hdop: float | None = None
        self.rc_channels: tuple[int, ...] = ()
        self._sticks = (0.0, 0.0, 0.0, 0.0)
        self._throttle_pwm = 0
        self.motors = (0.0, 0.0, 0.0, 0.0)
        self._battery: tuple[float, float, float] | None = None
        self.failsafes: set[str] = set()
        self._radio = fs.RadioMonitor(
            float(self.behaviour.get("rc_failsafe_extra_delay_s", 0.0))
        )
        self._gcs = fs.GcsMonitor()
        self._ekf = fs.EkfMonitor()
        self._batt = fs.BatteryMonitor()
        self._texts: list[tuple[int, str]] = []
        self._modes: list[int] = []
        self._accel = (0.0, 0.0, -9.80665)
        self._gyro = (0.0, 0.0, 0.0)
        self._mag: tuple[float, float, float] | None = None
        self._target_q = (1.0, 0.0, 0.0, 0.0)
        self._yaw_target = 0.0
        self._yaw_rate_ff = 0.0
        self._collective = 0.0
        self._idle = True
        #: The estimator's own view: a usable horizontal position (EKF_STATUS_REPORT flags).
        self.ekf_position_ok = False
        #: Position control allowed: the estimator has a position and no EKF failsafe.
        self.position_ok = False
        self._lim = (0.15, 0.95)
        self._reload()

    # ------------------------------------------------------------ parameters
    def _p(self, name: str) -> float:
        cache = self._param_cache
        if cache is None:
            return read_param(self.params, name)
        try:
            return cache[name]
        except KeyError:
            value = cache[name] = read_param(self.params, name)
            return value

    def param(self, name: str) -> float:
        """A parameter value (used by the modes)."""
        return self._p(name)

    def _reload(self) -> None:
        self.gains.reload()
        rate = self._p("SCHED_LOOP_RATE")
        self._nominal_dt = 1.0 / rate if rate >= 50.0 else 1.0 / 400.0
        self.est.declination = self._p("COMPASS_DEC")
        self.est.use_mag = self._p("COMPASS_USE") != 0
        self._lim = (self.gains.spin_min, self.gains.spin_max)

    # ------------------------------------------------------------ main loop
    def loop(self, t_us: int, accel: tuple[float, float, float], gyro: tuple[float, float, float],
             mag: tuple[float, float, float] | None, pressure_hpa: float | None,
             temperature_c: float | None) -> tuple[float, float, float, float]:
        """One control loop for one IMU sample; motor commands 0..1 for motors 1..4."""
        dt = self._nominal_dt
        last = self._last_t_us
        # The range checks are `_finite` written out: this runs at the loop rate.
        try:
            t_ok = -1e15 < t_us < 1e15
        except TypeError:
            t_ok = False
        if t_ok:
            t_us = int(t_us)
            if last is not None:
                d = (t_us - last) * 1e-6
                if 0.0 < d <= 0.05:
                    dt = d
            else:
                self._t = t_us * 1e-6 - dt
            if last is None or t_us > last:
                self._last_t_us = t_us
        self._t += dt
        self.time_us = int(self._t * 1e6)
        try:
            ax, ay, az = accel
            gx, gy, gz = gyro
            imu_ok = (-300.0 < ax < 300.0 and -300.0 < ay < 300.0 and -300.0 < az < 300.0
                      and -40.0 < gx < 40.0 and -40.0 < gy < 40.0 and -40.0 < gz < 40.0)
        except (TypeError, ValueError):
            imu_ok = False
        if imu_ok:
            self._accel = (ax, ay, az)
            self._gyro = (gx, gy, gz)
        else:
            ax, ay, az = self._accel
            gx, gy, gz = self._gyro
        est = self.est
        est.predict(dt, ax, ay, az, gx, gy, gz)
        try:
            baro_ok = -2000.0 < pressure_hpa < 2000.0 and pressure_hpa > 100.0  # type: ignore[operator]
        except TypeError:
            baro_ok = False
        if baro_ok:
            est.on_baro(self._t, pressure_hpa, dt)  # type: ignore[arg-type]
        n = self._n = self._n + 1
        if n % NAV_DIVIDER == 0:
            if mag is not None:
                try:
                    mx, my, mz = mag
                    if _finite(mx, 10.0) and _finite(my, 10.0) and _finite(mz, 10.0):
                        self._mag = (mx, my, mz)
                except (TypeError, ValueError):
                    pass
            est.correct_attitude(dt * NAV_DIVIDER, ax, ay, az, self._mag)
            self._mag = None
            if n % SLOW_DIVIDER == 0:
                self._slow()
            self._failsafe_checks(self._t)
            self._nav_step(dt * NAV_DIVIDER)
        if not self.armed:
            self.motors = (0.0, 0.0, 0.0, 0.0)
            return self.motors
        if self._idle:
            s = self.gains.spin_arm
            self.motors = (s, s, s, s)
            return self.motors
        r, p, y = self.att.update(dt, est.q, self._target_q, self._yaw_rate_ff, est.rates,
                                  not self.landed)
        lo, hi = self._lim
        m, _ = mix(self._collective, r, p, y, lo, hi)
        if not (lo <= m[0] <= hi and lo <= m[1] <= hi and lo <= m[2] <= hi and lo <= m[3] <= hi):
            # Only a corrupted state gets here (NaN): level out at hover and reset.
            self.att.reset()
            m = (self.hover, self.hover, self.hover, self.hover)
        self.motors = m
        return m

    def _nav_step(self, dt: float) -> None:
        """Mode logic, position controller and collective (100 Hz)."""
        est = self.est
        nav = self.nav
        if self.armed:
            self._mode.run(self, dt)
            self._idle = self.landed and not self._mode.wants_takeoff(self)
        else:
            self._idle = True
        psi = math.atan2(est.r10, est.r00)
        if self._idle:
            self.att.reset()
            self.pos.reset_xy()
            self.pos.reset_z()
            self._yaw_target = psi
            self._target_q = euler_to_quat(0.0, 0.0, psi)
            self._collective = 0.0
            nav.td = self.pos_d()
            return
        hn, he, hd = self._home_ned
        if nav.xy == XY_POS and self.position_ok:
            an, ae = self.pos.xy(dt, est.pn - hn, est.pe - he, est.vn, est.ve,
                                 nav.tn, nav.te, nav.vn, nav.ve, nav.speed, 5.0)
            roll, pitch = self.pos.lean_angles(an, ae, psi)
        else:
            roll, pitch = nav.roll, nav.pitch
            self.pos.reset_xy()
        amax = self.angle_max()
        tilt = math.sqrt(roll * roll + pitch * pitch)
        if tilt > amax:
            roll *= amax / tilt
            pitch *= amax / tilt
        # Yaw: integrate the rate into a heading target kept near the actual heading.
        self._yaw_rate_ff = nav.yaw_rate
        yt = self._yaw_target + nav.yaw_rate * dt
        err = (yt - psi + math.pi) % (2.0 * math.pi) - math.pi
        if err > 0.5:
            err = 0.5
        elif err < -0.5:
            err = -0.5
        self._yaw_target = psi + err
        self._target_q = euler_to_quat(roll, pitch, self._yaw_target)
        # Vertical.
        self.pos.hover = self.hover
        up = self._p("PILOT_SPEED_UP") / 100.0
        dn = self._p("PILOT_SPEED_DN") / 100.0
        if nav.z == Z_ALT:
            up = max(up, self._p("WPNAV_SPEED_UP") / 100.0)
            dn = max(dn, self._p("WPNAV_SPEED_DN") / 100.0)
            thr = self.pos.z(dt, est.pd - hd, est.vd, est.acc_d, nav.td, nav.climb_d, up, dn)
        elif nav.z == Z_VEL:
            thr = self.pos.vel_z(dt, est.vd, est.acc_d, nav.climb_d)
        else:
            thr = nav.throttle
            self.pos.reset_z()
        if self.landed and thr > 0.5 * self.hover:
            self._set_landed(False)
        cos_tilt = est.r22 if est.r22 > 0.5 else 0.5
        self._collective = thr / cos_tilt
        self._update_hover(dt, thr)
        self._land_detector(dt, thr)

    def _update_hover(self, dt: float, thr: float) -> None:
        """Learn the hover throttle while hovering steadily (ArduPilot MOT_HOVER_LEARN)."""
        est = self.est
        if (self._p("MOT_HOVER_LEARN") == 0 or self.landed or self.nav.z == Z_THR
                or abs(est.vd) > 0.3 or abs(est.acc_d) > 1.0 or abs(self.nav.climb_d) > 0.1):
            return
        h = self.hover + dt / (dt + 2.0) * (thr - self.hover)
        self.hover = min(max(h, 0.125), 0.6875)

    def _land_detector(self, dt: float, thr: float) -> None:
        """Landed after LAND_DETECT_S with throttle low, no climb/descent, no accel."""
        if self.landed:
            self._land_timer = 0.0
            return
        est = self.est
        low = thr < max(self.gains.spin_min + 0.02, 0.5 * self.hover)
        if low and abs(est.vd) < 1.0 and abs(est.acc_d) < 1.5:
            self._land_timer += dt
            if self._land_timer >= LAND_DETECT_S:
                self._set_landed(True)
        else:
            self._land_timer = 0.0

    def _set_landed(self, landed: bool) -> None:
        if landed == self.landed:
            return
        self.landed = landed
        if landed:
            self._disarm_timer = 0.0
            if self.armed and self.mode in (LAND, RTL):
                self._text(INFO, "Land complete")
                self._do_disarm("Disarming motors")

    def _slow(self) -> None:
        """10 Hz: estimator status, failsafes, auto-disarm; parameter refresh at 2 Hz."""
        if self._n % (SLOW_DIVIDER * 5) == 0:
            self._reload()
        now = self._t
        est = self.est
        est.update_status(now)
        for ev in est.events:
            if ev == "glitch":
                self._text(WARNING, "GPS Glitch")
            else:
                self._text(INFO, "GPS Glitch cleared")
        est.events.clear()
        self.ekf_position_ok = est.position_ok(now)
        self._ekf_check()
        # ArduCopter's position_ok(): an EKF failsafe forbids position control even while
        # the filter still reports a position (a bent compass, a dead-reckoned fix).
        self.position_ok = self.ekf_position_ok and "ekf" not in self.failsafes
        self._auto_disarm(0.1)

    def _auto_disarm(self, dt: float) -> None:
        delay = self._p("DISARM_DELAY")
        if not self.armed or not self.landed or delay <= 0.0:
            self._disarm_timer = 0.0
            return
        thr = self._sticks[3]
        if self._mode.manual_throttle:
            low = thr <= 0.02 or not self.rc_ok
        else:
            low = self._throttle_pwm <= RC_MID + self._p("THR_DZ") or not self.rc_ok
        if low and not (self.mode == GUIDED and self.modes[GUIDED].wants_takeoff(self)):
            self._disarm_timer += dt
            if self._disarm_timer >= delay:
                self._do_disarm("Disarming motors")
        else:
            self._disarm_timer = 0.0

    # ------------------------------------------------------------ failsafes
    def _failsafe_checks(self, now: float) -> None:
        p = self._p
        ev = self._radio.check(now, p("FS_THR_ENABLE") != 0, self.armed, self._armed_at,
                               p("RC_FS_TIMEOUT"))
        if ev == "on":
            self._failsafe("radio", CRITICAL, "Radio Failsafe",
                           self._action("radio", fs.radio_action, "FS_THR_ENABLE"))
        elif ev == "off":
            self._failsafe_clear("radio", "Radio Failsafe Cleared")
        ev = self._gcs.check(now, p("FS_GCS_ENABLE") != 0, self.armed, p("FS_GCS_TIMEOUT"))
        if ev == "on":
            self._failsafe("gcs", CRITICAL, "GCS Failsafe",
                           self._action("gcs", fs.gcs_action, "FS_GCS_ENABLE"))
        elif ev == "off":
            self._failsafe_clear("gcs", "GCS Failsafe Cleared")
        volt = self._battery[0] if self._battery is not None else None
        ev = self._batt.check(now, volt, p("BATT_LOW_VOLT"), p("BATT_LOW_TIMER"), self.armed)
        if ev == "on":
            used = self._battery[2] if self._battery is not None else 0.0
            self._failsafe("battery", CRITICAL, f"Battery 1 is low {volt:.2f}V used {used:.0f} mAh",
                           self._action("battery", fs.battery_action, "BATT_FS_LOW_ACT"))
        if self._delayed is not None:
            self._delayed_action(now)

    def _delayed_action(self, now: float) -> None:
        """Carry out a held-back failsafe action once its hold is over."""
        delayed = self._delayed
        if delayed is not None and now >= delayed[2]:
            self._delayed = None
            self._act(delayed[1])

    def _ekf_check(self) -> None:
        """10 Hz EKF variance check (ArduPilot ekf_check)."""
        p = self._p
        est = self.est
        ekf_act = int(p("FS_EKF_ACTION"))
        applicable = self.armed and (self._mode.needs_position or ekf_act == 3)
        ev = self._ekf.check(est.vel_ratio, est.pos_ratio, est.mag_ratio,
                             p("FS_EKF_THRESH"), applicable)
        if ev == "on":
            self._failsafe("ekf", CRITICAL, "EKF Failsafe",
                           self._action("ekf", fs.ekf_action, "FS_EKF_ACTION"))
        elif ev == "off":
            self._failsafe_clear("ekf", "EKF Failsafe Cleared")

    def _action(self, failsafe: str, by_value: Any, setting: str) -> str:
        """What a failsafe does: ArduCopter's reading of its setting, or the personality's."""
        if self.personality is None:
            return by_value(int(self._p(setting)))
        return self.personality.failsafe_action(failsafe, self._p)

    def _failsafe(self, name: str, severity: int, text: str, action: str) -> None:
        """Announce a failsafe and act: disarm on the ground; ArduCopter's FS_OPTIONS."""
        self.failsafes.add(name)
        pers = self.personality
        if pers is None:
            action, why = fs.apply_fs_options(
                name, action, int(self._p("FS_OPTIONS")),
                disarm=self.armed and self._disarms_on_failsafe(),
                landing=self._mode.is_landing(), guided=self.mode == GUIDED,
                autopilot=self._mode.autopilot)
            if why is None:
                self._text(severity, text)
            elif name == "battery":
                # The battery monitor's own line, then Copter's (events.cpp).
                self._text(severity, text)
                self._text(severity, f"Battery Failsafe - {why}")
            else:
                self._text(severity, f"{text} - {why}")
        else:
            # The personality's wording; and its hold before the action (PX4's
            # COM_FAIL_ACT_T), in which the vehicle holds position.
            delay = pers.action_delay(self._p)
            hold = (self.armed and not self.landed and delay > 0.0 and self.position_ok
                    and action in (fs.RTL, fs.LAND, fs.ALT_HOLD, fs.HOLD))
            for line in pers.failsafe_texts(name, delay if hold else 0.0):
                self._say(severity, line)
            if hold:
                self._delayed = (name, action, self._t + delay, self.mode)
                self._change_mode(LOITER, announce_fail=False)
                return
        self._act(action)

    def _disarms_on_failsafe(self) -> bool:
        """ArduCopter's should_disarm_on_failsafe(): landed, or throttle down in a mode
        whose throttle is the pilot's."""
        return self.landed or (self._mode.manual_throttle and self._sticks[3] <= 0.02)

    def _act(self, action: str) -> None:
        """Carry out a failsafe action."""
        if not self.armed or action == fs.NONE:
            return
        if action == fs.DISARM or self._disarms_on_failsafe():
            self._do_disarm("Disarming motors")
            return
        if action == fs.RTL:
            # ArduCopter leaves LAND for RTL when it can (set_mode_RTL_or_land_with_pause;
            # FS_OPTIONS bit 3 keeps the landing, see apply_fs_options); PX4 does not go
            # from Land back to Return.
            if self.mode == LAND and self.personality is not None:
                return
            if self.mode != RTL and not self._change_mode(RTL, announce_fail=False)[0]:
                self._change_mode(LAND)
        elif action == fs.LAND:
            self._change_mode(LAND)
        elif action == fs.ALT_HOLD and self.mode != LAND:
            self._change_mode(ALT_HOLD)
        elif action == fs.HOLD and self.mode not in (LAND, RTL):
            self._change_mode(LOITER)

    def _failsafe_clear(self, name: str, text: str) -> None:
        self.failsafes.discard(name)
        self._text(WARNING, text)
        delayed = self._delayed
        if delayed is not None and delayed[0] == name:
            # Cleared within the hold: back to the mode the pilot had chosen.
            self._delayed = None
            self._change_mode(delayed[3], announce_fail=False)

    # ------------------------------------------------------------ inputs
    def on_gps(self, t_us: int, fix_type: int, lat_deg: float, lon_deg: float, alt_m: float,
               vel_ned: tuple[float, float, float], eph_m: float, epv_m: float,
               satellites: int, hdop: float | None = None) -> None:
        """One GPS report (HIL_GPS); good 3D fixes are fused. `hdop`: the receiver's
        horizontal dilution of precision (None: not reported), for the arming check."""
        try:
            vn, ve, vd = (float(v) for v in vel_ned)
            fix = int(fix_type)
            sats = int(satellites)
            lat = float(lat_deg)
            lon = float(lon_deg)
            alt = float(alt_m)
            eph = float(eph_m)
            epv = float(epv_m)
        except (TypeError, ValueError, OverflowError):
            return
        self.gps = (t_us, fix, lat, lon, alt, (vn, ve, vd), eph, epv, sats)
        self._gps_seen_t = self._t
        try:
            self._gps_hdop = float(hdop) if hdop is not None and math.isfinite(float(hdop)) else None
        except (TypeError, ValueError, OverflowError):
            self._gps_hdop = None
        if not (fix >= 3 and sats >= 6 and _finite(lat, 90.0) and _finite(lon, 180.0)
                and _finite(alt, 20000.0) and 0.0 <= eph < 5.0 and _finite(vn, 100.0)
                and _finite(ve, 100.0) and _finite(vd, 100.0)):
            return
        o = self.est.origin
        if o is not None and (abs(lat - o[0]) > 0.5 or abs(lon - o[1]) > 0.5):
            return  # tens of km away: nonsense, not a glitch worth following
        now = self._t
        gdt = now - self._last_gps_t if self._last_gps_t is not None else 0.1
        self._last_gps_t = now
        self.est.on_gps(now, lat, lon, alt, vn, ve, vd, eph)
        if not self.est.baro_fresh(now):
            self.est.on_gps_height(alt, min(max(gdt, 0.0), 0.5))
        if self.home is None and self.est.origin is not None:
            self.home = self.est.origin

    def on_rc(self, t_us: int, channels: Sequence[int]) -> None:
        """RC input (PWM us, ch1 roll, ch2 pitch, ch3 throttle, ch4 yaw; 0 = not provided)."""
        try:
            ch = tuple(int(c) if _finite(c, 1e6) else 0 for c in channels[:18])
        except (TypeError, ValueError):
            return
        self.rc_channels = ch
        valid = len(ch) >= 4 and all(800 <= c <= 2200 for c in ch[:4])
        if valid:
            self._throttle_pwm = ch[2]
            self._sticks = (_stick(ch[0]), _stick(ch[1]), _stick(ch[3]),
                            min(max((ch[2] - RC_MIN) / (RC_MAX - RC_MIN), 0.0), 1.0))
        self._radio.on_frame(self._t, valid, ch[2] if valid else 0, self._p("FS_THR_VALUE"))

    def on_battery(self, t_us: int, voltage: float, current_a: float, consumed_mah: float) -> None:
        """Battery monitor reading."""
        if not (_finite(voltage, 1000.0) and voltage >= 0.0):
            return
        cur = float(current_a) if _finite(current_a, 1e4) else 0.0
        used = float(consumed_mah) if _finite(consumed_mah, 1e8) else 0.0
        self._battery = (float(voltage), cur, used)

    def on_gcs_heartbeat(self, t_us: int) -> None:
        """A heartbeat from the ground station."""
        self._gcs.heartbeat(self._t)

    # ------------------------------------------------------------ commands
    def arm(self, force: bool = False) -> tuple[bool, str]:
        """Arm after the pre-arm checks (skipped when forced or ARMING_CHECK is 0)."""
        if self.armed:
            return True, ""
        if not self._mode.armable:
            return self._refuse(f"Arm: Mode {self._mode.name} not armable")
        if not force and self._p("ARMING_CHECK") != 0:
            reason = self._prearm_failure()
            if reason:
                return self._refuse(self._arming_text(reason))
        self.armed = True
        self._armed_at = self._t
        self.landed = True
        self._land_timer = 0.0
        self._disarm_timer = 0.0
        self.att.reset()
        self.pos.reset_xy()
        self.pos.reset_z()
        est = self.est
        if est.origin is not None and self.position_ok:
            self._home_ned = (est.pn, est.pe, est.pd)
            self.home = est.position_lla()
        self._mode.enter(self)
        self._text(INFO, "Arming motors")
        return True, ""

    def _arming_text(self, reason: str) -> str:
        """A pre-arm failure as said when asked to arm: AP_Arming::check_failed() tags it
        "Arm: " while arm() runs the checks (running_arming_checks), "PreArm: " only in
        the periodic pre-arm report (libraries/AP_Arming/AP_Arming.cpp). A personality
        may keep the pre-arm wording (PX4: `prearm_wording_at_arming`)."""
        if getattr(self.personality, "prearm_wording_at_arming", False):
            return reason
        return "Arm: " + reason.removeprefix("PreArm: ")

    @property
    def arming_checks(self) -> bool:
        """Pre-arm checks are on (ARMING_CHECK not 0)."""
        return self._p("ARMING_CHECK") != 0

    @property
    def prearm_ok(self) -> bool:
        """The pre-arm checks pass in the present mode (SYS_STATUS's pre-arm bit). The
        throttle stick is not one of them: ArduCopter checks it when asked to arm
        (AP_Arming_Copter::arm_checks), not among the pre-arm checks it reports."""
        return not self._prearm_failure(arming=False)

    def _prearm_failure(self, arming: bool = True) -> str:
        est = self.est
        if not est.initialised or est.time_s < 3.0:
            return "PreArm: Gyros still settling"
        if est.tilt_error > 0.1:
            return "PreArm: AHRS attitude inconsistent"
        gps = self._gps_failure()
        if gps:
            return gps
        if self._mode.needs_position and not self.position_ok:
            return "PreArm: Need Position Estimate"
        if self._gps_hdop_high():
            return "PreArm: High GPS HDOP"
        if self._p("FS_THR_ENABLE") != 0 and not self.rc_ok:
            return "PreArm: RC not found"
        low = self._p("BATT_LOW_VOLT")
        if self._battery is not None and low > 0.0 and self._battery[0] < low:
            return f"PreArm: Battery 1 low voltage {self._battery[0]:.2f}V"
        if arming and self._mode.manual_throttle and self.rc_ok and self._sticks[3] > 0.02:
            return "PreArm: Throttle too high"
        return ""

    def _gps_checked(self) -> bool:
        """ArduCopter's AP_Arming_Copter::gps_checks() runs the GPS checks when the mode
        requires a position (Mode::requires_position(); no fence or SUPER SIMPLE here)
        and a GPS receiver has been seen (AP_GPS::num_sensors() > 0). A personality may
        keep its own rule (PX4: `gps_arming_check` False)."""
        return (self._mode.needs_position and self.gps is not None
                and getattr(self.personality, "gps_arming_check", True))

    def _gps_failure(self) -> str:
        """AP_Arming::gps_checks() (libraries/AP_Arming/AP_Arming.cpp): a receiver whose
        status is below a 3D fix fails with "GPS 1: Bad fix". A receiver silent for
        longer than AP_GPS's GPS_TIMEOUT_MS (4 s) reports NO_GPS, below a 3D fix too.
        There is no satellite-count threshold in these checks (the EKF's EK3_GPS_CHECK
        wants 6, which shows as "Need Position Estimate")."""
        if not self._gps_checked():
            return ""
        stale = self._gps_seen_t is None or self._t - self._gps_seen_t > GPS_TIMEOUT_S
        if stale or int(self.gps[1]) < 3:
            return "PreArm: GPS 1: Bad fix"
        return ""

    def _gps_hdop_high(self) -> bool:
        """AP_Arming_Copter::gps_checks(), after the position checks: HDOP above
        GPS_HDOP_GOOD (default 140, HDOP x 100: ArduCopter/config.h) refuses with
        "High GPS HDOP"."""
        return self._gps_checked() and self._gps_hdop is not None and self._gps_hdop > GPS_HDOP_GOOD

    def disarm(self, force: bool = False) -> tuple[bool, str]:
        """Disarm; refused in the air unless forced."""
        if not self.armed:
            return True, ""
        if not self.landed and not force:
            return self._refuse("Disarm: vehicle is flying")
        self._do_disarm("Disarming motors")
        return True, ""

    def _do_disarm(self, text: str) -> None:
        if not self.armed:
            return
        self.armed = False
        self.landed = True
        self.motors = (0.0, 0.0, 0.0, 0.0)
        self._idle = True
        self._text(INFO, text)

    def set_mode(self, mode: int) -> tuple[bool, str]:
        """Change flight mode (0, 2, 4, 5, 6, 9)."""
        return self._change_mode(mode)

    def _change_mode(self, mode: object, announce_fail: bool = True) -> tuple[bool, str]:
        if not _finite(mode, 1e9) or int(mode) not in self.modes:  # type: ignore[call-overload]
            return self._refuse(f"Mode change failed: mode {mode!r} not supported", announce_fail)
        new = self.modes[int(mode)]  # type: ignore[call-overload]
        if new is self._mode:
            return True, ""
        # ArduCopter's Copter::set_mode() skips its checks while disarmed ("we rely on
        # the arming check"): a position mode can be chosen on the ground without a fix.
        # PX4 refuses it either way (`mode_checks_when_disarmed`).
        checked = self.armed or getattr(self.personality, "mode_checks_when_disarmed", False)
        if checked and new.needs_position and not self.position_ok:
            return self._refuse(f"Mode change to {new.name} failed: requires position",
                                announce_fail)
        self._mode = new
        self.mode = new.number
        new.enter(self)
        self._modes.append(new.number)
        self._text(INFO, f"Mode {new.name}")
        return True, ""

    def takeoff(self, alt_m: float) -> tuple[bool, str]:
        """GUIDED takeoff to ``alt_m`` metres above home."""
        if self.mode != GUIDED:
            return self._refuse("Takeoff: not in GUIDED")
        if not self.armed:
            return self._refuse("Takeoff: not armed")
        if not self.landed:
            return self._refuse("Takeoff: already flying")
        if not (_finite(alt_m, 10000.0) and alt_m > 0.0):
            return self._refuse("Takeoff: bad altitude")
        g = self.modes[GUIDED]
        assert isinstance(g, Guided)
        g.takeoff(self, float(alt_m))
        self._text(INFO, f"Takeoff to {alt_m:.1f} m")
        return True, ""

    def goto_ned(self, north: float, east: float, down: float | None) -> tuple[bool, str]:
        """GUIDED: fly to (north, east[, down]) metres from home."""
        if self.mode != GUIDED:
            return self._refuse("Goto: not in GUIDED")
        if not self.armed or self.landed:
            return self._refuse("Goto: not flying")
        if not (_finite(north, 1e5) and _finite(east, 1e5)
                and (down is None or _finite(down, 1e4))):
            return self._refuse("Goto: bad target")
        g = self.modes[GUIDED]
        assert isinstance(g, Guided)
        g.goto(self, float(north), float(east), None if down is None else min(float(down), 0.0))
        return True, ""

    def _refuse(self, reason: str, announce: bool = True) -> tuple[bool, str]:
        if announce:
            self._text(WARNING, reason)
        return False, reason

    # ------------------------------------------------------------ helpers for modes
    def sticks(self) -> tuple[float, float, float, float]:
        """(roll, pitch, yaw -1..1, throttle 0..1); centred (throttle mid) without RC."""
        if self.rc_ok:
            return self._sticks
        return (0.0, 0.0, 0.0, 0.5)

    def pilot_climb_rate(self) -> float:
        """Climb rate (m/s, up) from the throttle stick, deadband THR_DZ around mid."""
        if not self.rc_ok:
            return 0.0
        pwm = self._throttle_pwm
        dz = self._p("THR_DZ")
        if pwm > RC_MID + dz:
            return min((pwm - RC_MID - dz) / (RC_MAX - RC_MID - dz), 1.0) * \
                self._p("PILOT_SPEED_UP") / 100.0
        if pwm < RC_MID - dz:
            return -min((RC_MID - dz - pwm) / (RC_MID - dz - RC_MIN), 1.0) * \
                self._p("PILOT_SPEED_DN") / 100.0
        return 0.0

    def pilot_yaw_rate(self) -> float:
        """Full-stick yaw rate, rad/s."""
        return math.radians(self._p("PILOT_Y_RATE"))

    def angle_max(self) -> float:
        """Lean angle limit, rad."""
        return self.gains.angle_max

    def hover_throttle(self) -> float:
        """Current hover throttle estimate."""
        return self.hover

    def pos_ne(self) -> tuple[float, float]:
        """Estimated (north, east) from home."""
        return self.est.pn - self._home_ned[0], self.est.pe - self._home_ned[1]

    def vel_ne(self) -> tuple[float, float]:
        """Estimated (north, east) velocity."""
        return self.est.vn, self.est.ve

    def pos_d(self) -> float:
        """Estimated down position from home (negative up)."""
        return self.est.pd - self._home_ned[2]

    def yaw(self) -> float:
        """Estimated heading, rad."""
        return math.atan2(self.est.r10, self.est.r00)

    def time_s(self) -> float:
        """Board time, s."""
        return self._t

    def _text(self, severity: int, text: str) -> None:
        pers = self.personality
        if pers is not None:
            text = pers.text(text)
            if not text:
                return
        self._say(severity, text)

    def _say(self, severity: int, text: str) -> None:
        self._texts.append((severity, text[:50]))
        if len(self._texts) > 100:
            del self._texts[:-100]

    # ------------------------------------------------------------ reported state
    @property
    def rc_ok(self) -> bool:
        """Valid RC within RC_FS_TIMEOUT and throttle above FS_THR_VALUE."""
        return self._radio.rc_ok(self._t, max(self._p("RC_FS_TIMEOUT"), 0.1))

    @property
    def attitude(self) -> tuple[float, float, float, float, float, float]:
        """(roll, pitch, yaw, rollspeed, pitchspeed, yawspeed) estimate, rad and rad/s."""
        r, p, y = self.est.euler()
        return (r, p, y) + self.est.rates

    @property
    def position_ned(self) -> tuple[float, float, float]:
        """Estimated position, NED m from home."""
        n, e = self.pos_ne()
        return n, e, self.pos_d()

    @property
    def velocity_ned(self) -> tuple[float, float, float]:
        """Estimated velocity, NED m/s."""
        return self.est.vn, self.est.ve, self.est.vd

    @property
    def battery(self) -> tuple[float, float, float, float]:
        """(voltage, current A, consumed mAh, remaining % or -1)."""
        if self._battery is None:
            return (0.0, 0.0, 0.0, -1.0)
        v, c, used = self._battery
        cap = self._p("BATT_CAPACITY")
        pct = max(0.0, min(100.0, 100.0 * (1.0 - used / cap))) if cap > 0 else -1.0
        return v, c, used, pct

    @property
    def ekf_variances(self) -> tuple[float, float, float, float]:
        """(velocity, pos_horiz, pos_vert, compass) test ratios; 1.0 is the gate."""
        e = self.est
        return e.vel_ratio, e.pos_ratio, e.hgt_ratio, e.mag_ratio

    @property
    def gps_glitching(self) -> bool:
        """GPS position rejected by the innovation gate (EKF_STATUS flag 32768)."""
        return self.est.glitching

    def drain_statustexts(self) -> list[tuple[int, str]]:
        """(MAV_SEVERITY, text) queued since the last call."""
        t, self._texts = self._texts, []
        return t

    def drain_mode_changes(self) -> list[int]:
        """Modes entered since the last call."""
        m, self._modes = self._modes, []
        return m


def _stick(pwm: int) -> float:
    """PWM to -1..1 around RC_MID with a small deadzone."""
    d = pwm - RC_MID
    if -RC_DZ < d < RC_DZ:
        return 0.0
    v = (d - RC_DZ) / (RC_MAX - RC_MID - RC_DZ) if d > 0 else (d + RC_DZ) / (RC_MID - RC_MIN - RC_DZ)
    return min(max(v, -1.0), 1.0)
