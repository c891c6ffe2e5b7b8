"""Each injection kind acts on the closed loop at its start and is undone at its stop."""

from __future__ import annotations

import pytest

from hil.scenario.model import injection_kinds
from hil.sim.injections import APPLIERS
from hil.sim.loop import ClosedLoop, SimConfig


class _NoBoard:
    conn = None


def _loop() -> ClosedLoop:
    return ClosedLoop(_NoBoard(), SimConfig())


def _at(loop: ClosedLoop, t: float) -> None:
    loop.t_us = int(t * 1e6)
    loop._apply_due()


@pytest.mark.parametrize(
    ("kind", "params", "read", "during", "after"),
    [
        ("imu_noise", {"scale": 5.0}, lambda lp: lp.imu.noise_scale, 5.0, 1.0),
        ("imu_stuck", {"axis": 2}, lambda lp: lp.imu.stuck_axis, 2, None),
        ("imu_clip", {"limit": 20.0}, lambda lp: lp.imu.clip, 20.0, 16 * 9.80665),
        ("baro_drift", {"rate": 0.5}, lambda lp: lp.baro.drift_m_per_s, 0.5, 0.0),
        ("telemetry_jamming", {"loss": 0.7}, lambda lp: lp.gcs_loss_probability, 0.7, 0.0),
        ("rc_loss", {}, lambda lp: lp.rc_enabled, False, True),
        ("gcs_loss", {}, lambda lp: lp.gcs_enabled, False, True),
        ("battery_sag", {"volts": 1.5}, lambda lp: lp.battery.sag_v, 1.5, 0.0),
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
    x, y, z = loop.mag.interference
    assert abs(x) < 1e-9 and y == pytest.approx(0.3) and z == 0.0



def test_every_scenario_kind_can_act_on_the_loop():
    missing = sorted(set(injection_kinds()) - set(APPLIERS))
    assert not missing, f"injection kinds with no effect on the closed loop: {missing}"
