"""Controllers: rate PIDs, attitude P, position/velocity cascade, vertical loop, mixer.

The cascade, outer to inner: position P (sqrt controller) -> velocity PID ->
acceleration -> lean angles and collective thrust (with a learned hover throttle) ->
attitude P on the quaternion error -> rate PID -> quad-X mixer. Gains are read from the
parameter store by ``Gains.reload`` (cheap, a few times a second).

Motor layout and torque signs are those of docs/architecture.md: motor 1 front-right
CCW, 2 back-left CCW, 3 front-left CW, 4 back-right CW; positive roll needs the left
motors (2, 3) up, positive pitch the front motors (1, 3) up, positive yaw the CCW
motors (1, 2) up.
"""

from __future__ import annotations

import math

from hil.firmware.paramdefs import read_param

GRAVITY = 9.80665

# Mixer factors (roll, pitch, yaw) per motor 1..4.
MIX = ((-1.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, -1.0), (-1.0, -1.0, -1.0))


class Gains:
    """Controller gains and limits in SI units, refreshed from the parameter store."""

    def __init__(self, params) -> None:
        self.params = params
        self.reload()

    def reload(self) -> None:
        """Re-read every gain (call a few times per second; parameters may change)."""
        params = self.params

        def g(name: str) -> float:
            return read_param(params, name)

        self.rat = (
            (g("ATC_RAT_RLL_P"), g("ATC_RAT_RLL_I"), g("ATC_RAT_RLL_D"), g("ATC_RAT_RLL_IMAX")),
            (g("ATC_RAT_PIT_P"), g("ATC_RAT_PIT_I"), g("ATC_RAT_PIT_D"), g("ATC_RAT_PIT_IMAX")),
            (g("ATC_RAT_YAW_P"), g("ATC_RAT_YAW_I"), g("ATC_RAT_YAW_D"), g("ATC_RAT_YAW_IMAX")),
        )
        self.rat_fltd = g("ATC_RAT_FLTD")
        self.ang_p = (g("ATC_ANG_RLL_P"), g("ATC_ANG_PIT_P"), g("ATC_ANG_YAW_P"))
        self.rate_rp_max = math.radians(g("ATC_RATE_RP_MAX")) or 1e3
        self.rate_y_max = math.radians(g("ATC_RATE_Y_MAX")) or 1e3
        self.angle_max = math.radians(g("ANGLE_MAX") / 100.0)
        self.posxy_p = g("PSC_POSXY_P")
        self.velxy = (g("PSC_VELXY_P"), g("PSC_VELXY_I"), g("PSC_VELXY_D"),
                      g("PSC_VELXY_IMAX") / 100.0)
        self.posz_p = g("PSC_POSZ_P")
        self.velz_p = g("PSC_VELZ_P")
        self.accz = (g("PSC_ACCZ_P") * 0.1, g("PSC_ACCZ_I") * 0.1, g("PSC_ACCZ_IMAX") / 1000.0)
        self.accz_filt = g("PSC_ACCZ_FILT")
        self.spin_arm = g("MOT_SPIN_ARM")
        self.spin_min = g("MOT_SPIN_MIN")
        self.spin_max = g("MOT_SPIN_MAX")


def sqrt_controller(error: float, p: float, accel: float) -> float:
    """Velocity that closes ``error`` with gain ``p`` near zero and decelerates at ``accel``.

    Linear (``p * error``) close in, ``sqrt(2 a (|e| - a / 2p^2))`` beyond, so the
    stopping distance is respected at any speed.
    """
    if accel <= 0.0 or p <= 0.0:
        return p * error
    linear = accel / (p * p)
    if error > linear:
        return math.sqrt(2.0 * accel * (error - 0.5 * linear))
    if error < -linear:
        return -math.sqrt(2.0 * accel * (-error - 0.5 * linear))
    return p * error


class AttitudeRateController:
    """Attitude P on the quaternion error and rate PIDs; outputs roll/pitch/yaw mix."""

    def __init__(self, gains: Gains) -> None:
        self.gains = gains
        self.reset()

    def reset(self) -> None:
        """Zero the integrators and derivative memory (on the ground, at arming)."""
        self.i_r = self.i_p = self.i_y = 0.0
        self.d_r = self.d_p = self.d_y = 0.0
        self.last = (0.0, 0.0, 0.0)
        self.target_rates = (0.0, 0.0, 0.0)

    def update(self, dt: float, q: tuple[float, float, float, float],
               target_q: tuple[float, float, float, float], yaw_rate_ff: float,
               rates: tuple[float, float, float], integrate: bool) -> tuple[float, float, float]:
        """One attitude + rate step; returns (roll, pitch, yaw) mixer inputs."""
        g = self.gains
        w, x, y, z = q
        tw, tx, ty, tz = target_q
        # Error rotation in body axes: conj(q) * target.
        ew = w * tw + x * tx + y * ty + z * tz
        ex = w * tx - x * tw - y * tz + z * ty
        ey = w * ty + x * tz - y * tw - z * tx
        ez = w * tz - x * ty + y * tx - z * tw
        if ew < 0.0:
            ex = -ex
            ey = -ey
            ez = -ez
            ew = -ew
        s = math.sqrt(ex * ex + ey * ey + ez * ez)
        if s > 1e-9:
            k = 2.0 * math.atan2(s, ew) / s
        else:
            k = 2.0
        kp = g.ang_p
        rp_max = g.rate_rp_max
        y_max = g.rate_y_max
        # Yaw rate feed-forward about earth down, in body axes (third row of R).
        r20 = 2.0 * (x * z - w * y)
        r21 = 2.0 * (y * z + w * x)
        r22 = 1.0 - 2.0 * (x * x + y * y)
        tr = kp[0] * k * ex + yaw_rate_ff * r20
        tp = kp[1] * k * ey + yaw_rate_ff * r21
        ty_ = kp[2] * k * ez + yaw_rate_ff * r22
        tr = rp_max if tr > rp_max else (-rp_max if tr < -rp_max else tr)
        tp = rp_max if tp > rp_max else (-rp_max if tp < -rp_max else tp)
        ty_ = y_max if ty_ > y_max else (-y_max if ty_ < -y_max else ty_)
        self.target_rates = (tr, tp, ty_)
        return self.rate_step(dt, tr, tp, ty_, rates, integrate)

    def rate_step(self, dt: float, tr: float, tp: float, ty: float,
                  rates: tuple[float, float, float], integrate: bool) -> tuple[float, float, float]:
        """Rate PIDs (derivative on measurement, low-passed)."""
        g = self.gains
        (rp, ri, rd, rimax), (pp, pi, pd, pimax), (yp, yi, yd, yimax) = g.rat
        p, q, r = rates
        lp, lq, lr = self.last
        self.last = rates
        alpha = dt / (dt + 1.0 / (2.0 * math.pi * g.rat_fltd)) if dt > 0.0 else 0.0
        inv_dt = 1.0 / dt if dt > 0.0 else 0.0
        self.d_r += alpha * ((p - lp) * inv_dt - self.d_r)
        self.d_p += alpha * ((q - lq) * inv_dt - self.d_p)
        self.d_y += alpha * ((r - lr) * inv_dt - self.d_y)
        er = tr - p
        ep = tp - q
        ey = ty - r
        if integrate:
            i = self.i_r + ri * er * dt
            self.i_r = rimax if i > rimax else (-rimax if i < -rimax else i)
            i = self.i_p + pi * ep * dt
            self.i_p = pimax if i > pimax else (-pimax if i < -pimax else i)
            i = self.i_y + yi * ey * dt
            self.i_y = yimax if i > yimax else (-yimax if i < -yimax else i)
        return (rp * er + self.i_r - rd * self.d_r,
                pp * ep + self.i_p - pd * self.d_p,
                yp * ey + self.i_y - yd * self.d_y)


def euler_to_quat(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """ZYX Euler angles to [w, x, y, z]."""
    cr = math.cos(0.5 * roll)
    sr = math.sin(0.5 * roll)
    cp = math.cos(0.5 * pitch)
    sp = math.sin(0.5 * pitch)
    cy = math.cos(0.5 * yaw)
    sy = math.sin(0.5 * yaw)
    return (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy)


def mix(collective: float, roll: float, pitch: float, yaw: float,
        lo: float, hi: float) -> tuple[tuple[float, float, float, float], bool]:
    """Quad-X mixer with saturation handling: attitude first, then yaw, then collective.

    Returns the four motor commands in ``lo..hi`` and whether a limit was hit.
    """
    span = hi - lo
    limited = False
    # Roll/pitch alone must fit in the span.
    rp1 = -roll + pitch
    rp2 = roll - pitch
    rp3 = roll + pitch
    rp4 = -roll - pitch
    rp_max = max(rp1, rp2, rp3, rp4)
    rp_min = min(rp1, rp2, rp3, rp4)
    rp_range = rp_max - rp_min
    if rp_range > span:
        s = span / rp_range
        rp1 *= s
        rp2 *= s
        rp3 *= s
        rp4 *= s
        rp_max *= s
        rp_min *= s
        rp_range = span
        yaw = 0.0
        limited = True
    # Yaw gets what is left.
    yaw_room = 0.5 * (span - rp_range)
    if yaw > yaw_room:
        yaw = yaw_room
        limited = True
    elif yaw < -yaw_room:
        yaw = -yaw_room
        limited = True
    m1 = rp1 + yaw
    m2 = rp2 + yaw
    m3 = rp3 - yaw
    m4 = rp4 - yaw
    mmax = max(m1, m2, m3, m4)
    mmin = min(m1, m2, m3, m4)
    # Collective: as asked if it fits, else shifted to keep the attitude demand.
    c_lo = lo - mmin
    c_hi = hi - mmax
    if collective < c_lo:
        collective = c_lo
        limited = True
    elif collective > c_hi:
        collective = c_hi
        limited = True
    return (collective + m1, collective + m2, collective + m3, collective + m4), limited


class PositionController:
    """Horizontal position -> velocity -> acceleration, and vertical position -> throttle.

    Targets are set by the modes: ``pos_target`` (NED north, east), ``vel_ff``
    (north, east feed-forward), ``alt_target`` (down, m) and ``climb_ff`` (down, m/s).
    Outputs: lean angles for the current heading and the unboosted collective.
    """

    def __init__(self, gains: Gains, hover: float) -> None:
        self.gains = gains
        self.hover = hover
        self.reset_xy()
        self.reset_z()

    def reset_xy(self) -> None:
        """Forget the horizontal integrators."""
        self.i_n = self.i_e = 0.0
        self.last_err_n = self.last_err_e = 0.0

    def reset_z(self) -> None:
        """Forget the vertical integrator and filters."""
        self.i_z = 0.0
        self.acc_err_f = 0.0

    def xy(self, dt: float, pn: float, pe: float, vn: float, ve: float,
           tn: float, te: float, ffn: float, ffe: float, speed_max: float,
           accel_max: float) -> tuple[float, float]:
        """Earth-frame horizontal acceleration demand (m/s^2) for a position target."""
        g = self.gains
        en = tn - pn
        ee = te - pe
        d = math.sqrt(en * en + ee * ee)
        if d > 1e-6:
            v = sqrt_controller(d, g.posxy_p, accel_max)
            vtn = ffn + v * en / d
            vte = ffe + v * ee / d
        else:
            vtn = ffn
            vte = ffe
        vt = math.sqrt(vtn * vtn + vte * vte)
        if vt > speed_max > 0.0:
            vtn *= speed_max / vt
            vte *= speed_max / vt
        return self.vel_xy(dt, vn, ve, vtn, vte)

    def vel_xy(self, dt: float, vn: float, ve: float, vtn: float, vte: float
               ) -> tuple[float, float]:
        """Velocity PID to an acceleration demand, limited by the lean angle."""
        kp, ki, kd, imax = self.gains.velxy
        en = vtn - vn
        ee = vte - ve
        dn = (en - self.last_err_n) / dt if dt > 0.0 else 0.0
        de = (ee - self.last_err_e) / dt if dt > 0.0 else 0.0
        self.last_err_n = en
        self.last_err_e = ee
        an = kp * en + self.i_n + kd * dn
        ae = kp * ee + self.i_e + kd * de
        amax = GRAVITY * math.tan(min(self.gains.angle_max, 1.4))
        a = math.sqrt(an * an + ae * ae)
        if a > amax:
            an *= amax / a
            ae *= amax / a
        else:
            self.i_n += ki * en * dt
            self.i_e += ki * ee * dt
            i = math.sqrt(self.i_n * self.i_n + self.i_e * self.i_e)
            if i > imax:
                self.i_n *= imax / i
                self.i_e *= imax / i
        return an, ae

    def z(self, dt: float, pd: float, vd: float, acc_d: float, target_d: float,
          climb_ff_d: float, speed_up: float, speed_dn: float) -> float:
        """Collective (unboosted, 0..1) for a height target (down m) and climb feed-forward."""
        g = self.gains
        vt = climb_ff_d + sqrt_controller(target_d - pd, g.posz_p, 2.5)
        if vt < -speed_up:
            vt = -speed_up
        elif vt > speed_dn:
            vt = speed_dn
        return self.vel_z(dt, vd, acc_d, vt)

    def vel_z(self, dt: float, vd: float, acc_d: float, vt_d: float) -> float:
        """Climb-rate loop: velocity P -> acceleration PI with hover feed-forward."""
        g = self.gains
        a_up = g.velz_p * (vd - vt_d)
        if a_up > 8.0:
            a_up = 8.0
        elif a_up < -6.0:
            a_up = -6.0
        self.accel_up_target = a_up
        kp, ki, imax = g.accz
        alpha = dt / (dt + 1.0 / (2.0 * math.pi * g.accz_filt))
        err = a_up + acc_d
        self.acc_err_f += alpha * (err - self.acc_err_f)
        i = self.i_z + ki * self.acc_err_f * dt
        self.i_z = imax if i > imax else (-imax if i < -imax else i)
        return self.hover * (1.0 + a_up / GRAVITY) + kp * self.acc_err_f + self.i_z

    def lean_angles(self, an: float, ae: float, yaw: float) -> tuple[float, float]:
        """(roll, pitch) that tilt the thrust to give earth-frame accel (an, ae)."""
        c = math.cos(yaw)
        s = math.sin(yaw)
        fwd = an * c + ae * s
        right = -an * s + ae * c
        pitch = math.atan(-fwd / GRAVITY)
        roll = math.atan(right * math.cos(pitch) / GRAVITY)
        return roll, pitch
