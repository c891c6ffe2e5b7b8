"""The `hil` command as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _hil(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_boards_lists_the_virtual_copter_with_its_firmware(tmp_path):
    result = _hil("boards", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "copter1" in out and "virtual" in out and "HILVFC0001" in out
    assert "ArduPilot 1.0.0 (board 7701)" in out
    assert "/dev/pts/" in out


def test_run_writes_junit_and_a_summary_and_prints_the_table(tmp_path):
    report = tmp_path / "report"
    result = _hil("run", "scenarios/hover_hold.toml", "--report", str(report), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hover-hold" in result.stdout and "PASS" in result.stdout
    assert "lockstep speed:" in result.stdout
    suite = ET.parse(report / "junit.xml").getroot()
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["usb_serial"] == "HILVFC0001"
    assert float(props["lockstep_speed"]) > 1.0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["schema"] == "hil-summary/2"
    assert summary["scenarios"][0]["passed"] is True


def test_run_exit_code_is_pytests_for_a_failing_scenario(tmp_path):
    scenario = tmp_path / "broken.toml"
    shutil.copy(ROOT / "tests" / "data" / "broken_failsafe.toml", scenario)
    result = _hil("run", str(scenario), "--report", str(tmp_path / "r"), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "RTL" in result.stdout


def test_run_with_a_bad_rig_file_says_why_without_a_traceback(tmp_path):
    rig = tmp_path / "rig.toml"
    rig.write_text("[[board]]\ntype = 'warp'\n")
    result = _hil("run", "scenarios/hover_hold.toml", "--rig", str(rig), "--report", str(tmp_path / "r"))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "'warp' is not one of" in text
    assert "Traceback" not in text


def test_run_without_scenarios_explains(tmp_path):
    result = _hil("run", cwd=tmp_path)
    assert result.returncode == 4
    assert "no scenarios" in result.stderr


@pytest.mark.parametrize("args", [["boards", "--rig", "/nonexistent/rig.toml"]])
def test_boards_with_a_missing_rig_file_is_a_clear_error(args):
    result = _hil(*args)
    assert result.returncode == 4  # bad input (README, "Commands": exit codes)
    assert "does not exist" in result.stderr
