"""Specification of the rigid-body quadrotor (hil.sim.vehicle)."""

from __future__ import annotations

import math
import statistics
import time

import pytest

from hil.geo import GRAVITY
from hil.sim.vehicle import QuadParams, Quadrotor

DT = 0.0025


def run(quad: Quadrotor, seconds: float, motors, wind=(0.0, 0.0, 0.0), dt: float = DT) -> None:
    for _ in range(round(seconds / dt)):
        quad.step(dt, motors, wind)


def hovering(altitude: float = 10.0, params: QuadParams | None = None) -> Quadrotor:
    """A vehicle in the air at rest with its motors already spun up to hover thrust."""
    quad = Quadrotor(params)
    quad.reset(down=-altitude)
    quad.motor_thrust = (quad.params.hover_thrust,) * 4
    return quad


def test_default_params_hover_at_half_command() -> None:
    p = QuadParams()
    assert p.max_thrust == pytest.approx(2.0 * 1.5 * GRAVITY / 4)
    assert p.hover_command == pytest.approx(0.5)


def test_reset_puts_it_level_at_rest_on_the_ground() -> None:
    quad = Quadrotor()
    quad.reset(north=3.0, east=-2.0, yaw=1.0)
    assert quad.pos == (3.0, -2.0, 0.0)
    assert quad.vel == (0.0, 0.0, 0.0)
    assert quad.on_ground and not quad.crashed
    roll, pitch, yaw = quad.euler()
    assert (roll, pitch) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert yaw == pytest.approx(1.0)
    assert quad.specific_force == (0.0, 0.0, -GRAVITY)


def test_hover_command_holds_altitude_once_airborne() -> None:
    quad = hovering()
    run(quad, 5.0, (0.5,) * 4)
    assert abs(quad.vel[2]) < 0.03
    assert quad.pos[2] == pytest.approx(-10.0, abs=0.05)
    assert not quad.on_ground


def test_below_hover_it_stays_on_the_ground_reading_minus_g() -> None:
    quad = Quadrotor()
    run(quad, 1.0, (0.45,) * 4)
    assert quad.on_ground
    assert quad.pos == (0.0, 0.0, 0.0)
    assert quad.vel == (0.0, 0.0, 0.0)
    assert quad.specific_force == (0.0, 0.0, -GRAVITY)


def test_above_hover_it_lifts_off_and_climbs() -> None:
    quad = Quadrotor()
    run(quad, 1.0, (0.6,) * 4)
    assert not quad.on_ground
    assert quad.pos[2] < -0.5
    assert quad.vel[2] < 0.0


def test_free_fall_accelerates_at_g_and_feels_no_force() -> None:
    quad = Quadrotor(QuadParams(drag=(0.0, 0.0, 0.0)))
    quad.reset(down=-100.0)
    run(quad, 1.0, (0.0,) * 4)
    assert quad.vel[2] == pytest.approx(GRAVITY, rel=1e-6)
    assert quad.pos[2] == pytest.approx(-100.0 + 0.5 * GRAVITY, abs=0.02)
    assert max(abs(f) for f in quad.specific_force) < 1e-9


def test_free_fall_with_drag_starts_at_g() -> None:
    quad = Quadrotor()
    quad.reset(down=-100.0)
    run(quad, 0.05, (0.0,) * 4)
    assert quad.vel[2] / 0.05 == pytest.approx(GRAVITY, rel=0.02)
    assert quad.specific_force[2] == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize(
    ("raised", "axis", "what"),
    [
        ((2, 3), 0, "left side up rolls right"),
        ((1, 3), 1, "front up pitches nose up"),
        ((1, 2), 2, "CCW motors up yaws clockwise (positive)"),
    ],
)
def test_torque_signs_follow_the_conventions(raised, axis, what) -> None:
    quad = hovering()
    motors = [0.5 if i not in raised else 0.55 for i in (1, 2, 3, 4)]
    run(quad, 0.1, motors)
    rates = quad.rates
    assert rates[axis] > 0.02, what
    others = [abs(r) for i, r in enumerate(rates) if i != axis]
    assert max(others) < 0.1 * rates[axis], what


def test_positive_roll_rate_banks_right() -> None:
    quad = hovering()
    run(quad, 0.3, (0.5, 0.55, 0.55, 0.5))
    roll, pitch, _ = quad.euler()
    assert roll > 0.05
    assert abs(pitch) < 0.01


def test_gentle_touchdown_stops_without_crash() -> None:
    quad = hovering(altitude=0.5)
    quad.vel = (0.0, 0.0, 1.0)
    run(quad, 1.0, (0.5,) * 4)
    assert quad.on_ground
    assert not quad.crashed
    assert quad.vel == (0.0, 0.0, 0.0)
    assert quad.pos[2] == 0.0


def test_hard_touchdown_crashes() -> None:
    quad = hovering(altitude=0.5)
    quad.vel = (0.0, 0.0, 5.0)
    run(quad, 1.0, (0.5,) * 4)
    assert quad.on_ground
    assert quad.crashed


def test_touchdown_steeply_tilted_crashes() -> None:
    quad = hovering(altitude=0.5)
    a = math.radians(70.0)
    quad.quat = (math.cos(a / 2), math.sin(a / 2), 0.0, 0.0)
    quad.vel = (0.0, 0.0, 1.0)
    run(quad, 1.0, (0.0,) * 4)
    assert quad.on_ground
    assert quad.crashed


def test_crash_is_latched_until_reset() -> None:
    quad = hovering(altitude=0.5)
    quad.vel = (0.0, 0.0, 5.0)
    run(quad, 0.5, (0.0,) * 4)
    run(quad, 1.0, (0.6,) * 4)
    assert quad.crashed
    quad.reset()
    assert not quad.crashed


def test_touchdown_levels_the_vehicle_and_keeps_heading() -> None:
    quad = hovering(altitude=0.2)
    a = math.radians(10.0)
    yaw = 0.7
    # yaw then roll: q = q_yaw * q_roll
    cy, sy, cr, sr = math.cos(yaw / 2), math.sin(yaw / 2), math.cos(a / 2), math.sin(a / 2)
    quad.quat = (cy * cr, cy * sr, sy * sr, sy * cr)
    quad.vel = (0.0, 0.0, 1.0)
    run(quad, 0.5, (0.0,) * 4)
    assert quad.on_ground and not quad.crashed
    roll, pitch, got_yaw = quad.euler()
    assert (roll, pitch) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert got_yaw == pytest.approx(yaw, abs=1e-9)
    assert quad.rates == (0.0, 0.0, 0.0)


def test_on_the_ground_wind_and_yaw_torque_do_not_move_it() -> None:
    quad = Quadrotor()
    quad.reset(yaw=0.3)
    run(quad, 1.0, (0.45, 0.45, 0.0, 0.0), wind=(5.0, 5.0, 0.0))
    assert quad.on_ground
    assert quad.pos == (0.0, 0.0, 0.0)
    assert quad.euler()[2] == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("wind", "yaw"),
    [((0.0, 5.0, 0.0), 0.0), ((5.0, 0.0, 0.0), 0.0), ((-3.0, 4.0, 0.0), 2.0)],
)
def test_wind_pushes_a_hovering_vehicle_downwind(wind, yaw) -> None:
    quad = hovering()
    quad.quat = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
    run(quad, 3.0, (0.5,) * 4, wind=wind)
    speed = math.hypot(wind[0], wind[1])
    along = (quad.pos[0] * wind[0] + quad.pos[1] * wind[1]) / speed
    across = (quad.pos[1] * wind[0] - quad.pos[0] * wind[1]) / speed
    assert along > 1.0
    assert abs(across) < 1e-6
    assert (quad.vel[0] * wind[0] + quad.vel[1] * wind[1]) / speed > 1.0


def test_the_accelerometer_feels_the_drag() -> None:
    quad = hovering()
    run(quad, 0.5, (0.5,) * 4, wind=(0.0, 5.0, 0.0))  # toward east = body right at yaw 0
    assert quad.specific_force[1] > 0.1


def test_motor_thrust_lags_the_command() -> None:
    quad = Quadrotor()
    tau = quad.params.motor_time_constant
    run(quad, tau, (1.0,) * 4, dt=tau / 100)
    expected = quad.params.max_thrust * (1.0 - math.exp(-1.0))
    assert quad.motor_thrust[0] == pytest.approx(expected, rel=1e-6)


def test_motor_commands_are_clipped() -> None:
    quad = Quadrotor()
    run(quad, 1.0, (2.0, -1.0, float("nan"), 1.0))
    t1, t2, t3, t4 = quad.motor_thrust
    assert t1 == pytest.approx(quad.params.max_thrust, rel=1e-6)
    assert t2 == 0.0 and t3 == 0.0
    assert t4 == pytest.approx(t1)


def test_quaternion_stays_unit_under_fast_rotation() -> None:
    quad = hovering(altitude=1000.0)
    quad.rates = (3.0, -2.0, 5.0)
    run(quad, 5.0, (0.3, 0.2, 0.3, 0.2), dt=0.01)
    assert math.fsum(c * c for c in quad.quat) == pytest.approx(1.0, abs=1e-12)


def test_constant_yaw_rate_integrates_exactly() -> None:
    params = QuadParams(angular_damping=(0.0, 0.0, 0.0))
    quad = hovering(params=params)
    quad.rates = (0.0, 0.0, 1.0)
    run(quad, 1.0, (0.5,) * 4)
    assert quad.euler()[2] == pytest.approx(1.0, abs=1e-9)


def test_time_advances_by_dt() -> None:
    quad = Quadrotor()
    run(quad, 1.0, (0.0,) * 4, dt=0.001)
    assert quad.time == pytest.approx(1.0, abs=1e-9)


def test_invalid_dt_is_rejected() -> None:
    with pytest.raises(ValueError):
        Quadrotor().step(0.0, (0.0,) * 4)


def test_current_is_hover_current_at_hover_and_rises_as_thrust_to_1_5() -> None:
    quad = hovering()
    p = quad.params
    assert quad.current_a() == pytest.approx(p.hover_current_a)
    quad.motor_thrust = (p.hover_thrust * 2.0,) * 4
    motors = p.hover_current_a - p.idle_current_a
    assert quad.current_a() == pytest.approx(p.idle_current_a + motors * 2.0**1.5)
    quad.motor_thrust = (0.0,) * 4
    assert quad.current_a() == pytest.approx(p.idle_current_a)


def test_step_cost_is_reported() -> None:
    """Not an assertion: prints the median cost of one step (budget: 12 us)."""
    quad = hovering(altitude=1000.0)
    motors = (0.52, 0.5, 0.51, 0.5)
    wind = (1.0, 2.0, 0.0)
    batches = []
    for _ in range(20):
        t0 = time.perf_counter_ns()
        for _ in range(1000):
            quad.step(DT, motors, wind)
        batches.append((time.perf_counter_ns() - t0) / 1000)
    print(f"\nQuadrotor.step median {statistics.median(batches) / 1000:.2f} us")
