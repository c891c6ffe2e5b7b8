"""What a scenario needs of a board, and who skips it: `Scenario.needs()`, `lacked_by`,
`for_firmware`, and `hil gate` leaving out what a board's firmware cannot fly."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hil.errors import ConfigError
from hil.gate import run_gate
from hil.profiles import ARDUCOPTER, BETAFLIGHT, INAV, PX4_MULTICOPTER, ProfileLacks, profile
from hil.scenario import load_scenario, parse_scenario
from hil.scenario.model import Needs

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))


def scenario(**edits: Any):
    """A small valid scenario, with top-level sections replaced by `edits`."""
    data: dict[str, Any] = {
        "scenario": {"name": "needs", "duration": 60.0, "applies_to": ["mavlink", "msp"]},
        "setup": {"mode": "LOITER", "altitude": 10.0},
        "injection": [
            {"kind": "rc_loss", "id": "rc", "start": 10.0, "duration": 20.0},
            {"kind": "gps_jamming", "start": 5.0, "js_db": 40.0},
            {"kind": "rc_loss", "id": "rc2", "start": 40.0, "duration": 5.0},
        ],
        "expect": [
            {"kind": "mode", "mode": "RTL", "after": "rc.start", "within": 1.5},
            {"kind": "never_mode", "mode": "LAND"},
            {"kind": "mode", "mode": "LOITER", "after": "rc.stop", "within": 5.0},
        ],
    }
    data.update(copy.deepcopy(edits))
    return parse_scenario(data, "scenarios/needs.toml")


# -- needs() -----------------------------------------------------------------------------
def test_needs_are_the_setup_mode_then_the_modes_to_reach_each_once():
    assert scenario().needs().modes == ("LOITER", "RTL")


def test_a_never_mode_word_is_not_a_need():
    needs = scenario(expect=[{"kind": "never_mode", "mode": "FAILSAFE"}]).needs()
    assert needs.modes == ("LOITER",)


def test_needs_list_the_injection_kinds_in_timeline_order_each_once():
    assert scenario().needs().injections == ("rc_loss", "gps_jamming")


def test_a_scenario_without_injections_needs_none():
    needs = scenario(injection=[], expect=[{"kind": "armed_throughout"}]).needs()
    assert needs == Needs(modes=("LOITER",), injections=(), capabilities=("physics",))


def test_a_ground_scenario_needs_its_default_mode():
    sc = scenario(
        setup={"armed": False}, injection=[], expect=[{"kind": "disarmed", "within": 1.0}]
    )
    assert sc.needs().modes == ("STABILIZE",)


# -- lacked_by ------------------------------------------------------------------------------
@pytest.mark.parametrize("prof", [ARDUCOPTER, PX4_MULTICOPTER, BETAFLIGHT, INAV], ids=lambda p: p.name)
def test_a_firmware_with_every_needed_mode_does_not_skip(prof):
    assert scenario().lacked_by(prof) is None


def test_the_reason_is_the_profile_s_own_words():
    sc = scenario(expect=[{"kind": "mode", "mode": "LAND", "after": "rc.start", "within": 2.0}])
    assert sc.lacked_by(BETAFLIGHT) == BETAFLIGHT.lacks("LAND")
    assert "Betaflight (betaflight) has no LAND mode" in sc.lacked_by(BETAFLIGHT)


def test_every_lacked_word_is_named():
    sc = scenario(
        setup={"mode": "GUIDED", "altitude": 10.0},
        expect=[{"kind": "mode", "mode": "LAND", "after": "rc.start", "within": 2.0}],
    )
    reason = sc.lacked_by(BETAFLIGHT)
    assert "no GUIDED mode" in reason and "no LAND mode" in reason


def test_a_firmware_s_own_mode_name_is_lacked_by_the_others():
    sc = scenario(expect=[{"kind": "mode", "mode": "SMART_RTL", "after": "rc.start", "within": 2}])
    assert sc.lacked_by(ARDUCOPTER) is None
    assert "'SMART_RTL' is not a scenario mode word nor a PX4 mode" in sc.lacked_by(PX4_MULTICOPTER)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_still_runs_where_it_applies_on_the_default_firmware(path):
    sc = load_scenario(path)
    if "mavlink" in sc.applies_to:
        assert sc.lacked_by(ARDUCOPTER) is None
    if "msp" in sc.applies_to:
        assert sc.lacked_by(BETAFLIGHT) is None


# -- for_firmware -------------------------------------------------------------------------
def test_for_firmware_puts_expected_modes_in_the_names_the_board_reports():
    assert [e.mode for e in scenario().for_firmware(PX4_MULTICOPTER).expectations] == [
        "AUTO_RTL",
        "AUTO_LAND",
        "AUTO_LOITER",
    ]
    assert [e.mode for e in scenario().for_firmware(BETAFLIGHT).expectations] == [
        "GPS RESCUE",
        "LAND",  # Betaflight has no LAND: never in it, as written
        "POS HOLD",
    ]


def test_for_firmware_leaves_the_setup_word_to_the_adapter():
    assert scenario().for_firmware(PX4_MULTICOPTER).setup.mode == "LOITER"


def test_for_firmware_refuses_a_mode_to_reach_that_the_firmware_lacks():
    sc = scenario(expect=[{"kind": "mode", "mode": "LAND", "after": "rc.start", "within": 2.0}])
    with pytest.raises(ProfileLacks, match="no LAND mode"):
        sc.for_firmware(BETAFLIGHT)


# -- hil gate ---------------------------------------------------------------------------------
class _OneBoardRig:
    def __init__(self, board):
        self.board = board

    def select(self, name):
        return self.board


def test_gate_names_why_no_scenario_can_fly_on_the_board(tmp_path):
    images = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for image in images:
        image.write_bytes(b"\0")
    board = SimpleNamespace(name="bf1", board_class="msp", profile=profile("betaflight"), capabilities=frozenset({"physics"}))
    sc = scenario(expect=[{"kind": "mode", "mode": "LAND", "after": "rc.start", "within": 2.0}])
    with pytest.raises(ConfigError) as info:
        run_gate(_OneBoardRig(board), None, images[0], images[1], [sc])
    message = str(info.value)
    assert "none of the scenarios applies to board bf1 (msp)" in message
    assert "needs: Betaflight (betaflight) has no LAND mode" in message
    assert "\n" not in message


# -- arming checks a scenario relies on ----------------------------------------------------
GPS_RIG_BOARD = frozenset({"physics", "arm_switch", "gnss", "gps_rescue"})


def _relies_on_the_gps_arming_check(**head: Any):
    return scenario(
        scenario={"name": "fix", "duration": 10.0, "applies_to": ["msp"], "arming_checks": ["gps_fix"], **head},
        setup={"mode": "ANGLE", "armed": False},
        injection=[{"kind": "gps_loss", "id": "gps", "start": 0.0}, {"kind": "arm_switch", "id": "arm", "start": 2.0}],
        expect=[{"kind": "disarmed_throughout", "after": "arm.start"}],
    )


def test_a_scenario_names_the_arming_checks_it_relies_on_in_its_needs():
    assert _relies_on_the_gps_arming_check().needs().arming_checks == ("gps_fix",)
    assert scenario().needs().arming_checks == ()


def test_betaflight_makes_the_gps_arming_check_only_with_gps_rescue_configured():
    s = _relies_on_the_gps_arming_check()
    assert s.lacked_by(BETAFLIGHT, GPS_RIG_BOARD) is None
    why = s.lacked_by(BETAFLIGHT, GPS_RIG_BOARD - {"gps_rescue"})
    assert why is not None and "GPS Rescue configured" in why and "gps_rescue" in why
    check = BETAFLIGHT.arming.checks["gps_fix"]
    assert check.flag == "GPS" and check.until_first_arm  # fc/core.c: WAS_EVER_ARMED clears it


def test_a_firmware_whose_profile_has_no_such_arming_check_skips_with_the_reason():
    why = _relies_on_the_gps_arming_check(applies_to=["mavlink"]).lacked_by(PX4_MULTICOPTER, GPS_RIG_BOARD)
    assert why is not None and "no arming check of the kind 'gps_fix'" in why


def test_inav_refuses_arming_without_a_position_only_with_navigation_modes_configured():
    # navigation/navigation.c navigationIsBlockingArming(): a navigation mode on a switch
    # or an RTH failsafe, and no healthy position estimate with a GPS home: the NAV
    # arming blocker (ARMING_DISABLED_NAVIGATION_UNSAFE), at every arming.
    check = INAV.arming.checks["gps_fix"]
    assert check.flag == "NAV" and check.capability == "nav_modes" and not check.until_first_arm
    assert "RTH" in check.when and "nav_extra_arming_safety" in check.note
    assert INAV.lacks_arming_check("gps_fix", frozenset({"physics", "gnss", "nav_modes"})) is None
    why = _relies_on_the_gps_arming_check().lacked_by(INAV, GPS_RIG_BOARD)
    assert why is not None and "navigation mode on a switch" in why and "'nav_modes'" in why


def test_ardupilot_refuses_arming_without_a_fix_in_modes_that_need_gps():
    # ArduCopter AP_Arming_Copter::gps_checks: the common GPS checks ("GPS 1: Bad fix")
    # run when the mode requires GPS; a board without a GPS from the GNSS model cannot
    # show it, and the check is made at every arming (not only the first since boot).
    check = ARDUCOPTER.arming.checks["gps_fix"]
    assert check.flag == "Bad fix" and check.capability == "gnss" and not check.until_first_arm
    assert "LOITER" in check.when
    assert ARDUCOPTER.lacks_arming_check("gps_fix", frozenset({"physics", "gnss"})) is None
    why = ARDUCOPTER.lacks_arming_check("gps_fix", frozenset({"physics"}))
    assert why is not None and "'gnss'" in why


def test_an_unknown_arming_check_word_is_a_scenario_error_naming_the_words():
    from hil.errors import ScenarioError

    with pytest.raises(ScenarioError, match="gps_fix"):
        _relies_on_the_gps_arming_check(arming_checks=["compass_calibrated"])
    with pytest.raises(ScenarioError, match="arming_checks"):
        _relies_on_the_gps_arming_check(arming_checks="gps_fix")


def test_the_gps_bench_scenarios_apply_to_the_gps_rig_board_only():
    fix = load_scenario(ROOT / "scenarios" / "bench_gps_arming_needs_fix.toml")
    armed = load_scenario(ROOT / "scenarios" / "bench_gps_lost_armed_on_ground.toml")
    bench_board = frozenset({"rc_receiver", "link_statistics", "arm_switch", "failsafe_mode"})
    for s in (fix, armed):
        assert s.lacked_by(BETAFLIGHT, GPS_RIG_BOARD) is None
        assert "no physics" in (s.lacked_by(BETAFLIGHT, bench_board) or "")
    assert fix.needs().arming_checks == ("gps_fix",)


# -- arm attempts by the ground station ------------------------------------------------------
def _arm_attempt(setup: dict[str, Any] | None = None, **injection: Any):
    inj = {"kind": "arm_attempt", "id": "arm", "start": 2.0, **injection}
    return scenario(
        scenario={"name": "arm", "duration": 10.0, "applies_to": ["mavlink"], "arming_checks": ["gps_fix"]},
        setup=setup or {"mode": "LOITER", "armed": False},
        injection=[{"kind": "gps_jamming", "id": "jam", "start": 0.0, "stop": 4.0, "js_db": 60.0}, inj],
        expect=[{"kind": "statustext", "contains": "Bad fix", "after": "arm.start", "within": 0.5}],
    )


def test_an_arm_attempt_is_an_injection_with_an_optional_stop():
    once = _arm_attempt().injection("arm")
    assert (once.kind, once.start, once.stop) == ("arm_attempt", 2.0, None)
    assert _arm_attempt(stop=8.0).injection("arm").stop == 8.0


def test_an_arm_attempt_on_an_armed_setup_is_a_one_line_error():
    from hil.errors import ScenarioError

    with pytest.raises(ScenarioError) as err:
        _arm_attempt(setup={"mode": "LOITER", "altitude": 10.0})
    assert "armed = false" in str(err.value) and "\n" not in str(err.value)


def test_an_arm_attempt_is_asked_of_mavlink_boards_only():
    s = _arm_attempt()
    assert "arm_attempt" in s.needs().injections
    assert s.lacked_by(ARDUCOPTER, frozenset({"physics", "gnss"})) is None
    why = Needs((), ("arm_attempt",)).lacking(BETAFLIGHT, frozenset({"physics"}))
    assert why and "arm over MAVLink" in why[0]
    # On its own it acts on no plant: a board on a bench can take it.
    bench = scenario(
        setup={"mode": "STABILIZE", "armed": False},
        injection=[{"kind": "arm_attempt", "id": "arm", "start": 1.0}],
        expect=[{"kind": "armed", "after": "arm.start", "within": 1.0}],
    )
    assert "physics" not in bench.needs().capabilities


def test_the_gps_arming_scenario_is_for_arducopter_with_a_gnss_sky():
    s = load_scenario(ROOT / "scenarios" / "gps_arming_needs_fix.toml")
    assert s.arming_checks == ("gps_fix",) and not s.setup.armed and s.setup.mode == "LOITER"
    assert s.lacked_by(ARDUCOPTER, frozenset({"physics", "gnss"})) is None
    assert "'gnss'" in (s.lacked_by(ARDUCOPTER, frozenset({"physics"})) or "")
    assert "no arming check of the kind 'gps_fix'" in (s.lacked_by(PX4_MULTICOPTER, frozenset({"physics", "gnss"})) or "")
