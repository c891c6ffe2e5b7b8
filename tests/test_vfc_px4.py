"""The virtual board's PX4 personality: PX4's parameters and defaults, failsafe actions
and their hold, PX4's wording, and its modes on the wire (hil.vfc.px4)."""

from __future__ import annotations

import pytest

from hil.profiles import PX4_MULTICOPTER
from hil.vfc import failsafe as fs
from hil.vfc import px4
from hil.vfc.copter import Copter
from hil.vfc.modes import ALT_HOLD, GUIDED, LAND, LOITER, RTL, STABILIZE


def _p(store: px4.Px4ParamStore):
    return store.get


def test_px4_parameters_have_px4s_defaults() -> None:
    store = px4.Px4ParamStore()
    assert store.get("NAV_RCL_ACT") == 2  # Return
    assert store.get("COM_RC_LOSS_T") == 0.5
    assert store.get("NAV_DLL_ACT") == 0  # off
    assert store.get("COM_DL_LOSS_T") == 10
    assert store.get("COM_FAIL_ACT_T") == 5.0
    assert store.get("COM_DISARM_LAND") == 2.0
    assert "FS_THR_ENABLE" not in store.names() and "RC_FS_TIMEOUT" not in store.names()


def test_the_flight_softwares_ardupilot_reads_follow_the_px4_parameters() -> None:
    store = px4.Px4ParamStore()
    store.set("COM_RC_LOSS_T", 1.5)
    store.set("COM_DL_LOSS_T", 7)
    assert store.get("RC_FS_TIMEOUT") == 1.5
    assert store.get("FS_GCS_TIMEOUT") == 7
    assert store.get("FS_GCS_ENABLE") == 0
    store.set("NAV_DLL_ACT", 3)
    assert store.get("FS_GCS_ENABLE") == 1


def test_px4_refuses_what_its_ranges_refuse() -> None:
    store = px4.Px4ParamStore()
    with pytest.raises(Exception, match="COM_DL_LOSS_T"):
        store.set("COM_DL_LOSS_T", 2)  # PX4's minimum is 5 s


@pytest.mark.parametrize(
    ("value", "action"), [(0, fs.NONE), (1, fs.HOLD), (2, fs.RTL), (3, fs.LAND), (5, fs.DISARM), (6, fs.DISARM)]
)
def test_loss_actions_read_as_px4_reads_them(value: int, action: str) -> None:
    store = px4.Px4ParamStore()
    store.set("NAV_RCL_ACT", value)
    store.set("NAV_DLL_ACT", value)
    assert px4.Px4Personality.failsafe_action("radio", store.get) == action
    assert px4.Px4Personality.failsafe_action("gcs", store.get) == action


def test_a_lost_position_lands_as_px4s_auto_modes_do() -> None:
    assert px4.Px4Personality.failsafe_action("ekf", px4.Px4ParamStore().get) == fs.LAND


def test_px4s_wording() -> None:
    says = px4.Px4Personality
    assert says.failsafe_texts("radio", 0.0) == ["Manual control lost", "Failsafe activated"]
    assert says.failsafe_texts("gcs", 5.0) == [
        "Connection to ground station lost",
        "Failsafe activated, entering Hold for 5 seconds",
    ]
    assert says.text("PreArm: Gyros still settling") == "Preflight Fail: Gyros still settling"
    assert says.text("Mode RTL") is None
    assert says.text("Arming motors") == "Armed by external command"


def test_modes_on_the_wire_are_px4s_custom_modes_both_ways() -> None:
    for mode in (STABILIZE, ALT_HOLD, GUIDED, LOITER, RTL, LAND):
        number = px4.custom_mode(mode)
        name = PX4_MULTICOPTER.mode_name(number)
        assert not name.startswith("MODE(")
        _, main, sub = PX4_MULTICOPTER.set_mode_params(number)
        assert px4.decode_set_mode(main, sub) == mode
        assert px4.decode_custom_mode_field(number) == mode
    assert PX4_MULTICOPTER.mode_name(px4.custom_mode(RTL)) == "AUTO_RTL"
    assert px4.decode_set_mode(99, 0) is None
    assert px4.decode_set_mode(float("nan"), 0) is None


class _Flying(Copter):
    """A Copter put in the air by hand (no physics): enough for failsafe decisions."""

    def __init__(self, **params: float) -> None:
        store = px4.Px4ParamStore()
        for name, value in params.items():
            store.set(name, value)
        super().__init__(store, personality=px4.Px4Personality())
        self.armed = True
        self.landed = False
        self.position_ok = True
        self._change_mode(LOITER)
        self.drain_statustexts()


def test_a_failsafe_holds_com_fail_act_t_then_acts() -> None:
    c = _Flying(NAV_RCL_ACT=2, COM_FAIL_ACT_T=5.0)
    c._t = 10.0
    c._failsafe("radio", 2, "Radio Failsafe", fs.RTL)
    assert c.mode == LOITER
    assert [t for _, t in c.drain_statustexts()] == [
        "Manual control lost",
        "Failsafe activated, entering Hold for 5 seconds",
    ]
    c._t = 14.9
    c._delayed_action(c._t)
    assert c.mode == LOITER
    c._t = 15.0
    c._delayed_action(c._t)
    assert c.mode == RTL


def test_a_failsafe_that_clears_within_the_hold_goes_back_to_the_pilots_mode() -> None:
    c = _Flying(COM_FAIL_ACT_T=5.0)
    c._change_mode(ALT_HOLD)
    c._t = 10.0
    c._failsafe("radio", 2, "Radio Failsafe", fs.RTL)
    assert c.mode == LOITER
    c._failsafe_clear("radio", "Radio Failsafe Cleared")
    assert c.mode == ALT_HOLD
    c._t = 20.0
    c._delayed_action(c._t)
    assert c.mode == ALT_HOLD


def test_without_a_hold_the_action_comes_at_once() -> None:
    c = _Flying(COM_FAIL_ACT_T=0.0)
    c._failsafe("gcs", 2, "GCS Failsafe", fs.LAND)
    assert c.mode == LAND
    assert [t for _, t in c.drain_statustexts()][:2] == ["Connection to ground station lost", "Failsafe activated"]


def test_hold_as_an_action_holds_position() -> None:
    c = _Flying(COM_FAIL_ACT_T=0.0)
    c._change_mode(ALT_HOLD)
    c._failsafe("radio", 2, "Radio Failsafe", fs.HOLD)
    assert c.mode == LOITER
