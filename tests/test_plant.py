"""The plant (hil.sim.plant): built once for every loop, repeatable per seed, and the
one thing injections act on whichever loop times them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from hil.injectors.rc import RcReceiverEmulator
from hil.receivers import Receiver
from hil.sim.bench_link import bench_loop
from hil.sim.betaflight_loop import BetaflightLoopConfig, betaflight_loop
from hil.sim.injections import InjectionSchedule
from hil.sim.loop import ClosedLoop, SimConfig, mavlink_loop
from hil.sim.plant import FIVE_INCH, NO_SIGNAL_JS_DB, Plant
from hil.sim.sensors import Baro, Battery, Imu, Mag, Wind
from hil.sim.vehicle import QuadParams, Quadrotor
from hil.threats.gnss import GnssEnvironment
from hil.threats.rc_link import RcLinkModel
from hil.threats.telemetry import TelemetryLinkModel


class _NoBoard:
    conn = None


class _NoUart:
    def write(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


def _closed_loop(seed: int = 0) -> ClosedLoop:
    return mavlink_loop(_NoBoard(), SimConfig(seed=seed))


def _betaflight_loop(seed: int = 0) -> ClosedLoop:
    # Port 0: any free port for the motor socket; the loop is never started.
    return betaflight_loop("127.0.0.1", "127.0.0.1", None, BetaflightLoopConfig(seed=seed), motor_port=0)


def _bench_link(seed: int = 0) -> ClosedLoop:
    receiver = Receiver("rc", "crsf", "socket://127.0.0.1:1", baud=420000, fc_port="UART2")
    return bench_loop(receiver, receiver.device, seed=seed, opener=lambda r: _NoUart())


LOOPS: dict[str, Callable[[], InjectionSchedule]] = {
    "mavlink_hil": _closed_loop,
    "betaflight": _betaflight_loop,
    "bench": _bench_link,
}


@pytest.fixture(params=sorted(LOOPS))
def loop(request) -> Iterator[InjectionSchedule]:
    made = LOOPS[request.param]()
    yield made
    close = getattr(made, "close", None)
    if close is not None:
        close()


def _at(loop: InjectionSchedule, t: float) -> None:
    loop.t_us = int(t * 1e6)
    loop._apply_due()


def _readings(plant: Plant, steps: int = 50) -> list[tuple[float, ...]]:
    """Sensor samples, wind and RC frames of `steps` steps of a plant left to itself."""
    out = []
    for i in range(steps):
        plant.step(0.0025, (0.3, 0.3, 0.3, 0.3))
        v = plant.vehicle
        obs = plant.gnss_observation(i * 0.0025)
        out.append(
            (
                *plant.imu.sample(v),
                *plant.mag.sample(v.quat),
                *plant.baro.sample(100.0 - v.pos[2]),
                *plant.wind.velocity_ned,
                float(plant.rc_frame_delivered()),
                plant.rc_link.step().rssi_dbm,
                obs.lat_deg,
                obs.lon_deg,
                plant.battery.voltage,
            )
        )
    return out


def _as_built_before(seed: int, params: QuadParams | None, imu: dict, cells: int, mah: float, rc_hz: float):
    """The parts as each loop built them before the plant existed, in the same order."""
    rng = np.random.default_rng(seed)
    vehicle = Quadrotor(params)
    vehicle.reset()
    parts = {
        "vehicle": vehicle,
        "imu": Imu(rng, **imu),
        "baro": Baro(rng),
        "mag": Mag(rng),
        "gnss": GnssEnvironment(np.random.default_rng(seed + 2)),
        "battery": Battery(cells=cells, capacity_mah=mah),
        "wind": Wind(rng, speed=2.0, direction_deg=90.0, gust_std=1.0),
    }
    return Plant(RcLinkModel(rc_hz, seed=seed + 1), rng=rng, **parts)


# --------------------------------------------------------------------------- building


def test_the_mavlink_hil_plant_is_the_default_quad_with_a_telemetry_link():
    plant = Plant.for_mavlink_hil(SimConfig(seed=3, battery_cells=4, battery_capacity_mah=2200.0))
    assert plant.physics and plant.vehicle.params == QuadParams()
    assert plant.imu.gyro_noise == Imu(np.random.default_rng(0)).gyro_noise
    assert (plant.battery.cells, plant.battery.capacity_mah) == (4, 2200.0)
    assert plant.rc_link.rate_hz == SimConfig().rc_rate_hz
    assert isinstance(plant.telemetry_link, TelemetryLinkModel)
    assert plant.rc_enabled and plant.gcs_enabled and not plant.gps_blocked and plant.jamming is None
    assert plant.replaced == {}


def test_the_betaflight_plant_is_the_five_inch_quad_without_telemetry():
    plant = Plant.for_betaflight(BetaflightLoopConfig(rc_rate_hz=150.0))
    assert plant.vehicle.params == FIVE_INCH
    assert (plant.imu.accel_noise, plant.imu.gyro_noise) == (0.05, 0.002)
    assert (plant.battery.cells, plant.battery.capacity_mah) == (4, 1500.0)
    assert plant.rc_link.rate_hz == 150.0 and plant.telemetry_link is None
    plant.gcs_loss_probability = 0.4  # kept, though it reaches nothing on this board
    assert plant.gcs_loss_probability == 0.4


def test_a_radio_only_plant_has_no_physics():
    plant = Plant.radio_only(150.0, seed=2)
    assert not plant.physics and plant.rc_link.rate_hz == 150.0
    assert plant.vehicle is plant.imu is plant.wind is plant.battery is plant.gnss is None


def test_each_loop_builds_its_plant_through_the_plant():
    assert _closed_loop(4).plant.vehicle.params == QuadParams()
    assert mavlink_loop(_NoBoard(), SimConfig(rc_uart="crsf")).plant.rc_link.rate_hz == RcReceiverEmulator("crsf").rate_hz
    bf = _betaflight_loop(4)
    try:
        assert bf.plant.vehicle.params == FIVE_INCH and bf.vehicle is bf.plant.vehicle
    finally:
        bf.close()
    assert not _bench_link().plant.physics
    # The loop's plant and a plant built alone from the same config give the same readings.
    assert _readings(_closed_loop(4).plant) == _readings(Plant.for_mavlink_hil(SimConfig(seed=4)))


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("kind", ["mavlink_hil", "betaflight"])
def test_the_same_seed_gives_the_same_sensor_samples(kind):
    def make(seed: int) -> Plant:
        if kind == "mavlink_hil":
            return Plant.for_mavlink_hil(SimConfig(seed=seed, wind_speed=3.0, wind_gust=1.5))
        return Plant.for_betaflight(BetaflightLoopConfig(seed=seed, wind_speed=3.0, wind_gust=1.5))

    assert _readings(make(11)) == _readings(make(11))
    assert _readings(make(11)) != _readings(make(12))


@pytest.mark.parametrize("seed", [0, 7])
def test_the_plants_draw_what_the_loops_drew_before_the_plant(seed):
    # The seeds and the order of construction are what keeps old runs repeatable.
    mav = SimConfig(seed=seed, wind_speed=2.0, wind_direction=90.0, wind_gust=1.0)
    old = _as_built_before(seed, None, {}, 3, 5000.0, 50.0)
    assert _readings(Plant.for_mavlink_hil(mav)) == _readings(old)
    bf = BetaflightLoopConfig(seed=seed, wind_speed=2.0, wind_direction=90.0, wind_gust=1.0)
    old = _as_built_before(seed, FIVE_INCH, {"accel_noise": 0.05, "gyro_noise": 0.002}, 4, 1500.0, 50.0)
    assert _readings(Plant.for_betaflight(bf)) == _readings(old)


# --------------------------------------------------------------------------- threats


def test_blocked_gps_and_a_ramping_jammer_set_the_sky():
    plant = Plant.for_mavlink_hil(SimConfig())
    plant.gps_blocked = True
    assert plant.gnss_observation(1.0).num_sv == 0 and plant.gnss.jammer_js_db == NO_SIGNAL_JS_DB
    plant.gps_blocked = False
    plant.jamming = (2.0, 4.0, 40.0)
    plant.gnss_observation(3.0)
    assert plant.gnss.jammer_js_db == pytest.approx(10.0)
    plant.jamming = None
    assert plant.gnss_observation(4.0).num_sv > 0
    assert plant.gnss.jammer_js_db in (None, -math.inf)  # no jammer


def test_rc_frames_are_lost_while_the_radio_is_off():
    plant = Plant.radio_only(50.0)
    assert plant.rc_frame_delivered()
    plant.rc_enabled = False
    assert not any(plant.rc_frame_delivered() for _ in range(20))


# --------------------------------------------------------------------------- injections


def test_rc_loss_acts_on_the_plant_of_every_loop(loop):
    loop.schedule("rc_loss", 1.0, 2.0, {}, ident="rc")
    _at(loop, 1.0)
    assert not loop.plant.rc_enabled and loop.plant.rc_link.total
    _at(loop, 2.0)
    assert loop.plant.rc_enabled and not loop.plant.rc_link.total
    assert "rc_enabled" not in vars(loop) and "rc_link" not in vars(loop)


def test_rc_jamming_acts_on_the_plant_of_every_loop(loop):
    loop.schedule("rc_jamming", 1.0, 2.0, {"loss": 0.3, "burst_ms": 50.0}, ident="jam")
    _at(loop, 1.0)
    assert loop.plant.rc_link.loss == 0.3
    _at(loop, 2.0)
    assert loop.plant.rc_link.loss == 0.0


@pytest.mark.parametrize("kind", ["mavlink_hil", "betaflight"])
def test_physics_injections_act_on_the_plant(kind):
    loop = LOOPS[kind]()
    try:
        plant = loop.plant
        loop.schedule("wind", 1.0, 3.0, {"speed": 8.0, "direction": 270.0}, ident="w")
        loop.schedule("imu_noise", 1.0, 3.0, {"scale": 4.0}, ident="n")
        loop.schedule("baro_drift", 1.0, 3.0, {"rate": 0.5}, ident="b")
        loop.schedule("battery_sag", 1.0, 3.0, {"volts": 1.2}, ident="s")
        _at(loop, 1.0)
        assert (plant.wind.speed, plant.wind.direction_deg) == (8.0, 270.0)
        assert plant.replaced["wind"] == (0.0, 0.0, 0.0)
        assert plant.imu.noise_scale == 4.0 and plant.baro.drift_m_per_s == 0.5
        assert plant.battery.sag_v == 1.2
        _at(loop, 3.0)
        assert plant.wind.speed == 0.0 and plant.replaced == {}
        assert plant.imu.noise_scale == 1.0 and plant.baro.drift_m_per_s == 0.0
        assert plant.battery.sag_v == 0.0
    finally:
        close = getattr(loop, "close", None)
        if close is not None:
            close()


def test_gnss_and_gcs_injections_act_on_the_mavlink_hil_plant():
    loop = _closed_loop()
    plant = loop.plant
    loop.schedule("gps_jamming", 1.0, 2.0, {"js_db": 35.0, "ramp": 5.0}, ident="j")
    loop.schedule("gps_spoofing", 1.0, 2.0, {"rate": 1.0, "bearing": 90.0}, ident="sp")
    loop.schedule("gps_loss", 1.5, 2.0, {}, ident="g")
    loop.schedule("gcs_loss", 1.0, 2.0, {}, ident="gcs")
    loop.schedule("telemetry_jamming", 1.0, 2.0, {"loss": 0.6}, ident="t")
    loop.schedule("compass_interference", 1.0, 2.0, {"gauss": 0.2, "direction": 0.0}, ident="c")
    _at(loop, 1.0)
    assert plant.jamming == (1.0, 5.0, 35.0) and plant.gnss.spoof is not None
    assert not plant.gcs_enabled and plant.gcs_loss_probability == 0.6
    assert plant.mag.interference[0] == pytest.approx(0.2) and math.isclose(plant.mag.interference[1], 0.0, abs_tol=1e-12)
    _at(loop, 1.5)
    assert plant.gps_blocked
    _at(loop, 2.0)
    assert plant.jamming is None and plant.gnss.spoof is None and not plant.gps_blocked
    assert plant.gcs_enabled and plant.gcs_loss_probability == 0.0
    assert plant.mag.interference == (0.0, 0.0, 0.0)
