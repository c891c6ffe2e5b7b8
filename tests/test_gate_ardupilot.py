"""`hil gate` on real ArduCopter SITL (issue 13): a candidate parameter set whose radio
failsafe comes later (RC_FS_TIMEOUT 3 s, ArduCopter's default 1 s) is held with the
evidence, and the build against itself ships. Needs a SITL build named by
HIL_ARDUPILOT_SITL; skipped without it. Slow: eight flights of rc-loss-rtl, each on a
fresh SITL (about a minute and a half each on a quiet host)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hil.cli import main
from tests.ardupilot_marks import NEEDS_ARDUPILOT_SITL

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "rc_loss_rtl.toml"
#: SITL -I for these tests (ports 5760/9002 + 10 x 41), apart from the other SITL tests'.
INSTANCE = 41

pytestmark = NEEDS_ARDUPILOT_SITL


@pytest.fixture
def rig(tmp_path: Path) -> Path:
    path = tmp_path / "ap.toml"
    path.write_text(f'[[board]]\nname = "arducopter"\ntype = "ardupilot-sitl"\ninstance = {INSTANCE}\n')
    return path


def _gate(tmp_path: Path, rig: Path, name: str, *args: str) -> tuple[int, dict, str]:
    report = tmp_path / name
    code = main([
        "gate", str(SCENARIO), "--rig", str(rig), *args, "--repeats", "2",
        "--report", str(report), "--state-dir", str(tmp_path / "state"),
    ])
    return code, json.loads((report / "gate.json").read_text()), (report / "gate.txt").read_text()


def test_a_later_radio_failsafe_is_held_and_the_build_against_itself_ships(tmp_path, rig, capsys):
    parm = tmp_path / "rc-fs-3s.parm"
    parm.write_text("# the field patch: radio failsafe after 3 s of silence\nRC_FS_TIMEOUT 3\n")
    code, evidence, text = _gate(tmp_path, rig, "hold", "--candidate-defaults", str(parm))
    assert code == 1, evidence["reasons"]
    assert evidence["verdict"] == "do not ship"
    assert any(r.startswith("rc-loss-rtl: passes on the baseline (2/2) but fails") for r in evidence["reasons"])
    # Read back from the board in every run: SITL really restarted with each side's files.
    assert evidence["parameter_differences"]["RC_FS_TIMEOUT"] == {
        "baseline": None, "candidate": 3.0, "read_back": {"baseline": [1.0], "candidate": [3.0]},
    }
    key = "#1 mode RTL after rc.start (s)"
    late = [r["latencies"].get(key) for r in evidence["runs"]["candidate"]]
    assert all(x is not None and x >= 2.9 for x in late), late
    assert evidence["candidate"]["defaults"][0]["sha256"] in text
    assert evidence["baseline"]["sha256"] == evidence["candidate"]["sha256"]

    exe = os.environ["HIL_ARDUPILOT_SITL"]
    code, evidence, _ = _gate(tmp_path, rig, "same", "--baseline", exe, "--candidate", exe)
    assert code == 0, evidence["reasons"]
    assert evidence["verdict"] == "ship"
    assert all(r["passed"] for runs in evidence["runs"].values() for r in runs)
