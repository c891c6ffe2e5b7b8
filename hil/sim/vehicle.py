"""A 6-DOF rigid-body quadrotor for the lockstep simulation.

Conventions are those of docs/architecture.md: NED world frame with z = 0 at ground
level (down positive), FRD body frame, quaternion ``[w, x, y, z]`` rotating body
vectors into NED, ArduPilot quad-X motor numbering.

Speed matters more than generality here: ``step`` runs once per control loop and the
harness wants 25x real time at 400 Hz. Everything is therefore written with plain
Python floats and ``math`` (numpy costs microseconds per call on 3-vectors).

State representation: every vector attribute (``pos``, ``vel``, ``quat``, ``rates``,
``specific_force``, ``motor_thrust``) is a **tuple of floats**, replaced (never
mutated) on each step, so a reader can keep a reference without copying. Tests and the
harness may assign new tuples to them (for example to start with a velocity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hil.geo import GRAVITY

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


@dataclass(frozen=True)
class QuadParams:
    """Physical parameters of the quadrotor.

    ``max_thrust`` is per motor; when left ``None`` it is derived so that the four
    motors at full command give ``thrust_to_weight`` times the weight (hover at 0.5
    command for the default 2.0).

    ``drag`` is linear aerodynamic drag in N per m/s of airspeed, applied on the
    **body** axes (forward, right, down): it rotates with the vehicle, which is what a
    real airframe does, and it makes the accelerometer feel the drag as it should.
    """

    mass: float = 1.5
    arm_length: float = 0.25
    inertia: Vec3 = (0.015, 0.015, 0.028)
    thrust_to_weight: float = 2.0
    max_thrust: float | None = None
    motor_time_constant: float = 0.03
    yaw_torque_per_newton: float = 0.016
    drag: Vec3 = (0.3, 0.3, 0.5)
    angular_damping: Vec3 = (0.002, 0.002, 0.002)
    hover_current_a: float = 12.0
    idle_current_a: float = 0.4
    crash_speed: float = 3.0
    crash_tilt_deg: float = 60.0

    def __post_init__(self) -> None:
        if self.max_thrust is None:
            object.__setattr__(
                self, "max_thrust", self.thrust_to_weight * self.mass * GRAVITY / 4.0
            )

    @property
    def hover_thrust(self) -> float:
        """Thrust per motor that holds the weight, N."""
        return self.mass * GRAVITY / 4.0

    @property
    def hover_command(self) -> float:
        """Motor command (0..1) at which the vehicle hovers."""
        assert self.max_thrust is not None
        return self.hover_thrust / self.max_thrust


def _clip01(m: float) -> float:
    # NaN goes to 0 (motor off), which is the safe reading of garbage.
    return 0.0 if not m > 0.0 else (m if m < 1.0 else 1.0)


class Quadrotor:
    """Rigid-body quad-X with first-order motor lag, linear drag and ground contact.

    Public state (tuples of floats, see the module docstring): ``pos`` NED m, ``vel``
    NED m/s, ``quat`` [w, x, y, z] body->NED, ``rates`` FRD rad/s, ``specific_force``
    FRD m/s^2 (what an accelerometer reads, including the ground's support),
    ``motor_thrust`` N per motor after the lag; ``on_ground``, ``crashed`` (latched
    until ``reset``), ``time`` s.
    """

    def __init__(self, params: QuadParams | None = None) -> None:
        self.params = params if params is not None else QuadParams()
        p = self.params
        assert p.max_thrust is not None
        self._tmax = p.max_thrust
        self._mass = p.mass
        self._inv_mass = 1.0 / p.mass
        d = p.arm_length / math.sqrt(2.0)
        self._arm_xy = d
        self._k_yaw = p.yaw_torque_per_newton
        self._ix, self._iy, self._iz = p.inertia
        self._cdx, self._cdy, self._cdz = p.drag
        self._kdx, self._kdy, self._kdz = p.angular_damping
        self._crash_cos = math.cos(math.radians(p.crash_tilt_deg))
        # current_a's constants (the parameters are frozen).
        self._hover_thrust = p.hover_thrust
        self._amps_per_motor = (p.hover_current_a - p.idle_current_a) / 4.0
        self._idle_a = p.idle_current_a
        self._lag_dt = -1.0
        self._lag_a = 0.0
        self.reset()

    def reset(
        self, north: float = 0.0, east: float = 0.0, yaw: float = 0.0, *, down: float = 0.0
    ) -> None:
        """Put the vehicle at rest, level, with heading ``yaw`` (rad), motors stopped.

        ``down`` < 0 starts it at rest in the air (for tests); otherwise on the ground.
        """
        self.pos: Vec3 = (float(north), float(east), min(float(down), 0.0))
        self.vel: Vec3 = (0.0, 0.0, 0.0)
        self.quat: Quat = (math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0))
        self.rates: Vec3 = (0.0, 0.0, 0.0)
        self.on_ground: bool = down >= 0.0
        self.specific_force: Vec3 = (0.0, 0.0, -GRAVITY) if self.on_ground else (0.0, 0.0, 0.0)
        self.motor_thrust: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self.crashed: bool = False
        self.time: float = 0.0

    def step(
        self, dt: float, motors: Sequence[float], wind_ned: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> None:
        """Advance the state by ``dt`` seconds with motor commands ``motors`` (1..4).

        Commands are thrust fractions, clipped to 0..1. ``wind_ned`` is the air velocity
        in NED m/s. Semi-implicit Euler for translation and body rates, exact rotation
        for the attitude over the step, then the quaternion is renormalised.
        """
        if not dt > 0.0:
            raise ValueError(f"dt must be positive, got {dt!r}")
        # Motor lag: exact discretisation of a first-order lag, cached per dt.
        if dt != self._lag_dt:
            self._lag_dt = dt
            self._lag_a = 1.0 - math.exp(-dt / self.params.motor_time_constant)
        a = self._lag_a
        tmax = self._tmax
        m1, m2, m3, m4 = motors
        t1, t2, t3, t4 = self.motor_thrust
        t1 += (_clip01(m1) * tmax - t1) * a
        t2 += (_clip01(m2) * tmax - t2) * a
        t3 += (_clip01(m3) * tmax - t3) * a
        t4 += (_clip01(m4) * tmax - t4) * a
        self.motor_thrust = (t1, t2, t3, t4)
        thrust = t1 + t2 + t3 + t4

        qw, qx, qy, qz = self.quat
        # Rotation matrix body -> NED.
        r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
        r01 = 2.0 * (qx * qy - qw * qz)
        r02 = 2.0 * (qx * qz + qw * qy)
        r10 = 2.0 * (qx * qy + qw * qz)
        r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
        r12 = 2.0 * (qy * qz - qw * qx)
        r20 = 2.0 * (qx * qz - qw * qy)
        r21 = 2.0 * (qy * qz + qw * qx)
        r22 = 1.0 - 2.0 * (qx * qx + qy * qy)

        vn, ve, vd = self.vel
        wn, we, wd = wind_ned
        an = vn - wn
        ae = ve - we
        ad = vd - wd
        # Specific force in body: (thrust + drag) / m, drag on body axes.
        inv_m = self._inv_mass
        fx = -self._cdx * (r00 * an + r10 * ae + r20 * ad) * inv_m
        fy = -self._cdy * (r01 * an + r11 * ae + r21 * ad) * inv_m
        fz = (-self._cdz * (r02 * an + r12 * ae + r22 * ad) - thrust) * inv_m
        acc_d = r20 * fx + r21 * fy + r22 * fz + GRAVITY

        self.time += dt
        if self.on_ground:
            if acc_d >= 0.0:
                # Ground holds it: at rest, level, heading kept.
                self.specific_force = (0.0, 0.0, -GRAVITY)
                return
            self.on_ground = False

        acc_n = r00 * fx + r01 * fy + r02 * fz
        acc_e = r10 * fx + r11 * fy + r12 * fz
        vn += acc_n * dt
        ve += acc_e * dt
        vd += acc_d * dt
        pn, pe, pd = self.pos
        pd += vd * dt

        if pd > 0.0:
            # Touchdown.
            if vd > self.params.crash_speed or r22 < self._crash_cos:
                self.crashed = True
            self._settle(pn + vn * dt, pe + ve * dt)
            return

        self.pos = (pn + vn * dt, pe + ve * dt, pd)
        self.vel = (vn, ve, vd)
        self.specific_force = (fx, fy, fz)

        # Rotational dynamics, diagonal inertia, torques per the architecture page.
        d = self._arm_xy
        tau_x = d * (t2 + t3 - t1 - t4)
        tau_y = d * (t1 + t3 - t2 - t4)
        tau_z = self._k_yaw * (t1 + t2 - t3 - t4)
        p_, q_, r_ = self.rates
        ix = self._ix
        iy = self._iy
        iz = self._iz
        p_ += (tau_x - self._kdx * p_ - (iz - iy) * q_ * r_) / ix * dt
        q_ += (tau_y - self._kdy * q_ - (ix - iz) * r_ * p_) / iy * dt
        r_ += (tau_z - self._kdz * r_ - (iy - ix) * p_ * q_) / iz * dt
        self.rates = (p_, q_, r_)

        # Attitude: rotate by the body rates over dt (exact for constant rates).
        w2 = p_ * p_ + q_ * q_ + r_ * r_
        if w2 > 1e-24:
            wmag = math.sqrt(w2)
            half = 0.5 * wmag * dt
            s = math.sin(half) / wmag
            da = math.cos(half)
        else:
            s = 0.5 * dt
            da = 1.0
        db = p_ * s
        dc = q_ * s
        dd = r_ * s
        nw = qw * da - qx * db - qy * dc - qz * dd
        nx = qw * db + qx * da + qy * dd - qz * dc
        ny = qw * dc - qx * dd + qy * da + qz * db
        nz = qw * dd + qx * dc - qy * db + qz * da
        n = 1.0 / math.sqrt(nw * nw + nx * nx + ny * ny + nz * nz)
        self.quat = (nw * n, nx * n, ny * n, nz * n)

    def _settle(self, north: float, east: float) -> None:
        """Come to rest on the ground at (north, east), level, heading kept."""
        yaw = self.euler()[2]
        self.pos = (north, east, 0.0)
        self.vel = (0.0, 0.0, 0.0)
        self.rates = (0.0, 0.0, 0.0)
        self.quat = (math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0))
        self.specific_force = (0.0, 0.0, -GRAVITY)
        self.on_ground = True

    def euler(self) -> Vec3:
        """(roll, pitch, yaw) in radians, ZYX convention, yaw in -pi..pi."""
        w, x, y, z = self.quat
        roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
        sp = 2.0 * (w * y - z * x)
        pitch = math.asin(1.0 if sp > 1.0 else (-1.0 if sp < -1.0 else sp))
        yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        return roll, pitch, yaw

    def current_a(self) -> float:
        """Battery current now, A: idle draw plus motors, each rising as thrust^1.5.

        Scaled so that all four motors at hover thrust draw ``hover_current_a`` in total.
        """
        th = self._hover_thrust
        total = 0.0
        for t in self.motor_thrust:
            if t > 0.0:
                total += (t / th) ** 1.5
        return self._idle_a + self._amps_per_motor * total
