"""State estimation: attitude, velocity and position from IMU, compass, baro and GPS.

- Attitude: a Mahony complementary filter. Gyros are integrated every loop; the accel
  (gravity direction) and the compass (heading against the declination) steer the
  estimate and learn the gyro biases. Corrections are computed at 100 Hz and applied as
  a rate every loop. The compass is gated as ArduPilot's EKF3 gates it
  (AP_NavEKF3_MagFusion.cpp): the earth field learned while the heading initialises is
  rotated into the body and compared with each sample, per axis; a sample more than
  3 x 0.05 gauss off on any axis (EK3_MAG_I_GATE 300, EK3_MAG_M_NSE 0.05) is not used,
  and the heading carries on from the gyros. EKF3 learns body-field offsets (EK3_MAG_CAL
  3 on a copter) only from samples it fuses, so a field past the gate is never learned
  and the compass stays rejected while it lasts (ArduCopter SITL: variance 1.3-2.0 for
  the whole window); that learning is not modelled.
- Horizontal position and velocity: a two-state Kalman filter per axis (north, east
  share one covariance), predicted every loop from the earth-frame accelerometer and
  corrected by GPS position and velocity. The covariance is propagated in closed form
  over the time since its last update, so it costs nothing between GPS fixes.
- Height: a third-order complementary filter (height, climb rate, accel bias) on the
  barometer, or on GPS altitude when no baro is reported.

The GPS tilt reference compares the IMU's integrated specific force with the GPS
velocity change over about a second. While the vehicle manoeuvres that comparison also
shows a heading error (a turn about the vertical, which is not a tilt): it is taken out
before the tilt is measured, and counts in the compass test ratio, since a compass bent
by the airframe drags the heading with it and its own innovation stays small.

GPS measurements are gated on their normalised innovation (5 sigma, as ArduPilot's
EK3_POS_I_GATE / EK3_VEL_I_GATE default); a rejected position is a "glitch", accepted
again after ``GLITCH_RESET_S`` by resetting to GPS. The published test ratios follow
EKF_STATUS_REPORT: 1.0 is the gate; they also grow with the uncertainty while
dead-reckoning, so losing GPS shows up as failing velocity and position checks.

Everything per-loop is plain floats and ``math``: this runs at 400 Hz inside a
simulation that must go much faster than real time.
"""

from __future__ import annotations

import math
from collections import deque

GRAVITY = 9.80665
EARTH_RADIUS_M = 6378137.0

GATE_SIGMA = 5.0
"""Innovation gate for GPS position and velocity, standard deviations."""
MAG_GATE_RAD = 0.3
"""Heading error seen by GPS at which the compass test ratio reaches 1 (3 x 0.1 rad)."""
MAG_NOISE_GAUSS = 0.05
"""Compass measurement noise, gauss: ArduPilot's EK3_MAG_M_NSE default."""
MAG_GATE_SIGMA = 3.0
"""Compass innovation gate, standard deviations: EK3_MAG_I_GATE default 300 (3 sigma)."""
ACCEL_NOISE = 2.0
"""Horizontal acceleration process noise, (m/s^2)^2 per Hz (attitude errors dominate)."""
GPS_VEL_VAR = 0.3**2
"""GPS velocity measurement variance, (m/s)^2 (HIL_GPS carries no speed accuracy)."""
POS_STD_LIMIT = 5.0
"""Horizontal position standard deviation (m) at which the position test ratio is 1."""
VEL_STD_LIMIT = 1.5
"""Horizontal velocity standard deviation (m/s) at which the velocity test ratio is 1."""
GLITCH_RESET_S = 5.0
"""A GPS position rejected this long is accepted by resetting to it."""
GPS_SETTLE_FIXES = 10
"""Good fixes fused after the origin is set before the position counts as usable."""
GPS_TIMEOUT_S = 0.5
"""No fused GPS for this long: the filter is dead-reckoning."""
GPS_WINDOW_S = 1.0
"""Span of GPS fixes over which the IMU's integrated specific force is compared with the
GPS velocity change (the tilt reference): 5 fixes at 5 Hz, 10 at 10 Hz."""
YAW_OBS_SHARE = 0.1
"""Horizontal velocity change, as a share of g x window, that makes the heading
observable from GPS (1 m/s in 1 s)."""
GPS_YAW_FRESH_S = 2.0
"""A GPS heading observation counts in the compass test this long."""
HEIGHT_TC = 2.0
"""Time constant of the height complementary filter, s."""
BARO_INNOV_SIGMA = 0.5
"""Nominal standard deviation of the baro height innovation, m."""
VERT_VEL_VAR = 0.4**2
"""Nominal variance of the vertical GPS velocity innovation, (m/s)^2."""

# Attitude filter gains (rad/s per unit error, and per unit error per second).
_KP_ACC = 0.6
_KP_ACC_INIT = 5.0
_KI_ACC = 0.02
_KP_MAG = 0.4
_KP_MAG_INIT = 4.0
_KI_MAG = 0.01
_INIT_TIME_S = 3.0
_BIAS_MAX = 0.1


def _wrap_pi(a: float) -> float:
    if -math.pi <= a <= math.pi:
        return a
    return (a + math.pi) % (2.0 * math.pi) - math.pi


class Estimator:
    """Attitude, velocity and position of the vehicle; see the module docstring.

    Public state (read it, don't write it): ``q`` [w, x, y, z] body->NED; the rotation
    matrix rows ``r00..r22``; ``rates`` bias-corrected gyro FRD; ``pn, pe, pd``
    (NED from ``origin``), ``vn, ve, vd``; ``acc_n, acc_e, acc_d`` earth-frame
    acceleration; ``origin`` (lat, lon, alt) or None.
    """

    def __init__(self, declination: float = 0.0) -> None:
        self.declination = declination
        self.q = (1.0, 0.0, 0.0, 0.0)
        self.r00 = self.r11 = self.r22 = 1.0
        self.r01 = self.r02 = self.r10 = self.r12 = self.r20 = self.r21 = 0.0
        self.rates = (0.0, 0.0, 0.0)
        self._bias = [0.0, 0.0, 0.0]
        self._corr = (0.0, 0.0, 0.0)
        self._acc_sum = [0.0, 0.0, 0.0]
        self._acc_n = 0
        self._mag: tuple[float, float, float] | None = None
        self.initialised = False
        self.time_s = 0.0
        self.tilt_error = 1.0
        self.yaw_error = 0.0
        self.use_mag = True
        #: The last compass sample failed its innovation gate and was not used.
        self.mag_rejected = False
        self._earth_field: tuple[float, float, float] | None = None
        # Horizontal.
        self.pn = self.pe = 0.0
        self.vn = self.ve = 0.0
        self.acc_n = self.acc_e = self.acc_d = 0.0
        self._p00 = 1e4
        self._p01 = 0.0
        self._p11 = 100.0
        self._cov_t = 0.0
        self.origin: tuple[float, float, float] | None = None
        self._cos_lat = 1.0
        self._fused_fixes = 0
        self._last_fuse_t = -1e9
        self.glitching = False
        self._glitch_start = 0.0
        self.events: list[str] = []
        # GPS-aided tilt reference: IMU-predicted against GPS velocity change.
        self._int_n = self._int_e = self._int_d = 0.0
        self._vel_hist: deque[tuple[float, ...]] = deque(maxlen=12)
        #: Heading error seen by GPS (rad, estimate to truth) while manoeuvring, and when.
        self.gps_yaw_error = 0.0
        self._gps_yaw_t = -1e9
        self._gps_tilt = (0.0, 0.0)
        self._gps_tilt_t = -1e9
        # Vertical.
        self.pd = 0.0
        self.vd = 0.0
        self._abias_d = 0.0
        self._baro_ref: float | None = None
        self._baro_sum = 0.0
        self._baro_n = 0
        self._last_baro_t = -1e9
        # Test ratios.
        self.vel_ratio = 0.0
        self.pos_ratio = 0.0
        self.hgt_ratio = 0.0
        self.mag_ratio = 0.0
        self._vel_innov_ratio = 0.0
        self._pos_innov_ratio = 0.0

    # ---------------------------------------------------------------- per loop
    def predict(self, dt: float, ax: float, ay: float, az: float,
                gx: float, gy: float, gz: float) -> None:
        """Propagate attitude and velocity/position with one IMU sample (FRD)."""
        self.time_s += dt
        if not self.initialised:
            self._acc_sum[0] += ax
            self._acc_sum[1] += ay
            self._acc_sum[2] += az
            self._acc_n += 1
            if self._acc_n >= 20:
                self._initialise()
            return
        b = self._bias
        c = self._corr
        p = gx - b[0]
        q_ = gy - b[1]
        r = gz - b[2]
        self.rates = (p, q_, r)
        p += c[0]
        q_ += c[1]
        r += c[2]
        w, x, y, z = self.q
        h = 0.5 * dt
        nw = w - h * (x * p + y * q_ + z * r)
        nx = x + h * (w * p + y * r - z * q_)
        ny = y + h * (w * q_ - x * r + z * p)
        nz = z + h * (w * r + x * q_ - y * p)
        n = 1.0 / math.sqrt(nw * nw + nx * nx + ny * ny + nz * nz)
        w = nw * n
        x = nx * n
        y = ny * n
        z = nz * n
        self.q = (w, x, y, z)
        xx = x * x
        yy = y * y
        zz = z * z
        xy = x * y
        xz = x * z
        yz = y * z
        wx = w * x
        wy = w * y
        wz = w * z
        r00 = self.r00 = 1.0 - 2.0 * (yy + zz)
        r01 = self.r01 = 2.0 * (xy - wz)
        r02 = self.r02 = 2.0 * (xz + wy)
        r10 = self.r10 = 2.0 * (xy + wz)
        r11 = self.r11 = 1.0 - 2.0 * (xx + zz)
        r12 = self.r12 = 2.0 * (yz - wx)
        r20 = self.r20 = 2.0 * (xz - wy)
        r21 = self.r21 = 2.0 * (yz + wx)
        r22 = self.r22 = 1.0 - 2.0 * (xx + yy)
        an = r00 * ax + r01 * ay + r02 * az
        ae = r10 * ax + r11 * ay + r12 * az
        ad = r20 * ax + r21 * ay + r22 * az + GRAVITY - self._abias_d
        self.acc_n = an
        self.acc_e = ae
        self.acc_d = ad
        self._int_n += an * dt
        self._int_e += ae * dt
        self._int_d += ad * dt
        self.pn += (self.vn + 0.5 * an * dt) * dt
        self.pe += (self.ve + 0.5 * ae * dt) * dt
        self.vn += an * dt
        self.ve += ae * dt
        self.pd += (self.vd + 0.5 * ad * dt) * dt
        self.vd += ad * dt

    def correct_attitude(self, dt: float, ax: float, ay: float, az: float,
                         mag: tuple[float, float, float] | None) -> None:
        """Recompute the accel/compass correction rates (call at ~100 Hz, ``dt`` apart)."""
        if not self.initialised:
            if mag is not None:
                self._mag = mag
            return
        init = self.time_s < _INIT_TIME_S
        r20 = self.r20
        r21 = self.r21
        r22 = self.r22
        cx = cy = cz = 0.0
        norm = math.sqrt(ax * ax + ay * ay + az * az)
        if self.time_s - self._gps_tilt_t < 0.3:
            # Tilt error measured against GPS: valid while manoeuvring.
            en, ee = self._gps_tilt
            ex = self.r00 * en + self.r10 * ee
            ey = self.r01 * en + self.r11 * ee
            ez = self.r02 * en + self.r12 * ee
            k = _KP_ACC
            cx += k * ex
            cy += k * ey
            cz += k * ez
            ki = _KI_ACC * dt
            b = self._bias
            b[0] -= ki * ex
            b[1] -= ki * ey
            b[2] -= ki * ez
            if 0.5 * GRAVITY < norm < 1.5 * GRAVITY:
                self.tilt_error = math.sqrt(
                    (-ay * r22 + az * r21) ** 2 + (-az * r20 + ax * r22) ** 2
                     + (-ax * r21 + ay * r20) ** 2) / norm
        elif 0.5 * GRAVITY < norm < 1.5 * GRAVITY:
            # Measured "down" in body is -accel/|accel|; estimated is R^T (0,0,1).
            ux = -ax / norm
            uy = -ay / norm
            uz = -az / norm
            ex = uy * r22 - uz * r21
            ey = uz * r20 - ux * r22
            ez = ux * r21 - uy * r20
            self.tilt_error = math.sqrt(ex * ex + ey * ey + ez * ez)
            # Trust the accel less when it is far from 1 g (manoeuvring).
            k = (_KP_ACC_INIT if init else _KP_ACC) * (1.0 - 2.0 * abs(norm / GRAVITY - 1.0))
            cx += k * ex
            cy += k * ey
            cz += k * ez
            ki = _KI_ACC * dt
            b = self._bias
            b[0] -= ki * ex
            b[1] -= ki * ey
            b[2] -= ki * ez
        if mag is not None and self.use_mag:
            mx, my, mz = mag
            mn = self.r00 * mx + self.r01 * my + self.r02 * mz
            me = self.r10 * mx + self.r11 * my + self.r12 * mz
            md = r20 * mx + r21 * my + r22 * mz
            field_ratio = self._mag_field_ratio(init, mx, my, mz, mn, me, md)
            if mn * mn + me * me > 1e-6:
                err = _wrap_pi(self.declination - math.atan2(me, mn))
                self.yaw_error = err
                # The compass is also judged against GPS's view of the heading while the
                # vehicle manoeuvres: a compass bent by the airframe from the start pulls
                # the estimate along with it, so its own innovation stays small.
                seen = field_ratio
                if self.time_s - self._gps_yaw_t < GPS_YAW_FRESH_S:
                    seen = max(seen, abs(self.gps_yaw_error) / MAG_GATE_RAD)
                self.mag_ratio += 0.1 * (min(seen, 5.0) - self.mag_ratio)
                # EKF3 fuses a compass sample only when every axis passes its gate
                # (AP_NavEKF3_MagFusion.cpp, magHealth); a failing one steers nothing and
                # the heading carries on from the gyros.
                self.mag_rejected = field_ratio >= 1.0
                if self.mag_rejected:
                    err = 0.0
                elif abs(err) > 0.3 and not init:
                    err = 0.3 if err > 0.0 else -0.3
                k = _KP_MAG_INIT if init else _KP_MAG
                # A yaw correction about earth down, in body axes: R^T (0, 0, 1).
                cx += k * err * r20
                cy += k * err * r21
                cz += k * err * r22
                ki = _KI_MAG * dt * err
                b = self._bias
                b[0] -= ki * r20
                b[1] -= ki * r21
                b[2] -= ki * r22
        else:
            self.mag_ratio = 0.0
        b = self._bias
        for i in range(3):
            if b[i] > _BIAS_MAX:
                b[i] = _BIAS_MAX
            elif b[i] < -_BIAS_MAX:
                b[i] = -_BIAS_MAX
        self._corr = (cx, cy, cz)

    def _mag_field_ratio(self, init: bool, mx: float, my: float, mz: float,
                         mn: float, me: float, md: float) -> float:
        """The compass's innovation test ratio, as EKF3 reports it (its square root).

        While the heading initialises, the earth field is learned from the compass (its
        horizontal strength along the declination, its down part). After that each
        sample is compared, per body axis, with that field rotated into the body; the
        largest error over ``MAG_GATE_SIGMA x MAG_NOISE_GAUSS`` is the ratio
        (AP_NavEKF3_MagFusion.cpp magTestRatio, AP_NavEKF3_Outputs.cpp getVariances:
        EKF_STATUS_REPORT's compass variance is the square root of the test ratio).
        """
        if init or self._earth_field is None:
            h = math.sqrt(mn * mn + me * me)
            target = (h * math.cos(self.declination), h * math.sin(self.declination), md)
            if self._earth_field is None:
                self._earth_field = target
            else:
                self._earth_field = tuple(  # type: ignore[assignment]
                    e + 0.1 * (t - e) for e, t in zip(self._earth_field, target, strict=True))
            return 0.0
        en, ee, ed = self._earth_field
        bx = self.r00 * en + self.r10 * ee + self.r20 * ed
        by = self.r01 * en + self.r11 * ee + self.r21 * ed
        bz = self.r02 * en + self.r12 * ee + self.r22 * ed
        worst = max(abs(mx - bx), abs(my - by), abs(mz - bz))
        return worst / (MAG_GATE_SIGMA * MAG_NOISE_GAUSS)

    def correct_height(self, height_m: float, dt: float) -> float:
        """Blend one height measurement (m above origin, up) taken ``dt`` after the last.

        The three gains place all poles of the error dynamics at ``-1 / HEIGHT_TC``
        (ArduPilot's AP_InertialNav third-order filter). A measurement above the
        estimate (``err > 0``) moves height and climb rate up and raises the accel
        bias: the down acceleration was over-read. Returns the innovation (m).
        """
        err = height_m + self.pd
        k1 = 3.0 / HEIGHT_TC
        k2 = 3.0 / (HEIGHT_TC * HEIGHT_TC)
        k3 = 1.0 / (HEIGHT_TC * HEIGHT_TC * HEIGHT_TC)
        e = err if -20.0 < err < 20.0 else (20.0 if err > 0.0 else -20.0)
        self.pd -= k1 * e * dt
        self.vd -= k2 * e * dt
        # The bias is subtracted from the measured down acceleration in ``predict``, so
        # it must grow when the estimate sinks below the measurement; the opposite sign
        # makes the error dynamics s^3 + k1 s^2 + k2 s - k3, with a real root in the
        # right half-plane: without GPS velocity the climb-rate estimate walks away
        # until the clamp holds it, and a landing turns into a climb.
        self._abias_d += k3 * e * dt
        if self._abias_d > 2.0:
            self._abias_d = 2.0
        elif self._abias_d < -2.0:
            self._abias_d = -2.0
        return err

    def on_baro(self, t_s: float, pressure_hpa: float, dt: float) -> None:
        """One barometer sample: calibrates the ground reference, then corrects height."""
        alt = 44330.77 * (1.0 - (pressure_hpa / 1013.25) ** 0.190263)
        if self._baro_ref is None:
            self._baro_sum += alt
            self._baro_n += 1
            if self._baro_n >= 40:
                self._baro_ref = self._baro_sum / self._baro_n
            self._last_baro_t = t_s
            return
        self._last_baro_t = t_s
        err = self.correct_height(alt - self._baro_ref, dt)
        self.hgt_ratio += 0.01 * (min(abs(err) / (GATE_SIGMA * BARO_INNOV_SIGMA), 5.0)
                                  - self.hgt_ratio)

    def baro_fresh(self, t_s: float) -> bool:
        """A baro sample fused in the last half second."""
        return t_s - self._last_baro_t < 0.5 and self._baro_ref is not None

    # ---------------------------------------------------------------- GPS
    def on_gps(self, t_s: float, lat: float, lon: float, alt: float,
               vn: float, ve: float, vd: float, eph: float) -> None:
        """Fuse one good 3D fix (the caller checks fix type and sanity)."""
        if self.origin is None:
            self.origin = (lat, lon, alt)
            self._cos_lat = math.cos(math.radians(lat))
            self.pn = self.pe = 0.0
            self.vn, self.ve = vn, ve
            self._p00 = max(eph, 0.5) ** 2
            self._p01 = 0.0
            self._p11 = GPS_VEL_VAR
            self._cov_t = t_s
            self._last_fuse_t = t_s
            self._fused_fixes = 1
            return
        lat0, lon0, alt0 = self.origin
        zn = math.radians(lat - lat0) * EARTH_RADIUS_M
        ze = math.radians(lon - lon0) * EARTH_RADIUS_M * self._cos_lat
        # Covariance prediction over the time since the last update (exact for the
        # constant-velocity model with white acceleration noise).
        T = t_s - self._cov_t
        if T < 0.0:
            T = 0.0
        self._cov_t = t_s
        p00, p01, p11 = self._predicted_cov(T)
        rp = max(eph, 0.3) ** 2
        self._tilt_from_gps(t_s, vn, ve, vd)
        # Velocity first (it does not glitch with a position jump).
        rv = GPS_VEL_VAR
        s = p11 + rv
        yn = vn - self.vn
        ye = ve - self.ve
        yd = vd - self.vd
        vel_ratio = math.sqrt((yn * yn + ye * ye) / (2.0 * s) + yd * yd / (2.0 * VERT_VEL_VAR)
                              ) / GATE_SIGMA
        self._vel_innov_ratio = vel_ratio
        if vel_ratio < 1.0:
            k0 = p01 / s
            k1 = p11 / s
            self.pn += k0 * yn
            self.pe += k0 * ye
            self.vn += k1 * yn
            self.ve += k1 * ye
            self.vd += 0.1 * yd
            p00, p01, p11 = p00 - k0 * p01, p01 - k0 * p11, p11 - k1 * p11
        # Position.
        s = p00 + rp
        yn = zn - self.pn
        ye = ze - self.pe
        pos_ratio = math.sqrt((yn * yn + ye * ye) / (2.0 * s)) / GATE_SIGMA
        self._pos_innov_ratio = pos_ratio
        accept = pos_ratio < 1.0
        if not accept:
            if not self.glitching:
                self.glitching = True
                self._glitch_start = t_s
                self.events.append("glitch")
            elif t_s - self._glitch_start > GLITCH_RESET_S:
                # Persistent: believe GPS again.
                self.pn = zn
                self.pe = ze
                p00 = rp
                p01 = 0.0
                self.glitching = False
                self._pos_innov_ratio = 0.0
                self.events.append("glitch_cleared")
        else:
            if self.glitching:
                self.glitching = False
                self.events.append("glitch_cleared")
            k0 = p00 / s
            k1 = p01 / s
            self.pn += k0 * yn
            self.pe += k0 * ye
            self.vn += k1 * yn
            self.ve += k1 * ye
            p00, p01, p11 = p00 - k0 * p00, p01 - k0 * p01, p11 - k1 * p01
        self._p00, self._p01, self._p11 = p00, p01, p11
        self._last_fuse_t = t_s
        self._fused_fixes += 1

    def _tilt_from_gps(self, t_s: float, vn: float, ve: float, vd: float) -> None:
        """Compare the IMU's integrated specific force with GPS velocity change over ~0.5 s.

        Both are the specific force integrated over the same window; the rotation between
        them (its horizontal part) is the attitude's tilt error, free of the
        "accel = gravity" assumption that fails while accelerating.
        """
        h = self._vel_hist
        h.append((t_s, vn, ve, vd, self._int_n, self._int_e, self._int_d))
        # The oldest fix at most GPS_WINDOW_S back (at 5 Hz, 1 s: five fixes apart).
        start = None
        for entry in h:
            if t_s - entry[0] <= GPS_WINDOW_S + 1e-3:
                start = entry
                break
        if start is None:
            return
        t0, vn0, ve0, vd0, in0, ie0, id0 = start
        T = t_s - t0
        if T < 0.3:
            return
        gT = GRAVITY * T
        un, ue, ud = self._int_n - in0, self._int_e - ie0, self._int_d - id0 - gT
        gn, ge, gd = vn - vn0, ve - ve0, vd - vd0 - gT
        # A heading error turns the IMU's horizontal vector about the vertical; it is not
        # a tilt. Where the horizontal velocity change is large enough to show it, take
        # that turn out first (and keep it: it is GPS's view of the heading error).
        hu = math.hypot(un, ue)
        hg = math.hypot(gn, ge)
        if hu > YAW_OBS_SHARE * gT and hg > YAW_OBS_SHARE * gT:
            yaw = math.atan2(un * ge - ue * gn, un * gn + ue * ge)
            self.gps_yaw_error = yaw
            self._gps_yaw_t = self.time_s
            c, s_ = math.cos(yaw), math.sin(yaw)
            un, ue = c * un - s_ * ue, s_ * un + c * ue
        nu = math.sqrt(un * un + ue * ue + ud * ud)
        ng = math.sqrt(gn * gn + ge * ge + gd * gd)
        if nu < 0.5 * gT or ng < 0.5 * gT:
            return
        # Earth-frame rotation taking the IMU's vector to the GPS one (tilt part only).
        self._gps_tilt = ((ue * gd - ud * ge) / (nu * ng), (ud * gn - un * gd) / (nu * ng))
        self._gps_tilt_t = self.time_s

    def on_gps_height(self, alt: float, dt: float) -> None:
        """Use GPS altitude (m AMSL) for height when there is no barometer."""
        if self.origin is not None:
            self.correct_height(alt - self.origin[2], dt)

    def _predicted_cov(self, T: float) -> tuple[float, float, float]:
        q = ACCEL_NOISE
        p00 = self._p00 + 2.0 * T * self._p01 + T * T * self._p11 + q * T * T * T / 3.0
        p01 = self._p01 + T * self._p11 + q * T * T / 2.0
        p11 = self._p11 + q * T
        if p00 > 1e8:
            p00 = 1e8
        if p11 > 1e6:
            p11 = 1e6
        return p00, p01, p11

    def update_status(self, t_s: float) -> None:
        """Refresh the test ratios (call at ~10 Hz)."""
        p00, _, p11 = self._predicted_cov(max(0.0, t_s - self._cov_t))
        self.pos_std = math.sqrt(p00)
        self.vel_std = math.sqrt(p11)
        fresh = t_s - self._last_fuse_t < GPS_TIMEOUT_S
        vi = self._vel_innov_ratio if fresh else 0.0
        pi = self._pos_innov_ratio if fresh or self.glitching else 0.0
        self.vel_ratio = max(vi, self.vel_std / VEL_STD_LIMIT)
        self.pos_ratio = max(pi, self.pos_std / POS_STD_LIMIT)

    def position_lla(self) -> tuple[float, float, float] | None:
        """The estimated position as (latitude deg, longitude deg, altitude m), converted
        from NED around the origin as GPS fixes are; None before the origin is set."""
        if self.origin is None:
            return None
        lat0, lon0, alt0 = self.origin
        return (lat0 + math.degrees(self.pn / EARTH_RADIUS_M),
                lon0 + math.degrees(self.pe / (EARTH_RADIUS_M * self._cos_lat)),
                alt0 - self.pd)

    def position_ok(self, t_s: float) -> bool:
        """A usable horizontal position: origin set, settled, uncertainty in bounds."""
        if self.origin is None or self._fused_fixes < GPS_SETTLE_FIXES:
            return False
        p00, _, _ = self._predicted_cov(max(0.0, t_s - self._cov_t))
        return p00 < POS_STD_LIMIT * POS_STD_LIMIT

    def gps_fresh(self, t_s: float) -> bool:
        """GPS fused recently."""
        return t_s - self._last_fuse_t < GPS_TIMEOUT_S

    def euler(self) -> tuple[float, float, float]:
        """(roll, pitch, yaw) rad, ZYX."""
        roll = math.atan2(self.r21, self.r22)
        sp = -self.r20
        pitch = math.asin(1.0 if sp > 1.0 else (-1.0 if sp < -1.0 else sp))
        yaw = math.atan2(self.r10, self.r00)
        return roll, pitch, yaw

    def _initialise(self) -> None:
        """Level from the averaged accel, heading from the compass (or north)."""
        n = self._acc_n
        ax, ay, az = (s / n for s in self._acc_sum)
        roll = math.atan2(-ay, -az)
        pitch = math.atan2(ax, math.sqrt(ay * ay + az * az))
        yaw = 0.0
        if self._mag is not None and self.use_mag:
            mx, my, mz = self._mag
            cr, sr = math.cos(roll), math.sin(roll)
            cp, sp = math.cos(pitch), math.sin(pitch)
            # Tilt-compensate, then heading = declination - measured angle.
            hx = mx * cp + (my * sr + mz * cr) * sp
            hy = my * cr - mz * sr
            yaw = _wrap_pi(self.declination - math.atan2(hy, hx))
        cr, sr = math.cos(roll / 2), math.sin(roll / 2)
        cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
        cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
        self.q = (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
                  cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy)
        self.initialised = True
        self.time_s = 0.0
        self.predict(0.0, ax, ay, az, 0.0, 0.0, 0.0)
        self.time_s = 0.0
