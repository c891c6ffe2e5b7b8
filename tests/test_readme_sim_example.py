"""The README's `sim` fixture example, run as a user runs it: its code as a test file,
pytest with the plugin, on the default virtual rig (CI) and on ArduCopter SITL (needs
HIL_ARDUPILOT_SITL). The example's code is the first python block of README.md ("Writing
tests in Python"); the `sim` fixture hands a MAVLink board over once it is ready to fly
(`MavlinkAutopilot.wait_ready`)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from hil.mavlink.dialect import mavlink
from hil.rig import DEFAULT_RIG
from tests.ardupilot_marks import needs_ardupilot_sitl

ROOT = Path(__file__).resolve().parent.parent
README_TEXT = ROOT / "README.md"
#: SITL -I for the ArduPilot run (ports 5760/9002 + 10 x 40).
INSTANCE = 40


def readme_example() -> str:
    """The first python block of the README: the `sim` example."""
    blocks = re.findall(r"```python\n(.*?)```", README_TEXT.read_text(), flags=re.S)
    assert blocks, f"no python example in {README_TEXT}"
    return blocks[0]


def _run_example(pytester, rig: Path, *args: str):
    pytester.makepyfile(test_readme_example=readme_example())
    return pytester.runpytest_subprocess(
        f"--rig={rig}", f"--hil-state-dir={pytester.path / 'state'}", "-p", "no:cacheprovider", "-rA", *args,
        timeout=600,
    )


def test_the_example_is_the_one_the_readme_shows():
    code = readme_example()
    assert "def test_radio_failsafe_returns_home(autopilot, sim):" in code
    assert 'sim.schedule("rc_loss"' in code and 'autopilot.wait_mode("RTL"' in code


def test_the_readme_sim_example_passes_on_the_virtual_board(pytester):
    result = _run_example(pytester, DEFAULT_RIG)
    result.assert_outcomes(passed=1)
    assert "left board" not in result.stdout.str()  # it lands and disarms by itself


def test_the_sim_fixture_hands_over_a_vehicle_ready_to_fly(board_session):
    """The pre-arm bit of SYS_STATUS as ArduPilot sets it: failing while the gyros
    settle, passing once they have, with the throttle stick at mid in STABILIZE (a
    throttle check belongs to arming, not to the pre-arm checks)."""
    ap = board_session.autopilot
    sim = board_session.make_sim()
    sim.start()
    bit = mavlink.MAV_SYS_STATUS_PREARM_CHECK
    first = ap.wait_for("SYS_STATUS", lambda m: m.get_type() == "SYS_STATUS", within=2.0)
    assert first.onboard_control_sensors_present & bit and first.onboard_control_sensors_enabled & bit
    assert not first.onboard_control_sensors_health & bit  # gyros still settling
    t = ap.wait_ready(within=20.0)
    assert t >= 3.0
    after = ap.wait_for("SYS_STATUS", lambda m: m.get_type() == "SYS_STATUS", within=2.0)
    assert after.onboard_control_sensors_health & bit and ap.mode == "STABILIZE"
    ap.set_mode("GUIDED")  # accepted at once: it has a position
    ap.arm()
    ap.disarm()


@needs_ardupilot_sitl
def test_the_readme_sim_example_passes_on_ardupilot_sitl(pytester):
    rig = pytester.path / "ap.toml"
    rig.write_text(
        textwrap.dedent(
            f"""\
            [[board]]
            name = "arducopter"
            type = "ardupilot-sitl"
            instance = {INSTANCE}
            """
        )
    )
    result = _run_example(pytester, rig)
    result.assert_outcomes(passed=1)
