"""Specification of geodesy (hil.geo) and the sensor models (hil.sim.sensors)."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.geo import (
    EARTH_FIELD_NED,
    GRAVITY,
    HOME,
    altitude_m,
    lla_to_ned,
    ned_to_lla,
    pressure_hpa,
)
from hil.sim.sensors import Baro, Battery, Gps, GpsFix, Imu, Mag, Wind, lipo_cell_voltage
from hil.sim.vehicle import Quadrotor


def rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


# --- geo -------------------------------------------------------------------------------

metres = st.floats(min_value=-10_000.0, max_value=10_000.0, allow_nan=False)


@given(metres, metres, st.floats(min_value=-3000.0, max_value=100.0))
def test_ned_lla_round_trip_is_exact_to_a_millimetre(n: float, e: float, d: float) -> None:
    back = lla_to_ned(*ned_to_lla(n, e, d))
    assert back == pytest.approx((n, e, d), abs=1e-3)


def test_home_is_the_origin() -> None:
    assert ned_to_lla(0.0, 0.0, 0.0) == (HOME.lat_deg, HOME.lon_deg, HOME.alt_m)
    assert ned_to_lla(0.0, 0.0, -10.0)[2] == HOME.alt_m + 10.0


def test_north_and_east_move_latitude_and_longitude() -> None:
    lat, lon, _ = ned_to_lla(1000.0, 1000.0, 0.0)
    assert lat - HOME.lat_deg == pytest.approx(1000.0 / 111_319.5, rel=1e-4)
    assert lon - HOME.lon_deg == pytest.approx(
        1000.0 / (111_319.5 * math.cos(math.radians(HOME.lat_deg))), rel=1e-4
    )


@given(st.floats(min_value=-400.0, max_value=10_000.0))
def test_pressure_altitude_round_trip(alt: float) -> None:
    assert altitude_m(pressure_hpa(alt)) == pytest.approx(alt, abs=1e-6)


def test_isa_pressure_values() -> None:
    assert pressure_hpa(0.0) == pytest.approx(1013.25)
    assert pressure_hpa(1000.0) == pytest.approx(898.75, abs=0.05)
    assert pressure_hpa(584.0) < pressure_hpa(583.0)


def test_earth_field_at_home() -> None:
    n, e, d = EARTH_FIELD_NED
    assert (n, e, d) == pytest.approx((0.231, 0.049, -0.530), abs=0.002)
    assert math.degrees(math.atan2(e, n)) == pytest.approx(12.0)
    assert math.degrees(math.atan2(d, math.hypot(n, e))) == pytest.approx(-66.0)


# --- IMU -------------------------------------------------------------------------------


def test_imu_at_rest_level_averages_minus_g_and_zero_rates() -> None:
    imu = Imu(rng())
    quad = Quadrotor()
    samples = np.array([imu.sample(quad) for _ in range(4000)])
    mean = samples.mean(axis=0)
    assert mean[:3] == pytest.approx((0.0, 0.0, -GRAVITY), abs=4 * 0.05 / math.sqrt(4000))
    assert mean[3:] == pytest.approx((0.0, 0.0, 0.0), abs=4 * 0.004 / math.sqrt(4000))
    assert samples[:, 0].std() == pytest.approx(0.05, rel=0.1)
    assert samples[:, 3].std() == pytest.approx(0.004, rel=0.1)


def test_imu_adds_bias() -> None:
    imu = Imu(rng(), accel_bias=(0.2, 0.0, 0.0), gyro_bias=(0.0, 0.0, -0.01))
    imu.noise_scale = 0.0
    ax, _, _, _, _, gz = imu.sample(Quadrotor())
    assert ax == pytest.approx(0.2)
    assert gz == pytest.approx(-0.01)


def test_imu_noise_scale_multiplies_noise() -> None:
    imu = Imu(rng())
    quad = Quadrotor()
    imu.noise_scale = 0.0
    assert imu.sample(quad) == (0.0, 0.0, -GRAVITY, 0.0, 0.0, 0.0)
    imu.noise_scale = 10.0
    spread = np.array([imu.sample(quad) for _ in range(2000)]).std(axis=0)
    assert spread[0] == pytest.approx(0.5, rel=0.1)


def test_imu_stuck_axis_repeats_its_last_value() -> None:
    imu = Imu(rng())
    quad = Quadrotor()
    last = imu.sample(quad)
    imu.stuck_axis = 2
    later = [imu.sample(quad) for _ in range(50)]
    assert all(s[2] == last[2] for s in later)
    assert len({s[0] for s in later}) > 40  # the other axes still move
    imu.stuck_axis = None
    assert imu.sample(quad)[2] != last[2]


def test_imu_clips_the_accelerometer() -> None:
    imu = Imu(rng(), clip=4 * GRAVITY)
    quad = Quadrotor()
    quad.specific_force = (0.0, 0.0, -10 * GRAVITY)
    assert imu.sample(quad)[2] == -4 * GRAVITY
    imu.clip = 20 * GRAVITY
    assert imu.sample(quad)[2] == pytest.approx(-10 * GRAVITY, abs=0.5)


# --- baro ------------------------------------------------------------------------------


def test_baro_reads_isa_pressure_with_noise() -> None:
    baro = Baro(rng())
    alts = [altitude_m(baro.sample(600.0)[0]) for _ in range(2000)]
    assert statistics.fmean(alts) == pytest.approx(600.0, abs=0.01)
    assert statistics.pstdev(alts) == pytest.approx(0.1, rel=0.1)
    _, temp = baro.sample(600.0)
    assert temp == pytest.approx(15.0 - 6.5 * 0.6, abs=0.2)


def test_baro_drift_grows_with_time() -> None:
    baro = Baro(rng(), noise_m=0.0)
    baro.drift_m_per_s = 0.5
    for _ in range(400):
        baro.step(0.0025)
    assert altitude_m(baro.sample(600.0)[0]) == pytest.approx(600.5, abs=1e-6)


# --- mag -------------------------------------------------------------------------------


def test_mag_at_yaw_zero_level_reads_the_earth_field() -> None:
    mag = Mag(rng())
    mean = np.array([mag.sample(yaw_quat(0.0)) for _ in range(1000)]).mean(axis=0)
    assert mean == pytest.approx(EARTH_FIELD_NED, abs=0.001)


def test_mag_rotates_with_yaw() -> None:
    mag = Mag(rng(), noise=0.0)
    bn, be, bd = EARTH_FIELD_NED
    # Facing east: forward is east, right is south.
    assert mag.sample(yaw_quat(math.pi / 2)) == pytest.approx((be, -bn, bd), abs=1e-12)
    # Yawing right by 0.5 rad swings the field 0.5 rad to the left in the body.
    x, y, z = mag.sample(yaw_quat(0.5))
    assert math.atan2(y, x) == pytest.approx(math.atan2(be, bn) - 0.5)
    assert z == pytest.approx(bd)


def test_mag_interference_adds_in_body_frame() -> None:
    mag = Mag(rng(), noise=0.0)
    mag.interference = (0.1, 0.0, 0.0)
    x, _, _ = mag.sample(yaw_quat(math.pi / 2))
    assert x == pytest.approx(EARTH_FIELD_NED[1] + 0.1)


# --- GPS -------------------------------------------------------------------------------


def gps_error_m(fix: GpsFix, truth=(0.0, 0.0, 0.0)) -> tuple[float, float, float]:
    n, e, d = lla_to_ned(fix.lat_deg, fix.lon_deg, fix.alt_m)
    return n - truth[0], e - truth[1], d - truth[2]


def test_gps_is_due_at_its_rate() -> None:
    gps = Gps(rng(), rate_hz=10.0)
    fixes = []
    t = 0.0
    for k in range(400):
        t = k * 0.0025
        if gps.due(t):
            fixes.append(gps.sample(t, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    assert len(fixes) == 10
    assert [f.time_usec for f in fixes] == [k * 100_000 for k in range(10)]


def test_gps_healthy_fix() -> None:
    gps = Gps(rng())
    fix = gps.sample(0.0, (10.0, 20.0, -5.0), (1.0, 2.0, 0.0))
    assert fix.fix_type == 3
    assert 14 <= fix.satellites <= 18
    assert fix.eph_m == pytest.approx(0.8)
    assert fix.epv_m == pytest.approx(1.2)
    assert max(abs(c) for c in gps_error_m(fix, (10.0, 20.0, -5.0))) < 4.0
    assert (fix.vel_n, fix.vel_e) == pytest.approx((1.0, 2.0), abs=0.5)


def test_gps_error_wanders_slowly_and_stays_within_a_few_metres() -> None:
    gps = Gps(rng(7))
    errs = np.array([gps_error_m(gps.sample(k * 0.1, (0, 0, 0), (0, 0, 0))) for k in range(600)])
    assert np.abs(errs[:, :2]).max() < 3.0
    assert np.abs(errs[:, 2]).max() < 4.0
    # Correlated, not white: consecutive fixes differ by centimetres.
    assert np.abs(np.diff(errs, axis=0)).max() < 0.2


def test_gps_velocity_noise_is_about_a_tenth_of_a_metre_per_second() -> None:
    gps = Gps(rng())
    vn = [gps.sample(k * 0.1, (0, 0, 0), (3.0, 0, 0)).vel_n for k in range(2000)]
    assert statistics.fmean(vn) == pytest.approx(3.0, abs=0.01)
    assert statistics.pstdev(vn) == pytest.approx(0.1, rel=0.1)


def test_gps_unavailable_reports_no_fix_and_freezes_position() -> None:
    gps = Gps(rng())
    good = gps.sample(0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    gps.available = False
    bad = gps.sample(0.1, (50.0, 50.0, -10.0), (5.0, 0.0, 0.0))
    assert bad.fix_type == 0
    assert bad.satellites == 0
    assert bad.eph_m == bad.epv_m == 99.99
    assert (bad.lat_deg, bad.lon_deg, bad.alt_m) == (good.lat_deg, good.lon_deg, good.alt_m)
    assert bad.time_usec == 100_000
    gps.available = True
    assert gps.sample(0.2, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)).fix_type == 3


def test_gps_offset_shifts_the_reported_position() -> None:
    a = Gps(rng(3))
    b = Gps(rng(3))
    b.offset_ned = (100.0, -50.0, 0.0)
    fa = a.sample(0.0, (0, 0, 0), (0, 0, 0))
    fb = b.sample(0.0, (0, 0, 0), (0, 0, 0))
    diff = np.subtract(gps_error_m(fb), gps_error_m(fa))
    assert diff == pytest.approx((100.0, -50.0, 0.0), abs=1e-6)


def test_gps_extra_noise_adds_scatter_and_raises_eph() -> None:
    gps = Gps(rng())
    gps.extra_noise_m = 5.0
    fixes = [gps.sample(k * 0.1, (0, 0, 0), (0, 0, 0)) for k in range(500)]
    north = [gps_error_m(f)[0] for f in fixes]
    assert statistics.pstdev(north) > 4.0
    assert fixes[0].eph_m > 5.0


# --- battery ---------------------------------------------------------------------------


def test_lipo_curve_points() -> None:
    assert lipo_cell_voltage(1.0) == pytest.approx(4.2)
    assert lipo_cell_voltage(0.5) == pytest.approx(3.7, abs=0.05)
    assert lipo_cell_voltage(0.0) == pytest.approx(3.3)


def test_battery_full_at_start() -> None:
    bat = Battery()
    assert bat.voltage == pytest.approx(12.6)
    assert bat.remaining_pct == 100.0
    assert bat.consumed_mah == 0.0


def test_battery_voltage_falls_as_charge_is_consumed() -> None:
    bat = Battery(cells=3, capacity_mah=5000.0)
    readings = []
    for _ in range(10):
        bat.step(150.0, 12.0)  # 500 mAh each
        readings.append((bat.voltage, bat.remaining_pct))
    volts = [v for v, _ in readings]
    assert all(a > b for a, b in zip(volts, volts[1:], strict=False))
    assert bat.consumed_mah == pytest.approx(5000.0)
    assert bat.remaining_pct == pytest.approx(0.0, abs=1e-9)
    assert readings[4][1] == pytest.approx(50.0)
    assert readings[4][0] == pytest.approx(3 * 3.7 - 12.0 * 0.015, abs=0.2)


def test_battery_sags_under_load_and_with_the_sag_hook() -> None:
    bat = Battery()
    bat.step(0.01, 0.0)
    rest = bat.voltage
    bat.step(0.01, 40.0)
    assert rest - bat.voltage == pytest.approx(40.0 * 0.015, abs=0.01)
    loaded = bat.voltage
    bat.sag_v = 1.5
    bat.step(0.01, 40.0)
    assert loaded - bat.voltage == pytest.approx(1.5, abs=0.01)
    assert bat.current == 40.0


# --- wind ------------------------------------------------------------------------------


def test_wind_from_the_west_blows_toward_east() -> None:
    wind = Wind(rng(), speed=5.0, direction_deg=270.0)
    assert wind.step(0.0025) == pytest.approx((0.0, 5.0, 0.0), abs=1e-12)
    wind.direction_deg = 0.0  # from the north: toward south
    assert wind.step(0.0025) == pytest.approx((-5.0, 0.0, 0.0), abs=1e-12)


def test_wind_gusts_have_the_requested_spread_and_time_constant() -> None:
    wind = Wind(rng(), speed=3.0, direction_deg=180.0, gust_std=1.0, gust_tau=0.5)
    dt = 0.01
    samples = np.array([wind.step(dt) for _ in range(100_000)])
    assert samples[:, 0].mean() == pytest.approx(3.0, abs=0.1)
    assert samples[:, 0].std() == pytest.approx(1.0, rel=0.1)
    assert samples[:, 2].std() == pytest.approx(0.5, rel=0.1)
    g = samples[:, 1]
    lag = round(0.5 / dt)
    corr = np.corrcoef(g[:-lag], g[lag:])[0, 1]
    assert corr == pytest.approx(math.exp(-1.0), abs=0.1)


def test_wind_gusts_die_away_when_switched_off() -> None:
    wind = Wind(rng(), gust_std=2.0, gust_tau=0.2)
    for _ in range(100):
        wind.step(0.01)
    wind.gust_std = 0.0
    for _ in range(1000):
        last = wind.step(0.01)
    assert last == (0.0, 0.0, 0.0)


# --- repeatability and cost ------------------------------------------------------------


def run_all_sensors(seed: int) -> list:
    g = rng(seed)
    imu, baro, mag, gps = Imu(g), Baro(g), Mag(g), Gps(g)
    wind = Wind(g, speed=2.0, gust_std=1.0)
    quad = Quadrotor()
    out = []
    for k in range(20_000):  # long enough to refill the noise batches
        t = k * 0.0025
        out.append((imu.sample(quad), baro.sample(584.0), mag.sample(quad.quat), wind.step(0.0025)))
        if gps.due(t):
            out.append(gps.sample(t, quad.pos, quad.vel))
    return out


def test_same_seed_gives_identical_samples() -> None:
    assert run_all_sensors(42) == run_all_sensors(42)
    assert run_all_sensors(42) != run_all_sensors(43)


def test_sensor_cost_is_reported() -> None:
    """Not an assertion: prints the median cost of all sensors for one step (budget 8 us)."""
    g = rng()
    imu, baro, mag, gps, wind, bat = (
        Imu(g),
        Baro(g),
        Mag(g),
        Gps(g),
        Wind(g, 3.0, 90.0, 1.0),
        Battery(),
    )
    quad = Quadrotor()
    quad.reset(down=-10.0)
    batches = []
    k = 0
    for _ in range(20):
        t0 = time.perf_counter_ns()
        for _ in range(1000):
            t = k * 0.0025
            k += 1
            imu.sample(quad)
            baro.step(0.0025)
            baro.sample(600.0)
            mag.sample(quad.quat)
            wind.step(0.0025)
            bat.step(0.0025, 12.0)
            if gps.due(t):
                gps.sample(t, quad.pos, quad.vel)
        batches.append((time.perf_counter_ns() - t0) / 1000)
    print(f"\nall sensors per step median {statistics.median(batches) / 1000:.2f} us")
