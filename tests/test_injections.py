"""Each injection kind acts on the closed loop at its start and is undone at its stop."""

from __future__ import annotations

import pytest

from hil.scenario.model import GCS_ACTION_KINDS, injection_kinds
from hil.sim.injections import APPLIERS
from hil.sim.loop import ClosedLoop, SimConfig, mavlink_loop


class _NoBoard:
    conn = None


def _loop() -> ClosedLoop:
    return mavlink_loop(_NoBoard(), SimConfig())


def _at(loop: ClosedLoop, t: float) -> None:
    loop.t_us = int(t * 1e6)
    loop._apply_due()


@pytest.mark.parametrize(
    ("kind", "params", "read", "during", "after"),
    [
        ("imu_noise", {"scale": 5.0}, lambda lp: lp.plant.imu.noise_scale, 5.0, 1.0),
        ("imu_stuck", {"axis": 2}, lambda lp: lp.plant.imu.stuck_axis, 2, None),
        ("imu_clip", {"limit": 20.0}, lambda lp: lp.plant.imu.clip, 20.0, 16 * 9.80665),
        ("baro_drift", {"rate": 0.5}, lambda lp: lp.plant.baro.drift_m_per_s, 0.5, 0.0),
        ("telemetry_jamming", {"loss": 0.7}, lambda lp: lp.plant.gcs_loss_probability, 0.7, 0.0),
        ("rc_loss", {}, lambda lp: lp.plant.rc_enabled, False, True),
        ("gcs_loss", {}, lambda lp: lp.plant.gcs_enabled, False, True),
        ("battery_sag", {"volts": 1.5}, lambda lp: lp.plant.battery.sag_v, 1.5, 0.0),
    ],
)
def test_injection_starts_and_stops(kind, params, read, during, after):
    loop = _loop()
    loop.schedule(kind, 1.0, 2.0, params, ident="x")
    _at(loop, 0.5)
    assert read(loop) == after
    _at(loop, 1.0)
    assert read(loop) == during
    _at(loop, 2.0)
    assert read(loop) == after
    assert [k for _, k, _ in loop.events] == ["injection_start", "injection_stop"]


def test_compass_interference_adds_a_body_field():
    loop = _loop()
    loop.schedule("compass_interference", 0.0, None, {"gauss": 0.3, "direction": 90.0})
    _at(loop, 0.0)
    x, y, z = loop.plant.mag.interference
    assert abs(x) < 1e-9 and y == pytest.approx(0.3) and z == 0.0



def test_every_scenario_kind_can_act_on_the_loop():
    # The ground station's own actions (arm_attempt) are acted out by the flight, not the loop.
    missing = sorted(set(injection_kinds()) - set(APPLIERS) - GCS_ACTION_KINDS)
    assert not missing, f"injection kinds with no effect on the closed loop: {missing}"
    assert not GCS_ACTION_KINDS & set(APPLIERS), "a ground-station action is also applied by the loop"


def _rc(loop: ClosedLoop) -> tuple[float, bool]:
    link = loop.plant.rc_link
    return link.loss, link.total


def test_an_injection_that_takes_the_link_over_at_the_instant_another_stops_stays_in_effect():
    # combined-ew's RC link: degraded jamming until 10 s, dead from 10 s on.
    loop = _loop()
    loop.schedule("rc_jamming", 6.0, 10.0, {"loss": 0.4, "burst_ms": 150.0}, ident="rc")
    loop.schedule("rc_jamming", 10.0, None, {"loss": 1.0}, ident="rcdead")
    _at(loop, 6.0)
    assert _rc(loop) == (0.4, False)
    _at(loop, 10.0)
    assert _rc(loop)[1] is True


def test_when_the_injection_on_top_stops_the_one_under_it_takes_effect_again():
    loop = _loop()
    loop.schedule("rc_jamming", 1.0, 9.0, {"loss": 0.3, "burst_ms": 50.0}, ident="jam")
    loop.schedule("rc_loss", 3.0, 5.0, {}, ident="gone")
    _at(loop, 3.0)
    assert _rc(loop)[1] is True
    _at(loop, 5.0)
    assert _rc(loop) == (0.3, False)
    _at(loop, 9.0)
    assert _rc(loop) == (0.0, False)


def test_a_stop_of_an_injection_under_another_changes_nothing():
    loop = _loop()
    loop.schedule("rc_jamming", 1.0, 4.0, {"loss": 0.3, "burst_ms": 50.0}, ident="jam")
    loop.schedule("rc_loss", 2.0, 6.0, {}, ident="gone")
    _at(loop, 4.0)
    assert _rc(loop)[1] is True  # still gone: jam's end does not bring the link back
    _at(loop, 6.0)
    assert _rc(loop) == (0.0, False)
