"""Commands, pre-arm checks, parameters, mixer signs and input robustness of the Copter."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from vfc_sim import Params, VfcSim

from hil.firmware.paramdefs import PARAM_DEFS
from hil.sim.vehicle import Quadrotor
from hil.vfc.control import mix
from hil.vfc.copter import Copter
from hil.vfc.modes import ALT_HOLD, GUIDED, LAND, LOITER, RTL, STABILIZE

REQUIRED = {
    "FS_THR_ENABLE": 1, "FS_THR_VALUE": 975, "RC_FS_TIMEOUT": 1.0, "FS_GCS_ENABLE": 0,
    "FS_GCS_TIMEOUT": 5, "FS_EKF_ACTION": 1, "FS_EKF_THRESH": 0.8, "BATT_LOW_VOLT": 10.5,
    "BATT_LOW_TIMER": 10, "BATT_FS_LOW_ACT": 0, "SCHED_LOOP_RATE": 400, "RTL_ALT": 1500,
    "RTL_LOIT_TIME": 5000, "RTL_SPEED": 0, "WPNAV_SPEED": 500, "WPNAV_SPEED_UP": 250,
    "WPNAV_SPEED_DN": 150, "LAND_SPEED": 50, "LAND_ALT_LOW": 1000, "PILOT_SPEED_UP": 250,
    "PILOT_SPEED_DN": 150, "LOIT_SPEED": 1250, "ANGLE_MAX": 3000, "DISARM_DELAY": 10,
    "ARMING_CHECK": 1,
}


def test_param_defs_have_arducopter_defaults() -> None:
    defs = {p.name: p for p in PARAM_DEFS}
    for name, default in REQUIRED.items():
        assert defs[name].default == default, name


def test_param_defs_are_unique_documented_and_in_range() -> None:
    names = [p.name for p in PARAM_DEFS]
    assert len(names) == len(set(names))
    for p in PARAM_DEFS:
        assert p.doc and p.kind in ("int", "float") and len(p.name) <= 16
        assert p.minimum <= p.default <= p.maximum, p.name


def test_every_parameter_read_is_defined() -> None:
    read: set[str] = set()

    class Spy(Params):
        def get(self, name: str) -> float:
            read.add(name)
            return super().get(name)

    s = VfcSim(seed=30)
    s.copter = Copter(Spy())
    s.boot()
    s.takeoff(3.0)
    s.copter.set_mode(RTL)
    s.run(3.0)
    assert read <= {p.name for p in PARAM_DEFS}


def _spin(motors: tuple[float, ...], seconds: float = 0.1) -> tuple[float, float, float]:
    q = Quadrotor()
    q.reset(down=-10.0)
    for _ in range(int(seconds / 0.0025)):
        q.step(0.0025, motors)
    return q.rates


def test_mixer_roll_pitch_yaw_signs_match_the_airframe() -> None:
    base = 0.5
    p, q, r = _spin(mix(base, 0.05, 0.0, 0.0, 0.0, 1.0)[0])
    assert p > 0.1 and abs(q) < 0.02
    p, q, r = _spin(mix(base, 0.0, 0.05, 0.0, 0.0, 1.0)[0])
    assert q > 0.1 and abs(p) < 0.02
    p, q, r = _spin(mix(base, 0.0, 0.0, 0.1, 0.0, 1.0)[0])
    assert r > 0.01 and abs(p) < 0.02 and abs(q) < 0.02


def test_mixer_keeps_attitude_authority_by_lowering_collective() -> None:
    motors, limited = mix(0.95, 0.2, 0.0, 0.0, 0.15, 1.0)
    assert limited and max(motors) <= 1.0 + 1e-9
    assert math.isclose(motors[2] - motors[0], 0.4)


def _gps_reports(s: VfcSim, **fields: object) -> dict[str, object]:
    """From now on the Copter's GPS reports carry `fields` (fix_type, satellites, hdop)
    instead of what the receiver says; returned for the test to change."""
    names = ("t_us", "fix_type", "lat_deg", "lon_deg", "alt_m", "vel_ned", "eph_m", "epv_m", "satellites")
    real = s.copter.on_gps

    def on_gps(*args: object, **kw: object) -> None:
        values = dict(zip(names, args, strict=False)) | kw | fields
        real(**values)  # type: ignore[arg-type]

    s.copter.on_gps = on_gps  # type: ignore[method-assign]
    return fields


def test_arming_refused_without_position_estimate() -> None:
    # A 3D fix with 5 satellites passes the GPS check but is not fused (6 needed).
    s = VfcSim(seed=31)
    _gps_reports(s, satellites=5)
    s.boot()
    assert s.copter.set_mode(GUIDED)[0]
    assert not s.copter.position_ok
    assert s.copter.arm() == (False, "Arm: Need Position Estimate")
    assert not s.copter.armed
    assert "Arm: Need Position Estimate" in [t for _, t in s.copter.drain_statustexts()]


def test_gps_lost_refuses_arming_in_a_position_mode_with_bad_fix() -> None:
    s = VfcSim(seed=41)
    s.boot()
    s.gps.available = False  # the receiver reports no fix
    s.run(0.5)
    for mode in (LOITER, GUIDED):
        assert s.copter.set_mode(mode)[0]  # ArduCopter lets a disarmed vehicle choose it
        assert s.copter.arm() == (False, "Arm: GPS 1: Bad fix")
        assert not s.copter.prearm_ok
    assert not s.copter.armed
    s.gps.available = True
    assert s.run(10.0, lambda s: s.copter.arm()[0])


def test_gps_check_is_only_made_in_modes_that_need_a_position() -> None:
    s = VfcSim(seed=42)
    s.gps.available = False
    s.boot()
    assert s.copter.set_mode(ALT_HOLD)[0]
    assert s.copter.arm() == (True, "")
    s.copter.disarm()
    s.rc = [1500, 1500, 1000, 1500]
    s.run(0.1)
    assert s.copter.set_mode(STABILIZE)[0]
    assert s.copter.arm() == (True, "")


def test_a_2d_fix_is_a_bad_fix() -> None:
    s = VfcSim(seed=43)
    s.boot()
    _gps_reports(s, fix_type=2)
    s.run(0.3)
    s.copter.set_mode(LOITER)
    assert s.copter.arm() == (False, "Arm: GPS 1: Bad fix")


def test_a_silent_receiver_is_a_bad_fix_after_four_seconds() -> None:
    s = VfcSim(seed=44)
    s.boot()
    s.copter.set_mode(LOITER)
    s.gps.due = lambda t: False  # type: ignore[method-assign]
    s.run(3.5)
    assert s.copter.arm()[1] != "Arm: GPS 1: Bad fix"
    s.copter.disarm()
    s.run(1.0)
    assert s.copter.arm() == (False, "Arm: GPS 1: Bad fix")


def test_hdop_above_gps_hdop_good_refuses_after_the_position_checks() -> None:
    s = VfcSim(seed=45)
    s.boot()
    fields = _gps_reports(s, hdop=1.6)
    s.run(0.3)
    s.copter.set_mode(LOITER)
    assert s.copter.arm() == (False, "Arm: High GPS HDOP")
    fields["hdop"] = 1.3
    s.run(0.3)
    assert s.copter.arm() == (True, "")


def test_px4_personality_keeps_its_own_rule_without_gps() -> None:
    from hil.vfc.px4 import Px4Personality

    s = VfcSim(seed=46)
    s.copter.personality = Px4Personality()
    s.boot()
    assert s.copter.set_mode(LOITER)[0]
    s.gps.available = False
    assert s.run(10.0, lambda s: not s.copter.position_ok)
    # The pre-arm wording, which the personality turns into "Preflight Fail: ...".
    assert s.copter.arm() == (False, "PreArm: Need Position Estimate")


def test_mode_change_needing_position_is_refused_with_a_reason() -> None:
    # Armed only: ArduCopter's set_mode() skips its checks while disarmed.
    s = VfcSim(seed=32)
    s.gps.available = False
    s.boot()
    s.arm_in(ALT_HOLD)
    ok, why = s.copter.set_mode(LOITER)
    assert not ok and "requires position" in why
    assert s.copter.mode == ALT_HOLD


def test_arming_refused_without_rc() -> None:
    s = VfcSim(seed=33)
    s.rc = None
    s.boot()
    s.copter.set_mode(ALT_HOLD)
    assert s.copter.arm() == (False, "Arm: RC not found")
    assert s.copter.arm(force=True) == (True, "")


def test_arming_without_rc_allowed_when_radio_failsafe_disabled() -> None:
    s = VfcSim(seed=34, FS_THR_ENABLE=0)
    s.rc = None
    s.boot()
    s.copter.set_mode(GUIDED)
    assert s.copter.arm() == (True, "")


def test_arming_in_stabilize_refused_with_throttle_up() -> None:
    s = VfcSim(seed=35)
    s.boot()
    assert s.copter.arm() == (False, "Arm: Throttle too high")
    s.rc = [1500, 1500, 1000, 1500]
    s.run(0.1)
    assert s.copter.arm() == (True, "")
    assert (6, "Arming motors") in s.copter.drain_statustexts()


def test_arming_refused_before_the_estimator_settles() -> None:
    s = VfcSim(seed=36)
    s.run(0.5)
    s.copter.set_mode(ALT_HOLD)
    ok, why = s.copter.arm()
    assert not ok and why.startswith("Arm: ")


def test_arming_check_0_skips_prearm_checks() -> None:
    s = VfcSim(seed=37, ARMING_CHECK=0)
    s.rc = None
    s.run(0.5)
    assert s.copter.arm()[0]


def test_unknown_mode_refused() -> None:
    c = Copter(Params())
    assert c.set_mode(3)[0] is False
    assert c.set_mode(99)[0] is False


def test_rtl_and_land_are_not_armable() -> None:
    s = VfcSim(seed=38)
    s.boot()
    for mode in (RTL, LAND):
        assert s.copter.set_mode(mode)[0]
        assert s.copter.arm()[0] is False


def test_disarm_in_the_air_refused_unless_forced() -> None:
    s = VfcSim(seed=39)
    s.boot()
    s.takeoff(3.0)
    assert s.copter.disarm()[0] is False
    assert s.copter.armed
    assert s.copter.disarm(force=True) == (True, "")
    assert not s.copter.armed


def test_auto_disarm_after_disarm_delay_on_the_ground() -> None:
    s = VfcSim(seed=40, DISARM_DELAY=2)
    s.boot()
    s.arm_in(GUIDED)
    s.run(1.5)
    assert s.copter.armed
    s.run(1.0)
    assert not s.copter.armed


def test_takeoff_refused_outside_guided_or_disarmed() -> None:
    s = VfcSim(seed=41)
    s.boot()
    assert s.copter.takeoff(5.0)[0] is False
    s.copter.set_mode(GUIDED)
    assert s.copter.takeoff(5.0)[0] is False


def test_motors_zero_while_disarmed_and_mode_changes_are_reported() -> None:
    s = VfcSim(seed=42)
    s.boot(1.0)
    assert s.copter.motors == (0.0, 0.0, 0.0, 0.0)
    s.copter.drain_mode_changes()
    s.copter.set_mode(ALT_HOLD)
    assert s.copter.drain_mode_changes() == [ALT_HOLD]
    assert s.copter.drain_mode_changes() == []
    assert (6, "Mode ALT_HOLD") in s.copter.drain_statustexts()


def test_home_is_set_from_the_first_good_fix() -> None:
    s = VfcSim(seed=43)
    assert s.copter.home is None
    s.boot(1.0)
    lat, lon, alt = s.copter.home
    assert abs(lat + 35.363261) < 1e-4 and abs(lon - 149.165230) < 1e-4
    assert abs(alt - 584.0) < 5.0


_garbage = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.text(max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.lists(_garbage, min_size=12, max_size=12)),
                min_size=1, max_size=30))
def test_garbage_inputs_never_raise(calls: list[tuple[int, list[object]]]) -> None:
    c = Copter(Params(ARMING_CHECK=0))
    c.arm(force=True)
    t = 0
    for kind, g in calls:
        t += 2500
        if kind == 0:
            out = c.loop(g[0], (g[1], g[2], g[3]), (g[4], g[5], g[6]), (g[7], g[8], g[9]),
                         g[10], g[11])
            assert len(out) == 4 and all(0.0 <= m <= 1.0 for m in out)
        elif kind == 1:
            c.on_gps(g[0], g[1], g[2], g[3], g[4], (g[5], g[6], g[7]), g[8], g[9], g[10])
        elif kind == 2:
            c.on_rc(g[0], g[1:9])
        elif kind == 3:
            c.on_battery(g[0], g[1], g[2], g[3])
        elif kind == 4:
            c.set_mode(g[0])
        elif kind == 5:
            c.takeoff(g[0])
        elif kind == 6:
            c.goto_ned(g[0], g[1], g[2])
        elif kind == 7:
            c.on_gcs_heartbeat(g[0])
        else:
            c.loop(t, (0.0, 0.0, -9.8), (0.0, 0.0, 0.0), None, 1013.0, 20.0)
        assert all(math.isfinite(m) for m in c.motors)
        assert all(math.isfinite(v) for v in c.attitude + c.position_ned + c.velocity_ned)


class _BadStore:
    def __init__(self, value: object) -> None:
        self.value = value

    def get(self, name: str) -> object:
        if self.value == "raise":
            raise KeyError(name)
        return self.value


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just("raise"),
                 st.none(), st.text(max_size=2)))
def test_a_broken_parameter_store_never_stops_the_loop(value: object) -> None:
    c = Copter(_BadStore(value))
    for i in range(1, 200):
        out = c.loop(i * 2500, (0.0, 0.0, -9.8), (0.0, 0.0, 0.0), (0.2, 0.05, -0.5), 1013.0, 20.0)
        assert all(math.isfinite(m) for m in out)
    c.arm(force=True)
    c.set_mode(ALT_HOLD)
    c.loop(200 * 2500, (0.0, 0.0, -9.8), (0.0, 0.0, 0.0), None, None, None)
