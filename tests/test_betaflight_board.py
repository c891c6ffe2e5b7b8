"""Betaflight SITL as a board, through the public API: rig, session, loop, scenarios.

The firmware is Betaflight 4.6 built from source (the `betaflight` extra). These tests
fly it in real time, so they assert behaviour (armed, levelled, failsafe caught), never
wall-clock performance.
"""

from __future__ import annotations

import calendar
import json
import math
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.rig import Rig
from hil.scenario.load import load_scenario
from hil.scenario.runner import run_scenario
from hil.session import MspBoardSession, session_for
from hil.sim.betaflight_link import STAMP_QUANTUM_S, BetaflightUdpLink
from tests.sitl_support import require_sitl

MSP_SET_RTC, MSP_RTC = 246, 247  # Betaflight msp_protocol.h

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "fixtures" / "betaflight-sitl.toml"
DROP = ROOT / "scenarios" / "bf_rc_loss_drop.toml"
GLITCH = ROOT / "scenarios" / "rc_glitch_no_failsafe.toml"


@pytest.fixture(scope="module")
def bf_rig(tmp_path_factory):
    require_sitl()
    rig = Rig.load(RIG, work_dir=tmp_path_factory.mktemp("bf-rig"))
    yield rig
    rig.stop()


@pytest.fixture
def bf_session(bf_rig):
    board = bf_rig.select(None)
    session = session_for(board)
    assert isinstance(session, MspBoardSession)
    session.__enter__()
    yield session
    session.cleanup()


def _wait(what, predicate, within):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {within} s")


def test_the_board_identifies_and_reports_its_failsafe_settings(bf_session):
    ident = bf_session.autopilot.identify()
    assert (ident.variant, ident.firmware, ident.board) == ("BTFL", "4.6.0", "SITL")
    facts = bf_session.board_facts()
    assert facts["failsafe_delay"] == pytest.approx(1.5)  # the firmware's default, read from it


def test_hover_in_angle_mode_and_fly_stick_inputs(bf_session):
    ap = bf_session.autopilot
    loop = bf_session.start_loop()  # armable but for the switch
    bf_session.arm(loop, within=10.0)
    ap.wait_armed(within=5.0)
    loop.hold_altitude(3.0)
    _wait("climb to 2.5 m", lambda: loop.altitude > 2.5, 15.0)
    assert "ANGLE" in ap.status().mode_names
    loop.set_sticks(roll=1650)
    _wait("a right roll from the right stick", lambda: math.degrees(loop.vehicle.euler()[0]) > 3.0, 10.0)
    loop.set_sticks(pitch=1650)
    _wait("nose down from the forward stick", lambda: math.degrees(loop.vehicle.euler()[1]) < -3.0, 10.0)
    loop.set_sticks()
    _wait("level again with sticks centred", lambda: max(abs(a) for a in loop.vehicle.euler()[:2]) < math.radians(1.0), 10.0)
    loop.hold_altitude(0.0)
    _wait("touchdown", lambda: loop.altitude < 0.05, 20.0)
    loop.hold_altitude(None)
    loop.arm_switch(False)
    ap.wait_disarmed(within=5.0)
    timing = loop.timing(since_s=1.0)
    assert timing.sent > 0 and timing.motor_packets > 0
    assert timing.scheduler.startswith("SCHED_")


def test_arming_flips_a_latched_switch_off_and_on_like_a_pilot(bf_session):
    ap = bf_session.autopilot
    loop = bf_session.start_loop()
    loop.set_sticks(throttle=1600)  # throttle up: the firmware refuses to arm...
    loop.arm_switch(True)  # ...and latches ARM_SWITCH because the switch went on meanwhile
    _wait("THROTTLE and ARM_SWITCH", lambda: {"THROTTLE", "ARM_SWITCH"} <= set(ap.status().arming_disable_names), 5.0)
    loop.set_sticks(throttle=1000)
    _wait("THROTTLE cleared", lambda: "THROTTLE" not in ap.status().arming_disable_names, 5.0)
    status = ap.status()
    assert not status.armed and "ARM_SWITCH" in status.arming_disable_names  # still latched
    bf_session.arm(loop, within=10.0)
    assert ap.status().armed
    assert any("flipped off and on" in n for n in bf_session.notes)
    loop.arm_switch(False)
    ap.wait_disarmed(within=5.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=2, max_size=200))
def test_state_stamps_never_step_inside_the_sitls_clock_rate_window(gaps_ns):
    """The SITL resets its clock rate from any stamp step above 0 and below 20 ms: our
    stamps step by 0 or by at least 31.25 ms, however irregularly packets are sent."""
    fake = SimpleNamespace(clock_offset_s=12.5, _started_ns=1_000_000_000)
    now = fake._started_ns
    stamps = []
    for gap in gaps_ns:
        now += gap
        stamps.append(BetaflightUdpLink.stamp(fake, now))
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(step == 0 or step >= STAMP_QUANTUM_S for step in steps)
    assert stamps[-1] <= 12.5 + (now - fake._started_ns) * 1e-9 < stamps[-1] + STAMP_QUANTUM_S


def test_the_firmware_clock_keeps_the_hosts_pace(bf_session):
    """MSP_SET_RTC, fly the loop, MSP_RTC: the firmware's clock against the host's."""
    ap = bf_session.autopilot
    bf_session.start_loop()

    def firmware_ms() -> float:
        y, mo, d, h, mi, sec, ms = struct.unpack("<HBBBBBH", ap.request(MSP_RTC))
        return calendar.timegm((y, mo, d, h, mi, sec)) * 1000.0 + ms

    ap.request(MSP_SET_RTC, struct.pack("<IH", 1_700_000_000, 0))
    host0, fw0 = time.monotonic(), firmware_ms()
    time.sleep(8.0)
    host, fw = time.monotonic() - host0, (firmware_ms() - fw0) / 1000.0
    # Before the stamps were quantised a loaded host pushed it ~5 % ahead in 20 s.
    assert fw == pytest.approx(host, abs=0.2), f"firmware clock {fw:.3f} s over {host:.3f} s of the host's"


def test_a_failsafe_delay_raised_beyond_the_limit_is_caught(bf_rig):
    board = bf_rig.select(None)
    with session_for(board) as session:
        # A broken field configuration: 20 s of stage 1. Betaflight takes failsafe timings
        # at boot, so it is saved (the firmware restarts and the adapter reconnects).
        session.autopilot.set("failsafe_delay", 200)
        session.autopilot.save()
        assert session.board_facts()["failsafe_delay"] == pytest.approx(20.0)
        result = run_scenario(load_scenario(DROP), session)
    assert not result.passed
    text = result.failure_text()
    assert "disarm within 3.00 s" in text and "still armed" in text
    # The changed setting does not leak into the next session.
    with session_for(board) as session:
        assert session.board_facts()["failsafe_delay"] == pytest.approx(1.5)


def test_hil_run_on_the_betaflight_rig_prints_loop_timing(tmp_path):
    require_sitl()
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "run", "--rig", str(RIG), "--report", str(report),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "bf-rc-loss-drop" in proc.stdout and "PASS" in proc.stdout
    assert "state sent at" in proc.stdout and "SCHED_" in proc.stdout
    summary = json.loads((report / "summary.json").read_text())
    ran = {s["name"]: s for s in summary["scenarios"]}
    # The MSP scenarios and the ones shared with MAVLink boards ran; MAVLink-only ones skipped.
    assert {"bf-rc-loss-drop", "rc-glitch-no-failsafe", "rc-jammed-bursts-no-failsafe"} <= set(ran)
    assert "rc-loss-rtl" not in ran
    assert all(s["passed"] for s in ran.values()), [s["error"] for s in ran.values()]
    drop = ran["bf-rc-loss-drop"]
    assert drop["measurements"]["motor_rate_hz"] > 0
    assert "GYRO" in drop["measurements"]["tasks"]
    # Stage 2 came no sooner than the board's failsafe_delay (1.5 s) less the 0.2 s margin.
    disarm_t = min(e["t"] for e in drop["expectations"] if e["kind"] == "disarmed")
    assert disarm_t - 2.0 >= 1.3
