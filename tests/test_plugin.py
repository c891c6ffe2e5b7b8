"""The pytest plugin as a user meets it: scenario files, failures, skips, fixtures."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hil.rig import DEFAULT_RIG

BROKEN_FAILSAFE = (Path(__file__).parent / "data" / "broken_failsafe.toml").read_text()


def _run(pytester, *args):
    return pytester.runpytest_subprocess(*args, f"--rig={DEFAULT_RIG}", "-p", "no:cacheprovider", timeout=240)


def test_a_disabled_failsafe_fails_its_scenario_with_a_readable_reason(pytester):
    path = pytester.makefile(".toml", rc_loss_broken=BROKEN_FAILSAFE)
    result = _run(pytester, str(path))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "expected mode RTL within 1.5" in out or "mode RTL" in out
    assert "rc.start" in out
    assert "injection_start" in out  # the timeline excerpt
    assert "Traceback" not in out


def test_a_malformed_scenario_names_the_file_and_key(pytester):
    path = pytester.makefile(".toml", bad="[scenario]\nduration = 10\n[setup]\nmode = 'LOITRE'\naltitude = 5\n")
    result = _run(pytester, str(path))
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "bad.toml" in out and "[setup].mode" in out and "LOITER" in out


def test_a_scenario_for_another_board_class_is_skipped_with_the_reason(pytester):
    path = pytester.makefile(
        ".toml",
        msp_only="[scenario]\napplies_to = ['msp']\nduration = 5\n[setup]\nmode = 'LOITER'\narmed = false\n[[expect]]\nkind = 'never_mode'\nmode = 'RTL'\n",
    )
    result = _run(pytester, str(path), "-rs")
    result.assert_outcomes(skipped=1)
    assert "applies to msp boards" in result.stdout.str()


def test_a_scenario_needing_a_mode_the_board_s_firmware_lacks_is_skipped_with_the_reason(pytester):
    path = pytester.makefile(
        ".toml",
        horizon="[scenario]\nduration = 5\n[setup]\nmode = 'LOITER'\naltitude = 5\n"
        "[[expect]]\nkind = 'mode'\nmode = 'HORIZON'\nwithin = 2\n",
    )
    result = _run(pytester, str(path), "-rs")
    result.assert_outcomes(skipped=1)
    assert "board copter1: ArduPilot (arducopter) has no HORIZON mode" in result.stdout.str()


def test_a_test_that_leaves_the_vehicle_armed_fails(pytester):
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_leaves_it_armed(autopilot, sim):
                autopilot.arm(force=True)
            """
        )
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    assert "left board copter1 armed" in result.stdout.str()


def test_parameters_changed_by_a_test_are_restored(pytester):
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_a_changes_it(autopilot):
                autopilot.set_param("FS_GCS_TIMEOUT", 9.0)

            def test_b_sees_the_default(autopilot):
                assert autopilot.get_param("FS_GCS_TIMEOUT") == 5.0
            """
        )
    )
    result = _run(pytester)
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("option", ["--board=nope"])
def test_an_unknown_board_is_a_usage_error(pytester, option):
    pytester.makepyfile("def test_x(board):\n    pass\n")
    result = _run(pytester, option)
    assert "no board 'nope'" in result.stderr.str() + result.stdout.str()


def test_firmware_option_flashes_the_board_once_before_the_tests(pytester):
    rig = pytester.makefile(
        ".toml",
        rig='[[board]]\nname = "copter1"\ntype = "virtual"\nusb_serial = "HILVFC0001"\nsector_erase_s = 0.01\n',
    )
    image = Path(__file__).resolve().parent.parent / "firmware_images" / "hilcopter-1.0.1-fieldpatch.apj"
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_one(autopilot):
                assert autopilot.identify().firmware_version == "1.0.1"

            def test_two(autopilot):
                assert autopilot.identify().firmware_version == "1.0.1"
            """
        )
    )
    result = pytester.runpytest_subprocess(f"--rig={rig}", f"--firmware={image}", "-p", "no:cacheprovider", timeout=240)
    result.assert_outcomes(passed=2)


def test_a_broken_firmware_image_is_a_usage_error(pytester):
    bad = pytester.makefile(".hex", bad=":10000000FFFFFFFF\n")
    pytester.makepyfile("def test_x(board):\n    pass\n")
    result = _run(pytester, f"--firmware={bad}")
    assert "bad.hex" in result.stderr.str() + result.stdout.str()
    assert result.ret != 0


def test_seeds_fly_one_item_per_seed_named_after_it(pytester):
    scenario = (Path(__file__).resolve().parent.parent / "scenarios" / "hover_hold.toml").read_text()
    path = pytester.makefile(".toml", hover=scenario)
    result = _run(pytester, str(path), "--seeds", "3,5-6", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*hover-hold[[]seed=3[]]*", "*hover-hold[[]seed=5[]]*", "*hover-hold[[]seed=6[]]*"])
    assert result.ret == 0


def test_a_bad_seed_list_names_what_is_allowed(pytester):
    scenario = (Path(__file__).resolve().parent.parent / "scenarios" / "hover_hold.toml").read_text()
    path = pytester.makefile(".toml", hover=scenario)
    result = _run(pytester, str(path), "--seeds", "9-2", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*--seeds '9-2': '9-2' is not a range of seeds >= 0, low to high*"])
    assert result.ret != 0
