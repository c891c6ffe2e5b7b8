"""Bad input, as a careless user gives it: every case ends in one line that says what to
fix, with an exit code that is not a test failure's (pytest's 1).

Exit codes (README, "Commands"): 3 a board is missing or stopped answering, 4 bad input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hil.errors import EXIT_BOARD, EXIT_USAGE
from hil.rig import BUILTIN_BOARD_TYPES

ROOT = Path(__file__).resolve().parent.parent

QUICK = """\
[scenario]
name = "{name}"
duration = {duration}

[setup]
mode = "STABILIZE"
armed = false

[[expect]]
kind = "disarmed"
after = "start"
within = 1.0
"""

#: Armed and hovering with expectations that hold over any stretch of recording: the
#: kind of scenario a frozen board used to pass.
HOVER = """\
[scenario]
name = "{name}"
duration = 300.0

[setup]
mode = "LOITER"
altitude = 5.0

[[expect]]
kind = "armed_throughout"
after = "start"

[[expect]]
kind = "never_mode"
mode = "RTL"
after = "start"
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HIL_LOCK_DIR"] = str(tmp_path / "locks")
    return env


def _hil(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(tmp_path),
    )


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return _hil(
        tmp_path, "run", *args, "--report", str(tmp_path / "report"), "--state-dir", str(tmp_path / "state"),
        timeout=timeout,
    )


def _errors_section(out: str) -> str:
    """pytest's report before its short summary, which repeats each error's message in
    full when CI is set (and cut to the terminal's width when not)."""
    return out.split("short test summary info")[0]


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, "\n".join(lines)
    return lines[0]


def _rig(tmp_path: Path, board: str) -> Path:
    path = tmp_path / "rig.toml"
    path.write_text("[rig]\nname = 'careless'\n\n[[board]]\n" + board)
    return path


# -- rig files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("board", "key", "allowed"),
    [
        ("type = 'warp'\nusb_serial = 'X'\n", ".type", "is not one of: " + ", ".join(sorted(BUILTIN_BOARD_TYPES))),
        ("type = ['virtual']\nusb_serial = 'X'\n", ".type", "is not one of"),
        ("type = 'virtual'\nusb_serial = 'X'\nboard_id = 'abc'\n", ".board_id = 'abc'", "a whole number from 0"),
        ("type = 'mavlink'\nurl = 'tcp:127.0.0.1:5760'\nbaud = 'fast'\n", ".baud = 'fast'", "bits per second"),
        ("type = 'mavlink'\nurl = 'tcp:127.0.0.1:5760'\nlockstep = 'no'\n", ".lockstep = 'no'", "true or false"),
        ("type = 'virtual'\nusb_serial = '../../x y'\n", ".usb_serial = '../../x y'", "A-Z a-z 0-9 . _ -"),
        ("type = 'virtual'\nname = '..'\nusb_serial = 'X'\n", ".name = '..'", "not starting with a dot"),
        ("type = 'betaflight-sitl'\nname = 'bf/1'\n", ".name = 'bf/1'", "A-Z a-z 0-9 . _ -"),
    ],
)
def test_a_wrong_rig_value_is_one_line_naming_file_key_and_what_is_allowed(tmp_path, board, key, allowed):
    rig = _rig(tmp_path, board)
    result = _run(tmp_path, "scenarios/hover_hold.toml", "--rig", str(rig))
    line = _one_line(result)
    assert result.returncode == EXIT_USAGE
    assert line.startswith("hil run: ") and str(rig) in line and "[[board]][0]" + key in line
    assert allowed in line
    assert not (tmp_path.parent / "x y").exists() and not (tmp_path / "x y").exists()


def test_two_boards_with_one_serial_are_refused(tmp_path):
    rig = _rig(tmp_path, "name = 'a'\nusb_serial = 'S1'\n\n[[board]]\nname = 'b'\nusb_serial = 'S1'\n")
    result = _hil(tmp_path, "boards", "--rig", str(rig), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == EXIT_USAGE
    assert "the same USB serial 'S1'" in _one_line(result)


def test_an_unknown_board_is_one_line_listing_the_boards(tmp_path):
    result = _run(tmp_path, "scenarios/hover_hold.toml", "--board", "copter9")
    assert result.returncode == EXIT_USAGE
    assert "no board 'copter9' on this rig; boards: copter1 (HILVFC0001)" in _one_line(result)


def test_plain_pytest_with_a_broken_rig_is_one_usage_error_before_any_scenario(tmp_path):
    rig = _rig(tmp_path, "type = 'virtual'\nusb_serial = 'X'\nboard_id = 'abc'\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "scenarios/hover_hold.toml",
         "scenarios/rc_loss_rtl.toml", f"--rig={rig}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env(tmp_path),
    )
    assert result.returncode == EXIT_USAGE
    out = result.stdout + result.stderr
    assert out.count("board_id = 'abc'") == 1 and "Traceback" not in out


def test_a_bad_command_line_option_is_a_usage_error(tmp_path):
    result = _hil(tmp_path, "boards", "--timeout", "0")
    assert result.returncode == EXIT_USAGE
    assert "--timeout 0.0: give a positive number of seconds" in _one_line(result)
    assert _hil(tmp_path, "boards", "--timeout", "soon").returncode == EXIT_USAGE


# -- scenario files --------------------------------------------------------------------------
def test_a_scenario_longer_than_an_hour_is_refused(tmp_path):
    path = tmp_path / "forever.toml"
    path.write_text(QUICK.format(name="forever", duration="1e9"))
    result = _run(tmp_path, str(path))
    assert result.returncode == EXIT_USAGE
    line = _one_line(result)
    assert str(path) in line and "[scenario].duration" in line and "3600 s" in line


def test_hil_run_takes_any_folder_of_scenarios(tmp_path):
    folder = tmp_path / "my_scenarios"
    (folder / "deeper").mkdir(parents=True)
    (folder / "deeper" / "idle.toml").write_text(QUICK.format(name="idle-anywhere", duration=1.0))
    (folder / "notes.toml").write_text("[tool]\nnot_a_scenario = true\n")
    result = _run(tmp_path, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "idle-anywhere" in result.stdout and "1 passed" in result.stdout


def test_hil_run_of_a_path_that_does_not_exist(tmp_path):
    result = _run(tmp_path, str(tmp_path / "nowhere"))
    assert result.returncode == EXIT_USAGE
    assert "nowhere does not exist" in _one_line(result)


# -- boards that are missing or stop answering -------------------------------------------------
def _missing_rig(tmp_path: Path) -> Path:
    return _rig(tmp_path, "name = 'fc1'\ntype = 'mavlink'\nusb_serial = 'NOSUCHBOARD'\n")


def test_hil_boards_waits_for_a_missing_board_once_within_its_timeout(tmp_path):
    start = time.monotonic()
    result = _hil(tmp_path, "boards", "--rig", str(_missing_rig(tmp_path)), "--timeout", "1",
                  "--state-dir", str(tmp_path / "state"))
    elapsed = time.monotonic() - start
    assert result.returncode == EXIT_BOARD
    assert "fc1" in result.stdout and "absent" in result.stdout  # the table still shows it
    line = _one_line(subprocess.CompletedProcess([], 0, "", result.stderr))
    assert line.startswith("hil boards: board fc1: no port with USB serial 'NOSUCHBOARD' after 1.0 s")
    assert elapsed < 8.0  # one wait of 1 s (plus the interpreter), not 10 s and another 1 s


def test_hil_boards_names_the_firmware_of_an_msp_board(tmp_path):
    from hil.bench import _sitl_missing

    missing = _sitl_missing()
    if missing:
        pytest.skip(missing)
    result = _hil(tmp_path, "boards", "--rig", "fixtures/betaflight-sitl.toml", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert "BTFL 4.6.0 (board SITL)" in result.stdout and "Traceback" not in result.stderr


def test_a_missing_board_is_an_error_found_once_and_never_a_firmware_failure(tmp_path):
    for name in ("one", "two", "three"):
        (tmp_path / f"{name}.toml").write_text(QUICK.format(name=name, duration=1.0))
    result = _run(tmp_path, *(str(tmp_path / f"{n}.toml") for n in ("one", "two", "three")),
                  "--rig", str(_missing_rig(tmp_path)))
    assert result.returncode == EXIT_BOARD, result.stdout + result.stderr
    out = result.stdout
    assert "3 errors" in out and "failed" not in out and "passed" not in out
    reason = "BoardUnavailable: board fc1: no port with USB serial 'NOSUCHBOARD' after 10.0 s"
    assert _errors_section(out).count(reason) == 3 and "Traceback" not in out
    # Looked for once, within the board's own 10 s: JUnit's per-item times show the first
    # scenario waited and the others did not wait at all (whatever the host's load).
    import xml.etree.ElementTree as ET

    times = [float(case.get("time", "0")) for case in ET.parse(tmp_path / "report" / "junit.xml").iter("testcase")]
    assert len(times) == 3 and times[0] >= 10.0, times
    assert max(times[1:]) < times[0] / 2, times


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _is_board(pid: int) -> bool:
    try:
        return b"hil.vfc" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_board_frozen_mid_run_is_an_error_not_a_verdict(tmp_path):
    first, second = tmp_path / "frozen.toml", tmp_path / "after.toml"
    first.write_text(HOVER.format(name="frozen-hover"))
    second.write_text(QUICK.format(name="after-the-freeze", duration=1.0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "run", str(first), str(second), "--report", str(tmp_path / "report"),
         "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path),
    )
    board = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the scenario has started: its setup flies for a while
            if "frozen-hover on copter1: started" in line:
                break
        deadline = time.monotonic() + 30
        while board is None and time.monotonic() < deadline:
            board = next((p for p in _children(proc.pid) if _is_board(p)), None)
            time.sleep(0.1)
        assert board is not None, "the virtual board's process was not found"
        time.sleep(4.0)  # armed and flying the timeline
        os.kill(board, signal.SIGSTOP)
        out = proc.stdout.read()
        code = proc.wait(120)
    finally:
        if board is not None:
            try:
                os.kill(board, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
    assert code == EXIT_BOARD, out
    assert "board copter1 stopped answering at t=" in out and "no state read since" in out
    assert "frozen-hover" in out and "PASS" not in out and "FAIL" not in out
    assert "2 errors" in out  # the next scenario ends at once, with the same reason
    assert _errors_section(out).count("BoardUnavailable: board copter1 stopped answering at t=") == 2


# -- judging and drawing -------------------------------------------------------------------------
def test_a_gap_in_the_recording_is_never_a_pass():
    from hil.scenario.expect import evaluate
    from hil.scenario.load import parse_scenario
    from hil.scenario.timeline import Timeline

    scenario = parse_scenario(
        {
            "scenario": {"name": "gap", "duration": 20.0},
            "setup": {"mode": "LOITER", "altitude": 5.0},
            "expect": [
                {"kind": "armed_throughout", "after": "start"},
                {"kind": "never_mode", "mode": "RTL", "after": "start"},
            ],
        }
    )
    timeline = Timeline()
    for t in [*np.arange(-2.0, 5.0, 0.1), *np.arange(15.0, 20.0, 0.1)]:  # nothing from 5 s to 15 s
        timeline.add_state(float(t), True, "LOITER", 5.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    verdicts = evaluate(scenario, timeline, {})
    assert not any(v.passed for v in verdicts)
    assert all("cannot check: no state samples from t=4.9" in v.message for v in verdicts)


def test_ten_thousand_injection_windows_are_drawn_as_a_bounded_number_of_spans():
    from hil.report.plots import MAX_SHADED_WINDOWS, flight_plot, shaded_windows
    from hil.scenario.load import parse_scenario
    from hil.scenario.runner import ScenarioResult
    from hil.scenario.timeline import Timeline

    n = 10_000
    windows = [(i * 0.01, i * 0.01 + 0.004, f"g{i}", "rc_loss") for i in range(n)]
    spans, note = shaded_windows(windows, 100.0)
    assert len(spans) == MAX_SHADED_WINDOWS and note.startswith(f"{n} injection windows: shaded as")
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(windows[-1][1])

    scenario = parse_scenario(
        {
            "scenario": {"name": "many", "duration": 100.0},
            "setup": {"mode": "LOITER", "altitude": 5.0},
            "injection": [{"kind": "rc_loss", "id": w[2], "start": w[0], "stop": w[1]} for w in windows],
            "expect": [{"kind": "never_mode", "mode": "RTL", "after": "start"}],
        }
    )
    timeline = Timeline()
    for i in range(1000):
        timeline.add_state(i * 0.1, True, "LOITER", 5.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for a, b, ident, _ in windows:
        timeline.add_event(a, "injection_start", ident)
        timeline.add_event(b, "injection_stop", ident)
    start = time.monotonic()
    png = flight_plot(ScenarioResult(scenario, "copter1", timeline=timeline))
    assert png is not None and png[:4] == b"\x89PNG"
    assert time.monotonic() - start < 30.0  # it took minutes with one artist per window
