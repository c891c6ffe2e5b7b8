"""Closed-loop flight behaviour of the virtual flight controller (in-process lockstep)."""

from __future__ import annotations

from vfc_sim import VfcSim

from hil.vfc.modes import ALT_HOLD, GUIDED, LAND, LOITER, RTL, STABILIZE


def test_guided_takeoff_climbs_to_10m_and_holds_within_half_a_metre() -> None:
    s = VfcSim(seed=2)
    s.boot()
    s.takeoff(10.0, settle=3.0)
    worst = 0.0
    for _ in range(8 * 40):
        s.run(0.025)
        worst = max(worst, abs(s.altitude() - 10.0), s.horizontal_distance())
    assert worst < 0.5
    assert "Takeoff to 10.0 m" in s.texts


def test_loiter_holds_position_within_2m_for_30s_in_3mps_wind() -> None:
    s = VfcSim(seed=3, wind=3.0, wind_dir=60.0)
    s.boot()
    s.takeoff(10.0, settle=2.0)
    assert s.copter.set_mode(LOITER)[0]
    worst = 0.0
    for _ in range(300):
        s.run(0.1)
        worst = max(worst, s.horizontal_distance(), abs(s.altitude() - 10.0))
    assert worst < 2.0
    assert not s.vehicle.crashed


def test_goto_20m_north_then_rtl_lands_within_2m_of_home_and_disarms() -> None:
    s = VfcSim(seed=4, RTL_LOIT_TIME=1000)
    s.boot()
    s.takeoff(10.0)
    assert s.copter.goto_ned(20.0, 0.0, None) == (True, "")
    assert s.run(15.0, lambda s: s.horizontal_distance(20.0, 0.0) < 1.0)
    assert s.copter.set_mode(RTL)[0]
    assert s.run(60.0, lambda s: not s.copter.armed), "did not land and disarm"
    assert s.horizontal_distance() < 2.0
    assert s.vehicle.on_ground and not s.vehicle.crashed
    assert "Land complete" in s.texts and "Disarming motors" in s.texts


def test_rtl_climbs_to_rtl_alt_before_returning() -> None:
    s = VfcSim(seed=5)
    s.boot()
    s.takeoff(5.0)
    s.copter.goto_ned(10.0, 0.0, None)
    s.run(6.0)
    s.copter.set_mode(RTL)
    assert s.run(15.0, lambda s: s.altitude() > 14.5)
    assert s.horizontal_distance() > 8.0  # still out there: climb first


def test_land_mode_descends_lands_and_disarms() -> None:
    s = VfcSim(seed=6)
    s.boot()
    s.takeoff(4.0)
    assert s.copter.set_mode(LAND)[0]
    assert s.run(20.0, lambda s: not s.copter.armed)
    assert s.vehicle.on_ground and not s.vehicle.crashed
    assert s.copter.landed


def test_guided_goto_with_altitude_changes_height() -> None:
    s = VfcSim(seed=7)
    s.boot()
    s.takeoff(5.0)
    assert s.copter.mode == GUIDED
    s.copter.goto_ned(0.0, 5.0, -8.0)
    assert s.run(15.0, lambda s: abs(s.altitude() - 8.0) < 0.3
                 and s.horizontal_distance(0.0, 5.0) < 0.7)


def test_gps_glitch_is_announced_rejected_then_cleared() -> None:
    s = VfcSim(seed=8)
    s.boot()
    s.takeoff(8.0, settle=1.0)
    s.copter.set_mode(LOITER)
    s.gps.offset_ned = (30.0, 0.0, 0.0)
    s.run(2.0)
    assert "GPS Glitch" in s.texts
    assert s.copter.gps_glitching
    assert s.horizontal_distance() < 2.0  # the jump did not drag the vehicle
    s.gps.offset_ned = (0.0, 0.0, 0.0)
    s.run(1.0)
    assert "GPS Glitch cleared" in s.texts
    assert not s.copter.gps_glitching


def test_estimate_tracks_truth_in_flight() -> None:
    s = VfcSim(seed=9)
    s.boot()
    s.takeoff(6.0)
    s.copter.goto_ned(8.0, -6.0, None)
    s.run(4.0)
    c = s.copter
    truth = s.vehicle.euler()
    est = c.attitude
    assert abs(est[0] - truth[0]) < 0.03 and abs(est[1] - truth[1]) < 0.03
    assert abs(est[2] - truth[2]) < 0.05
    assert abs(c.position_ned[2] - s.vehicle.pos[2]) < 0.5
    assert all(abs(a - b) < 0.5 for a, b in zip(c.velocity_ned, s.vehicle.vel, strict=True))


def test_alt_hold_climbs_on_throttle_up_and_holds_at_mid_stick() -> None:
    s = VfcSim(seed=10)
    s.rc = [1500, 1500, 1000, 1500]
    s.boot()
    s.arm_in(ALT_HOLD)
    s.rc = [1500, 1500, 1800, 1500]
    assert s.run(10.0, lambda s: s.altitude() > 5.0)
    s.rc = [1500, 1500, 1500, 1500]
    s.run(2.0)
    held = s.altitude()
    s.run(5.0)
    assert abs(s.altitude() - held) < 0.5
    assert s.copter.mode == ALT_HOLD and not s.copter.landed


def test_loiter_pitch_stick_forward_flies_north_and_centred_stops() -> None:
    s = VfcSim(seed=11)
    s.boot()
    s.takeoff(6.0)
    s.copter.set_mode(LOITER)
    s.rc = [1500, 1300, 1500, 1500]  # pitch half forward, heading north
    s.run(3.0)
    assert s.vehicle.pos[0] > 5.0 and abs(s.vehicle.pos[1]) < 2.0
    s.rc = [1500, 1500, 1500, 1500]
    s.run(5.0)
    stopped = s.vehicle.pos[0]
    s.run(3.0)
    assert abs(s.vehicle.pos[0] - stopped) < 1.0


def test_stabilize_flies_on_the_throttle_stick_and_lands_when_lowered() -> None:
    s = VfcSim(seed=12, DISARM_DELAY=2, MOT_THST_HOVER=0.5)
    s.rc = [1500, 1500, 1000, 1500]
    s.boot()
    s.arm_in(STABILIZE)
    s.rc = [1500, 1500, 1600, 1500]
    assert s.run(10.0, lambda s: s.altitude() > 3.0)
    s.rc = [1500, 1500, 1470, 1500]
    assert s.run(20.0, lambda s: s.vehicle.on_ground)
    assert not s.vehicle.crashed
    s.rc = [1500, 1500, 1000, 1500]
    assert s.run(5.0, lambda s: not s.copter.armed)
