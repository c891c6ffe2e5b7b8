"""Flight modes: each turns pilot sticks and mission targets into controller targets.

A mode's ``run(c, dt)`` fills ``c.nav`` (a ``NavTargets``) at the navigation rate
(100 Hz): how the horizontal axes are flown (lean angles or a position target), how the
vertical axis is flown (direct throttle, a height target or a climb rate) and the yaw
rate. ``c`` is the Copter (hil.vfc.copter): modes read its sticks, estimate, home and
parameters through `Vehicle`, what a mode may ask of it. Heights are metres above home,
positions NED metres from home.
"""

from __future__ import annotations

import math
from typing import Protocol

from hil.vfc.control import sqrt_controller

STABILIZE, ALT_HOLD, GUIDED, LOITER, RTL, LAND = 0, 2, 4, 5, 6, 9

XY_LEAN, XY_POS = 0, 1
Z_THR, Z_ALT, Z_VEL = 0, 1, 2

LEASH_M = 4.0
"""How far a moving position target may run ahead of the vehicle, m."""
LAND_LEAD_M = 2.0
"""How far the landing height target may run below (or lag above) the vehicle, m."""


class NavTargets:
    """What the modes ask of the controllers (SI, NED from home, down positive)."""

    def __init__(self) -> None:
        self.xy = XY_LEAN
        self.roll = 0.0
        self.pitch = 0.0
        self.tn = self.te = 0.0
        self.vn = self.ve = 0.0
        self.speed = 5.0
        self.z = Z_THR
        self.throttle = 0.0
        self.td = 0.0
        self.climb_d = 0.0
        self.yaw_rate = 0.0
        self.idle = True


class Vehicle(Protocol):
    """What a mode reads and sets on the copter it flies (hil.vfc.copter.Copter)."""

    #: The targets the mode fills for the controllers.
    nav: NavTargets
    landed: bool
    #: A usable horizontal position estimate (no EKF failsafe).
    position_ok: bool

    def param(self, name: str) -> float: ...

    def sticks(self) -> tuple[float, float, float, float]: ...

    def pilot_climb_rate(self) -> float: ...

    def pilot_yaw_rate(self) -> float: ...

    def angle_max(self) -> float: ...

    def hover_throttle(self) -> float: ...

    def pos_ne(self) -> tuple[float, float]: ...

    def vel_ne(self) -> tuple[float, float]: ...

    def pos_d(self) -> float: ...

    def yaw(self) -> float: ...

    def time_s(self) -> float: ...


class PathShaper:
    """A position target that moves toward a destination with speed and accel limits.

    It keeps its own velocity, so the target accelerates and brakes smoothly; the
    controllers then follow it with the velocity as feed-forward.
    """

    def __init__(self) -> None:
        self.n = self.e = 0.0
        self.vn = self.ve = 0.0

    def reset_to_vehicle(self, c: Vehicle) -> None:
        """Start from where the vehicle is and how it is moving."""
        pn, pe = c.pos_ne()
        vn, ve = c.vel_ne()
        self.reset(pn, pe, vn, ve)

    def reset(self, n: float, e: float, vn: float = 0.0, ve: float = 0.0) -> None:
        """Start from (n, e) moving at (vn, ve)."""
        self.n, self.e, self.vn, self.ve = n, e, vn, ve

    def toward(self, dn: float, de: float, speed: float, accel: float, dt: float) -> float:
        """Step toward destination (dn, de); returns the remaining distance."""
        en = dn - self.n
        ee = de - self.e
        d = math.sqrt(en * en + ee * ee)
        if d > 1e-6:
            v = min(sqrt_controller(d, 1.0, accel), speed)
            self.velocity(v * en / d, ve=v * ee / d, accel=accel, dt=dt)
        else:
            self.velocity(0.0, 0.0, accel, dt)
        return d

    def velocity(self, vn: float, ve: float, accel: float, dt: float) -> None:
        """Step with a desired velocity, changed at most ``accel``."""
        dvn = vn - self.vn
        dve = ve - self.ve
        dv = math.sqrt(dvn * dvn + dve * dve)
        lim = accel * dt
        if dv > lim:
            dvn *= lim / dv
            dve *= lim / dv
        self.vn += dvn
        self.ve += dve
        self.n += self.vn * dt
        self.e += self.ve * dt

    def leash(self, pn: float, pe: float) -> None:
        """Keep the target within ``LEASH_M`` of the vehicle."""
        en = self.n - pn
        ee = self.e - pe
        d = math.sqrt(en * en + ee * ee)
        if d > LEASH_M:
            self.n = pn + en * LEASH_M / d
            self.e = pe + ee * LEASH_M / d

    def apply(self, nav: NavTargets, speed: float) -> None:
        """Make this the horizontal target."""
        nav.xy = XY_POS
        nav.tn = self.n
        nav.te = self.e
        nav.vn = self.vn
        nav.ve = self.ve
        nav.speed = speed


class Mode:
    """Base: a mode's number, name and needs; ``enter`` then ``run`` each nav step."""

    number = -1
    name = "?"
    needs_position = False
    manual_throttle = False
    armable = True
    #: ArduCopter's Mode::is_autopilot() (mode.h): the autopilot, not the pilot, flies
    #: (GUIDED, RTL, LAND). FS_OPTIONS bit 4 lets a GCS failsafe pass only the others.
    autopilot = False

    def is_landing(self) -> bool:
        """ArduCopter's Mode::is_landing(): LAND, and RTL in its final descent."""
        return False

    def enter(self, c: Vehicle) -> None:
        """Called on entering the mode (targets start where the vehicle is)."""

    def run(self, c: Vehicle, dt: float) -> None:
        """Fill ``c.nav``."""

    def wants_takeoff(self, c: Vehicle) -> bool:
        """While landed: should the motors spin up and the vehicle climb?"""
        return c.pilot_climb_rate() > 0.0


def _sticks_lean(c: Vehicle) -> None:
    nav = c.nav
    nav.xy = XY_LEAN
    amax = c.angle_max()
    roll, pitch, _, _ = c.sticks()
    nav.roll = roll * amax
    nav.pitch = pitch * amax


def _hold_height(c: Vehicle, climb_up: float, dt: float) -> None:
    """Climb at ``climb_up`` m/s (pilot), else hold the height target."""
    nav = c.nav
    if nav.z != Z_ALT:
        nav.td = c.pos_d()
        nav.z = Z_ALT
    if climb_up != 0.0:
        nav.td -= climb_up * dt
        # Do not let the target run away from the vehicle.
        pd = c.pos_d()
        if nav.td < pd - 2.0:
            nav.td = pd - 2.0
        elif nav.td > pd + 2.0:
            nav.td = pd + 2.0
    nav.climb_d = -climb_up


class Stabilize(Mode):
    """Sticks -> lean angles and yaw rate; throttle stick straight to the motors."""

    number = STABILIZE
    name = "STABILIZE"
    manual_throttle = True

    def run(self, c: Vehicle, dt: float) -> None:
        _sticks_lean(c)
        nav = c.nav
        nav.z = Z_THR
        _, _, yaw, thr = c.sticks()
        nav.yaw_rate = yaw * c.pilot_yaw_rate()
        # Mid stick is hover throttle.
        h = c.hover_throttle()
        nav.throttle = 2.0 * thr * h if thr < 0.5 else h + (thr - 0.5) * 2.0 * (1.0 - h)

    def wants_takeoff(self, c: Vehicle) -> bool:
        return c.sticks()[3] > 0.02


class AltHold(Mode):
    """Sticks -> lean angles; throttle stick -> climb rate (deadband at mid stick)."""

    number = ALT_HOLD
    name = "ALT_HOLD"

    def enter(self, c: Vehicle) -> None:
        c.nav.z = Z_THR  # re-capture the height target on the first run

    def run(self, c: Vehicle, dt: float) -> None:
        _sticks_lean(c)
        c.nav.yaw_rate = c.sticks()[2] * c.pilot_yaw_rate()
        _hold_height(c, c.pilot_climb_rate(), dt)


class Loiter(Mode):
    """Sticks -> horizontal velocity; centred sticks brake and hold position."""

    number = LOITER
    name = "LOITER"
    needs_position = True

    def __init__(self) -> None:
        self.path = PathShaper()

    def enter(self, c: Vehicle) -> None:
        self.path.reset_to_vehicle(c)
        c.nav.z = Z_THR

    def run(self, c: Vehicle, dt: float) -> None:
        roll, pitch, yaw, _ = c.sticks()
        psi = c.yaw()
        speed = c.param("LOIT_SPEED") / 100.0
        fwd = -pitch * speed
        right = roll * speed
        vn = fwd * math.cos(psi) - right * math.sin(psi)
        ve = fwd * math.sin(psi) + right * math.cos(psi)
        self.path.velocity(vn, ve, 5.0, dt)
        pn, pe = c.pos_ne()
        self.path.leash(pn, pe)
        if c.landed:
            self.path.reset(pn, pe)
        self.path.apply(c.nav, speed)
        c.nav.yaw_rate = yaw * c.pilot_yaw_rate()
        _hold_height(c, c.pilot_climb_rate(), dt)


class Guided(Mode):
    """Takeoff and position targets from the GCS; holds position otherwise."""

    number = GUIDED
    name = "GUIDED"
    needs_position = True
    autopilot = True

    def __init__(self) -> None:
        self.path = PathShaper()
        self.dest: tuple[float, float] = (0.0, 0.0)
        self.dest_d = 0.0
        self.taking_off = False

    def enter(self, c: Vehicle) -> None:
        pn, pe = c.pos_ne()
        self.path.reset(pn, pe)
        self.dest = (pn, pe)
        self.dest_d = c.pos_d()
        self.taking_off = False
        c.nav.z = Z_ALT
        c.nav.td = self.dest_d

    def takeoff(self, c: Vehicle, alt_m: float) -> None:
        """Climb to ``alt_m`` above home, holding the horizontal position."""
        pn, pe = c.pos_ne()
        self.path.reset(pn, pe)
        self.dest = (pn, pe)
        self.dest_d = -alt_m
        c.nav.td = c.pos_d()
        self.taking_off = True

    def goto(self, c: Vehicle, north: float, east: float, down: float | None) -> None:
        """Fly to (north, east[, down]) from home."""
        self.dest = (north, east)
        if down is not None:
            self.dest_d = down

    def wants_takeoff(self, c: Vehicle) -> bool:
        return self.taking_off

    def run(self, c: Vehicle, dt: float) -> None:
        speed = c.param("WPNAV_SPEED") / 100.0
        self.path.toward(self.dest[0], self.dest[1], speed, c.param("WPNAV_ACCEL") / 100.0, dt)
        pn, pe = c.pos_ne()
        self.path.leash(pn, pe)
        if c.landed:
            self.path.reset(pn, pe)
        self.path.apply(c.nav, speed)
        c.nav.yaw_rate = 0.0
        _fly_height(c, self.dest_d, dt)
        if self.taking_off and c.pos_d() < self.dest_d + 0.5:
            self.taking_off = False


def _fly_height(c: Vehicle, dest_d: float, dt: float) -> None:
    """Move the height target toward ``dest_d`` at the WPNAV climb/descent speeds."""
    nav = c.nav
    if nav.z != Z_ALT:
        nav.td = c.pos_d()
        nav.z = Z_ALT
    up = c.param("WPNAV_SPEED_UP") / 100.0
    dn = c.param("WPNAV_SPEED_DN") / 100.0
    err = dest_d - nav.td
    step = max(-up * dt, min(dn * dt, err))
    nav.td += step
    nav.climb_d = step / dt if dt > 0.0 else 0.0
    pd = c.pos_d()
    if nav.td < pd - 3.0:
        nav.td = pd - 3.0


def _descend(c: Vehicle, dt: float) -> None:
    """Lower the height target at the landing rate: WPNAV_SPEED_DN high up, LAND_SPEED
    below LAND_ALT_LOW.

    As in ArduCopter (AC_PosControl::land_at_climb_rate_cm), landing moves a height
    target, not just a climb-rate demand: once the vehicle stands on the ground the
    target keeps sinking below it, the height error grows and the throttle falls to the
    minimum, so the land detector trips even while the climb-rate estimate still reads
    a little descent (after hard manoeuvring its accel bias needs seconds to settle).
    """
    nav = c.nav
    pd = c.pos_d()
    if nav.z != Z_ALT:
        nav.td = pd
        nav.z = Z_ALT
    if -pd > c.param("LAND_ALT_LOW") / 100.0:
        rate = c.param("WPNAV_SPEED_DN") / 100.0
    else:
        rate = c.param("LAND_SPEED") / 100.0
    nav.climb_d = rate
    nav.td += rate * dt
    if nav.td > pd + LAND_LEAD_M:
        nav.td = pd + LAND_LEAD_M
    elif nav.td < pd - LAND_LEAD_M:
        nav.td = pd - LAND_LEAD_M


class Land(Mode):
    """Descend and land; hold the horizontal position when it is known; then disarm.

    Like ArduCopter's ModeLand, whether to hold position is decided on entry and, once
    given up (position lost, EKF failsafe), never taken back during the landing: a
    heading or position that failed once is not trusted to steer the touchdown.
    """

    number = LAND
    name = "LAND"
    armable = False
    autopilot = True

    def is_landing(self) -> bool:
        return True

    def __init__(self) -> None:
        self.path = PathShaper()
        self.use_position = False

    def enter(self, c: Vehicle) -> None:
        self.path.reset_to_vehicle(c)
        self.use_position = c.position_ok
        c.nav.z = Z_THR  # the descent starts from where the vehicle is

    def wants_takeoff(self, c: Vehicle) -> bool:
        return False

    def run(self, c: Vehicle, dt: float) -> None:
        if not c.position_ok:
            self.use_position = False
        land_at(c, self.path, dt, self.use_position)


def land_at(c: Vehicle, path: PathShaper, dt: float, use_position: bool) -> None:
    """The landing behaviour shared by LAND and RTL's last stage."""
    nav = c.nav
    nav.yaw_rate = 0.0
    if use_position and c.position_ok:
        path.velocity(0.0, 0.0, 2.5, dt)
        pn, pe = c.pos_ne()
        path.leash(pn, pe)
        path.apply(nav, 2.0)
    else:
        nav.xy = XY_LEAN
        nav.roll = 0.0
        nav.pitch = 0.0
    _descend(c, dt)


class Rtl(Mode):
    """Climb to max(RTL_ALT, current), fly home, loiter RTL_LOIT_TIME, land, disarm."""

    number = RTL
    name = "RTL"
    needs_position = True
    armable = False
    autopilot = True
    CLIMB, RETURN, LOITER, FINAL = range(4)

    def is_landing(self) -> bool:
        return self.stage == self.FINAL

    def __init__(self) -> None:
        self.path = PathShaper()
        self.stage = self.CLIMB
        self.target_d = 0.0
        self.loiter_start = 0.0

    def enter(self, c: Vehicle) -> None:
        self.path.reset_to_vehicle(c)
        self.target_d = min(c.pos_d(), -c.param("RTL_ALT") / 100.0)
        self.stage = self.FINAL if c.landed else self.CLIMB
        c.nav.z = Z_THR

    def wants_takeoff(self, c: Vehicle) -> bool:
        return False

    def run(self, c: Vehicle, dt: float) -> None:
        nav = c.nav
        nav.yaw_rate = 0.0
        if self.stage == self.FINAL:
            land_at(c, self.path, dt, c.position_ok)
            return
        speed = c.param("RTL_SPEED") / 100.0 or c.param("WPNAV_SPEED") / 100.0
        accel = c.param("WPNAV_ACCEL") / 100.0
        pn, pe = c.pos_ne()
        if self.stage == self.CLIMB:
            self.path.velocity(0.0, 0.0, accel, dt)
            if c.pos_d() < self.target_d + 0.5:
                self.stage = self.RETURN
        elif self.stage == self.RETURN:
            d = self.path.toward(0.0, 0.0, speed, accel, dt)
            if d < 0.2 and math.hypot(pn, pe) < 2.0:
                self.stage = self.LOITER
                self.loiter_start = c.time_s()
        else:
            self.path.toward(0.0, 0.0, speed, accel, dt)
            if c.time_s() - self.loiter_start >= c.param("RTL_LOIT_TIME") / 1000.0:
                self.stage = self.FINAL
        self.path.leash(pn, pe)
        self.path.apply(nav, speed)
        _fly_height(c, self.target_d, dt)


def make_modes() -> dict[int, Mode]:
    """One instance of every mode, by ArduCopter number."""
    return {m.number: m for m in (Stabilize(), AltHold(), Guided(), Loiter(), Rtl(), Land())}
