"""The ground station's arm attempts on the virtual ArduCopter-like board: refused without
a GPS fix in LOITER (ArduCopter's "Arm: GPS 1: Bad fix", COMMAND_ACK FAILED), accepted
once the fix is back (scenarios/gps_arming_needs_fix.toml)."""

from __future__ import annotations

from pathlib import Path

from hil.scenario.load import load_scenario
from hil.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_arming_is_refused_while_jammed_and_accepted_once_the_fix_is_back(board_session) -> None:
    result = run_scenario(load_scenario(ROOT / "scenarios" / "gps_arming_needs_fix.toml"), board_session)
    assert result.passed, result.failure_text()
    notes = [e for e in result.timeline.events if e.kind == "note" and e.text.startswith("arm attempt")]
    # The first attempt (t = 2 s, jammed) is refused as ArduCopter's GCS_Common.cpp
    # answers a failed arming: MAV_RESULT_FAILED, the reason as STATUSTEXT.
    first = notes[0]
    assert first.text.startswith("arm attempt arm:") and "(FAILED)" in first.text and "GPS 1: Bad fix" in first.text
    assert notes[-1].text == "arm attempt rearm: accepted" and notes[-1].t >= 5.0 - 1e-6
    texts = [e.text for e in result.timeline.events_between(0.0, 4.0, "statustext")]
    assert "Arm: GPS 1: Bad fix" in texts  # as ArduCopter SITL says it
