"""Board type ardupilot-sitl without the firmware: rig keys, SITL's command line, the
defaults file, the pty bridges and ArduCopter's RC semantics. Flying the real SITL is
tests/test_ardupilot_sitl_flight.py (needs HIL_ARDUPILOT_SITL)."""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.boards.ardupilot_sitl import (
    DEFAULTS_NAME,
    HARNESS_DEFAULTS,
    ArduPilotSitlBoard,
    write_defaults,
)
from hil.errors import ConfigError
from hil.profiles.ardupilot import ARDUCOPTER, MODE_SWITCH_PWM, parse_param_file, rc_semantics
from hil.rig import Rig
from hil.sitl.ardupilot import ArduPilotSitl, PtyBridge, find_executable


def _rig(tmp_path: Path, body: str) -> Rig:
    path = tmp_path / "rig.toml"
    path.write_text('[[board]]\nname = "ap"\ntype = "ardupilot-sitl"\n' + body)
    return Rig.load(path, work_dir=tmp_path / "state")


@pytest.fixture
def fake_exe(tmp_path: Path) -> Path:
    exe = tmp_path / "arducopter"
    exe.write_text("#!/bin/sh\nexit 3\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_rig_keys(tmp_path, fake_exe, monkeypatch):
    monkeypatch.delenv("HIL_ARDUPILOT_SITL", raising=False)
    (tmp_path / "mine.parm").write_text("RC_FS_TIMEOUT 3\n")
    rig = _rig(tmp_path, f'executable = "{fake_exe}"\ndefaults = ["mine.parm"]\ninstance = 2\n')
    board = rig.boards[0]
    assert isinstance(board, ArduPilotSitlBoard)
    assert board.state == "off" and board.lockstep and board.profile.name == "arducopter"
    assert board.simulator_link_name == "ardupilot_json"
    assert board.parameters_at_boot()["RC_FS_TIMEOUT"] == 3.0
    assert {r.role: (r.protocol, r.fc_port) for r in board.receivers} == {
        "gps": ("ubx", "SERIAL3"), "rc": ("crsf", "SERIAL4"),
    }


def test_executable_from_the_environment(tmp_path, fake_exe, monkeypatch):
    monkeypatch.setenv("HIL_ARDUPILOT_SITL", str(fake_exe))
    assert _rig(tmp_path, "").boards[0].state == "off"
    monkeypatch.setenv("HIL_ARDUPILOT_SITL", str(tmp_path / "missing"))
    assert _rig(tmp_path, "").boards[0].state == "not installed"
    with pytest.raises(ConfigError, match="HIL_ARDUPILOT_SITL"):
        find_executable(None)


@pytest.mark.parametrize(
    "body, message",
    [
        ('defaults = "nope.parm"\n', "does not exist"),
        ("defaults = [1]\n", "list of file paths"),
        ("instance = -1\n", "instance"),
        ("speedup = 0\n", "speedup"),
        ('port = 1\n', "unknown keys"),
    ],
)
def test_bad_rig_keys_are_one_clear_line(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        _rig(tmp_path, body)


def test_command_line_wires_json_physics_and_our_receivers(tmp_path, fake_exe):
    sitl = ArduPilotSitl(
        tmp_path, fake_exe, defaults=[tmp_path / DEFAULTS_NAME, tmp_path / "user.parm"], instance=1,
        serials={3: "uart:/dev/pts/7", 4: "uart:/dev/pts/8"},
    )
    argv = sitl.argv()
    assert argv[argv.index("--model") + 1] == "JSON:127.0.0.1"
    assert argv[argv.index("--sim-port-out") + 1] == "9012" and sitl.mavlink_port == 5770
    assert argv[argv.index("--defaults") + 1] == f"{tmp_path / DEFAULTS_NAME},{tmp_path / 'user.parm'}"
    assert "--serial3=uart:/dev/pts/7" in argv and "--serial4=uart:/dev/pts/8" in argv
    assert "-w" in argv  # every start from the defaults files


def test_a_sitl_that_exits_at_once_is_reported(tmp_path, fake_exe):
    sitl = ArduPilotSitl(tmp_path, fake_exe, defaults=[], instance=37)
    sitl.start()
    try:
        from hil.errors import BoardNotAnswering

        with pytest.raises(BoardNotAnswering, match="exited with code 3"):
            sitl.wait_mavlink_port(5.0)
    finally:
        sitl.stop()
    assert "--model JSON:127.0.0.1" in sitl.log_path.read_text()


def test_defaults_file_sets_the_wiring(tmp_path):
    write_defaults(tmp_path / "d.parm", HARNESS_DEFAULTS)
    values = parse_param_file((tmp_path / "d.parm").read_text())
    assert values["SERIAL3_PROTOCOL"] == 5 and values["SERIAL4_PROTOCOL"] == 23
    assert values["RC_PROTOCOLS"] == 512 and values["FRAME_CLASS"] == 1 and values["FRAME_TYPE"] == 1
    assert "GPS_AUTO_CONFIG" not in values  # ArduPilot's default (1): our emulator answers it


def _read(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], 2.0)
        assert ready, f"bridge passed {len(out)} of {n} bytes within 2 s"
        out += os.read(fd, n - len(out))
    return out


def test_pty_bridge_carries_bytes_both_ways():
    bridge = PtyBridge("t")
    try:
        fw = os.open(bridge.firmware_path, os.O_RDWR | os.O_NOCTTY)
        hs = os.open(bridge.harness_path, os.O_RDWR | os.O_NOCTTY)
        try:
            data = bytes(range(256)) * 8
            os.write(hs, data)
            assert _read(fw, len(data)) == data  # raw: no CR/LF mapping, no echo
            os.write(fw, b"\xb5\x62\x06\x00")
            assert _read(hs, 4) == b"\xb5\x62\x06\x00"
        finally:
            os.close(fw)
            os.close(hs)
    finally:
        bridge.close()
        bridge.close()


def test_rc_semantics_defaults_arm_with_throttle_low():
    rc = rc_semantics({})
    disarmed, armed = rc.channels(armed=False), rc.channels(armed=True)
    assert disarmed[2] == 1100 and armed[2] == 1500  # low to arm, middle holds altitude
    assert disarmed[4] == MODE_SWITCH_PWM[0] and rc.note == ""


def test_rc_semantics_keep_the_boot_mode_on_the_mode_switch():
    copter_parm = {"FLTMODE1": 7, "FLTMODE2": 9, "FLTMODE3": 6, "FLTMODE4": 3, "FLTMODE5": 5, "FLTMODE6": 0}
    assert rc_semantics(copter_parm).mode_pwm == MODE_SWITCH_PWM[5]  # STABILIZE, not CIRCLE
    no_boot_mode = {**copter_parm, "FLTMODE6": 6}
    rc = rc_semantics(no_boot_mode)
    assert rc.mode_pwm == MODE_SWITCH_PWM[4] and "LOITER" in rc.note
    mapped = rc_semantics({"RCMAP_THROTTLE": 1, "RCMAP_ROLL": 3, "FLTMODE_CH": 8, "FS_THR_VALUE": 1150})
    ch = mapped.channels(armed=False)
    assert mapped.throttle == 0 and ch[0] == 1160 and mapped.mode_channel == 7
    assert rc_semantics({"FLTMODE_CH": 0}).mode_channel is None


def test_calibrations_are_not_restored():
    assert not ARDUCOPTER.restorable("BARO1_GND_PRESS")
    assert not ARDUCOPTER.restorable("STAT_BOOTCNT")
    assert not ARDUCOPTER.restorable("COMPASS_DEV_ID2")
    assert ARDUCOPTER.restorable("RC_FS_TIMEOUT") and ARDUCOPTER.restorable("FS_THR_ENABLE")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_param_files_never_crash(text):
    values = parse_param_file(text)
    assert all(isinstance(v, float) for v in values.values())


FAKE_SITL = Path(__file__).with_name("fake_arducopter.py")


def _fake_exe(tmp_path: Path) -> Path:
    import sys

    exe = tmp_path / "fake-arducopter"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_SITL} \"$@\"\n")
    exe.chmod(0o755)
    return exe


def _status(board) -> tuple[int, ...]:
    status = board.run_dir / "status.txt"
    try:
        return tuple(int(x) for x in status.read_text().split())
    except (OSError, ValueError):
        return (0, 0, 0, 0)


def _wait_status(board, ok, what: str, within: float = 30.0) -> tuple[int, ...]:
    import time

    deadline = time.monotonic() + within
    counts = _status(board)
    while time.monotonic() < deadline:
        counts = _status(board)
        if ok(counts):
            return counts
        time.sleep(0.1)
    raise AssertionError(f"{what} within {within:.0f} s; the fake SITL counted {counts}")


def test_board_runs_sitl_with_its_physics_and_receivers(tmp_path, monkeypatch):
    monkeypatch.delenv("HIL_ARDUPILOT_SITL", raising=False)
    board = _rig(tmp_path, f'executable = "{_fake_exe(tmp_path)}"\ninstance = 43\n').boards[0]
    board.start()
    try:
        _wait_status(board, lambda c: c[0] >= 200 and c[1] > 0 and c[2] > 0, "200 frames, GPS and CRSF bytes")
        assert board.loop is not None and board.loop.error is None and board.loop.steps >= 200
        assert board.state == "running"
        args = (board.run_dir / "sitl.log").read_text()
        assert "--serial3=uart:/dev/pts/" in args and "harness-defaults.parm" in args
        pid = board.sitl.proc.pid
    finally:
        board.stop()
    assert board.state == "off"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sessions_fly_the_boards_running_loop_and_restart_sitl(tmp_path, monkeypatch):
    from hil.session import session_for
    from hil.sim.loop import SimConfig

    monkeypatch.delenv("HIL_ARDUPILOT_SITL", raising=False)
    board = _rig(tmp_path, f'executable = "{_fake_exe(tmp_path)}"\ninstance = 44\n').boards[0]
    try:
        with session_for(board) as session:
            assert type(session).__name__ == "ArduPilotSitlSession"
            assert session.param_snapshot["SCHED_LOOP_RATE"] == 400.0
            first_pid = board.sitl.proc.pid
            sim = session.make_sim(SimConfig(seed=3, wind_speed=2.0))
            sim.start(gated=True)  # attaches; the physics was running already
            assert sim.plant.wind.speed == 2.0 and sim.running
            _wait_status(board, lambda c: c[3] >= 2, "GCS heartbeats on simulation time")
            t0 = sim.time
            sim.schedule("gcs_loss", t0 + 0.1, None)
            sim.stop()  # the run leaves: its injection is gone, the physics runs on
            assert board.loop.running and board.loop.plant.gcs_enabled
            session.param_snapshot["BARO1_GND_PRESS"] = 2.0  # the board measured it again
        assert session.problems == []  # the board's calibration is not written back
        assert board.state == "running"
        with session_for(board):
            assert board.sitl.proc.pid != first_pid  # a fresh SITL, a fresh vehicle
    finally:
        board.stop()


def test_simulate_true_on_an_ardupilot_board_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[[board]]\nname = "fc"\ntype = "mavlink"\nurl = "tcp:127.0.0.1:5760"\nsimulate = true\n')
    board = Rig.load(path, work_dir=tmp_path / "s").boards[0]
    assert not board.simulated  # its RC override would switch an ArduPilot's modes
    assert 'type = "ardupilot-sitl"' in board.physics_refusal()
    path.write_text(path.read_text() + 'profile = "px4"\n')
    px4 = Rig.load(path, work_dir=tmp_path / "s2").boards[0]
    assert px4.simulated and px4.physics_refusal() is None
