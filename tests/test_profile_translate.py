"""Scenario settings in ArduCopter's names, said in PX4's (hil.profiles.translate), and the
scenario library read against the PX4 profile: what runs, what is skipped and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.profiles import ARDUCOPTER, BETAFLIGHT, PX4_MULTICOPTER
from hil.profiles.translate import statustext_for, translate_settings
from hil.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_radio_failsafe_settings_become_px4s() -> None:
    out, why = translate_settings({"FS_THR_ENABLE": 1, "RC_FS_TIMEOUT": 1.0}, PX4_MULTICOPTER)
    assert why == []
    assert out == {"NAV_RCL_ACT": 2.0, "COM_RC_LOSS_T": 1.0, "COM_FAIL_ACT_T": 0.0}


def test_land_and_gcs_settings_become_px4s() -> None:
    out, _ = translate_settings({"FS_THR_ENABLE": 3}, PX4_MULTICOPTER)
    assert out["NAV_RCL_ACT"] == 3.0
    out, _ = translate_settings({"FS_GCS_ENABLE": 1, "FS_GCS_TIMEOUT": 5.0}, PX4_MULTICOPTER)
    assert (out["NAV_DLL_ACT"], out["COM_DL_LOSS_T"]) == (2.0, 5.0)


def test_a_smart_rtl_falls_back_to_px4s_return() -> None:
    out, why = translate_settings({"FS_THR_ENABLE": 4}, PX4_MULTICOPTER)  # SmartRTL, else RTL
    assert why == [] and out["NAV_RCL_ACT"] == 2.0


def test_what_px4_cannot_say_is_a_reason_not_a_dropped_setting() -> None:
    _, why = translate_settings({"BATT_LOW_VOLT": 10.5}, PX4_MULTICOPTER)
    assert len(why) == 1 and "BATT_LOW_VOLT" in why[0] and "fraction of capacity" in why[0]
    _, why = translate_settings({"FS_EKF_ACTION": 2}, PX4_MULTICOPTER)
    assert "ALT_HOLD" in why[0] and "COM_POSCTL_NAVL" in why[0]
    _, why = translate_settings({"WPNAV_SPEED": 500}, PX4_MULTICOPTER)
    assert "WPNAV_SPEED" in why[0]


def test_px4s_own_settings_pass_as_written() -> None:
    out, why = translate_settings({"NAV_RCL_ACT": 3, "COM_FAIL_ACT_T": 2.0}, PX4_MULTICOPTER)
    assert why == [] and out == {"NAV_RCL_ACT": 3.0, "COM_FAIL_ACT_T": 2.0}


@given(st.dictionaries(st.sampled_from(["FS_THR_ENABLE", "FS_GCS_ENABLE", "RC_FS_TIMEOUT", "X"]), st.integers(0, 9)))
def test_arducopter_and_msp_firmwares_take_settings_as_written(params: dict[str, int]) -> None:
    for prof in (ARDUCOPTER, BETAFLIGHT):
        assert translate_settings(params, prof) == (dict(params), [])


@given(st.dictionaries(st.text(max_size=20), st.floats(allow_nan=True)))
def test_any_settings_give_settings_or_reasons_never_an_exception(params: dict[str, float]) -> None:
    out, why = translate_settings(params, PX4_MULTICOPTER)
    assert isinstance(out, dict) and all(isinstance(w, str) for w in why)


def test_statustexts_are_looked_for_in_px4s_words() -> None:
    assert statustext_for(PX4_MULTICOPTER, "Radio Failsafe") == "Manual control lost"
    assert statustext_for(PX4_MULTICOPTER, "gcs failsafe") == "Connection to ground station lost"
    assert statustext_for(PX4_MULTICOPTER, "Something else") == "Something else"
    assert statustext_for(ARDUCOPTER, "Radio Failsafe") == "Radio Failsafe"


def test_set_mode_names_px4s_main_and_sub_mode() -> None:
    rtl = PX4_MULTICOPTER.modes["AUTO_RTL"]
    assert PX4_MULTICOPTER.set_mode_params(rtl) == (1.0, 4.0, 5.0)
    assert ARDUCOPTER.set_mode_params(6) == (1.0, 6.0, 0.0)


def _library():
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        scenario = load_scenario(path)
        if "mavlink" in scenario.applies_to:
            yield scenario


def test_the_library_on_px4_skips_only_what_px4_cannot_say() -> None:
    skipped = {s.name: s.lacked_by(PX4_MULTICOPTER, frozenset({"physics", "gnss", "failsafe_mode"})) for s in _library()}
    skipped = {name: why for name, why in skipped.items() if why}
    assert set(skipped) == {"low-battery-rtl", "rc-loss-while-gps-jammed", "gcs-loss-pilot-continues", "gps-arming-needs-fix"}
    assert "gps_fix" in skipped["gps-arming-needs-fix"]
    assert "BATT_LOW_VOLT" in skipped["low-battery-rtl"]
    assert "FS_OPTIONS bit 4" in skipped["gcs-loss-pilot-continues"]
    assert "FS_EKF_ACTION = 2" in skipped["rc-loss-while-gps-jammed"]


@pytest.mark.parametrize("name", ["rc-loss-rtl", "gcs-loss-rtl", "gps-loss-land"])
def test_a_scenario_for_px4_sets_px4s_settings_and_looks_for_px4s_words(name: str) -> None:
    (scenario,) = [s for s in _library() if s.name == name]
    mapped = scenario.for_firmware(PX4_MULTICOPTER)
    assert mapped.setup.params["COM_FAIL_ACT_T"] == 0.0
    assert not any(k.startswith("FS_") for k in mapped.setup.params)
    texts = [e.contains for e in mapped.expectations if e.kind == "statustext"]
    assert texts and not any("Failsafe" in t and t != "Failsafe activated" for t in texts)
    assert scenario.for_firmware(ARDUCOPTER).setup == scenario.setup


def test_a_scenario_that_sets_nothing_means_arducopters_defaults_for_what_it_exercises() -> None:
    out, why = translate_settings({"FS_THR_ENABLE": 3}, PX4_MULTICOPTER, ["rc_loss"])
    assert why == [] and out == {"NAV_RCL_ACT": 3.0, "COM_RC_LOSS_T": 1.0, "COM_FAIL_ACT_T": 0.0}
    out, _ = translate_settings({}, PX4_MULTICOPTER, ["telemetry_jamming"])
    assert (out["NAV_DLL_ACT"], out["COM_DL_LOSS_T"]) == (0.0, 5.0)
    assert translate_settings({}, PX4_MULTICOPTER, ["wind"]) == ({}, [])
    assert translate_settings({}, ARDUCOPTER, ["rc_loss"]) == ({}, [])


def test_fs_options_0_is_every_firmware_acting_in_every_mode() -> None:
    out, why = translate_settings({"FS_GCS_ENABLE": 1, "FS_OPTIONS": 0}, PX4_MULTICOPTER, ["gcs_loss"])
    assert why == [] and "FS_OPTIONS" not in out and out["NAV_DLL_ACT"] == 2.0


def test_arducopters_default_fs_options_is_a_reason_only_where_it_changes_a_failsafe_flown() -> None:
    # Implied by a GCS injection with the GCS failsafe on: bit 4 has no PX4 counterpart.
    _, why = translate_settings({"FS_GCS_ENABLE": 1}, PX4_MULTICOPTER, ["gcs_loss"])
    assert len(why) == 1 and "FS_OPTIONS bit 4" in why[0]
    # GCS failsafe off (ArduCopter's default), or not exercised: the bit changes nothing.
    assert translate_settings({}, PX4_MULTICOPTER, ["gcs_loss"])[1] == []
    assert translate_settings({"FS_OPTIONS": 16}, PX4_MULTICOPTER, ["rc_loss"])[1] == []
    # Bit 3 (continue landing) with the radio failsafe on by default.
    _, why = translate_settings({"FS_OPTIONS": 8}, PX4_MULTICOPTER, ["rc_loss"])
    assert len(why) == 1 and "bit 3" in why[0]
    _, why = translate_settings({"FS_OPTIONS": 1.5}, PX4_MULTICOPTER, ["rc_loss"])
    assert "not a bitmask" in why[0]
    assert translate_settings({"FS_OPTIONS": 16}, ARDUCOPTER, ["gcs_loss"]) == ({"FS_OPTIONS": 16}, [])
