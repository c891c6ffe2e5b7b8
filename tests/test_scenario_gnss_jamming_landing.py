"""A GNSS jamming ramp must end in a landing whatever the GPS rate: the EKF-failsafe LAND
descends on the baro alone.

This was a strict xfail (``test_known_issues.py``): with 10 Hz HIL_GPS and a slow ramp
the LAND climbed away, because the height filter learned its accelerometer bias with
the wrong sign and, once GPS velocity stopped holding it, the climb-rate estimate
walked off. Kept as a plain test so the fault cannot come back unnoticed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hil.rig import DEFAULT_RIG, Rig
from hil.scenario import mavlink_flight
from hil.scenario.load import load_scenario
from hil.scenario.runner import run_scenario
from hil.session import BoardSession

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "gps_jammed_loiter.toml"


def test_a_slow_gnss_jamming_ramp_ends_in_a_landing_with_10hz_gps(tmp_path, monkeypatch) -> None:
    original = mavlink_flight.sim_config_for
    monkeypatch.setattr(mavlink_flight, "sim_config_for", lambda sc: replace(original(sc), gps_rate_hz=10.0))
    slow = tmp_path / "gps_jammed_slow_ramp.toml"
    slow.write_text(SCENARIO.read_text().replace("ramp = 2.0", "ramp = 10.0"))
    rig = Rig.load(DEFAULT_RIG, work_dir=tmp_path / "rig")  # GPS over HIL_GPS
    try:
        with BoardSession(rig.select(None)) as session:
            result = run_scenario(load_scenario(slow), session)
    finally:
        rig.stop()
    assert result.passed, result.failure_text()
