"""ArduCopter SITL flown by the harness (issue 13): needs a SITL build named by
HIL_ARDUPILOT_SITL (./waf configure --board sitl && ./waf copter in ArduPilot's source);
skipped without it. Slow: each test boots SITL and flies a scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.rig import Rig
from tests.ardupilot_marks import NEEDS_ARDUPILOT_SITL

ROOT = Path(__file__).resolve().parent.parent

pytestmark = NEEDS_ARDUPILOT_SITL


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    rig = Rig.load(ROOT / "fixtures" / "ardupilot-sitl.toml", work_dir=tmp_path_factory.mktemp("aprig"))
    board = rig.boards[0]
    yield board
    board.stop()


def _fly(board, name: str):
    from hil.scenario.load import load_scenario
    from hil.scenario.runner import run_scenario
    from hil.session import session_for

    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    with session_for(board) as session:
        result = run_scenario(scenario, session)
    return result


def test_ekf_starts_on_our_gps_with_auto_config(board):
    from hil.session import session_for

    with session_for(board) as session:
        ap = session.autopilot
        assert session.param_snapshot.get("GPS_AUTO_CONFIG", 1) == 1
        ap.wait_for(
            "a 3D fix from our u-blox on SERIAL3",
            lambda m: m.get_type() == "GPS_RAW_INT" and m.fix_type >= 3,
            within=60.0,
        )


# gcs_loss_rtl sets FS_OPTIONS = 0 (the RTL it means); gcs_loss_pilot_continues expects
# ArduCopter's default 16 (a GCS failsafe in LOITER only announced); gps_arming_needs_fix
# has the arm command refused with "Arm: GPS 1: Bad fix" while jammed on the ground.
@pytest.mark.parametrize(
    "name", ["hover_hold", "rc_loss_rtl", "gcs_loss_rtl", "gcs_loss_pilot_continues", "gps_arming_needs_fix"]
)
def test_scenario_passes(board, name):
    result = _fly(board, name)
    failed = [v for v in result.verdicts if not v.passed]
    assert result.error is None, result.error
    assert not failed, "; ".join(str(v) for v in failed)
