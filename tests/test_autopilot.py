"""The MAVLink adapter against the virtual board, through the plugin's fixtures."""

from __future__ import annotations

import os
import signal
import time

import pytest

from hil.errors import BoardNotAnswering, CommandRefused, ParamError, WaitTimeout
from hil.session import BoardSession


def test_identify_names_the_autopilot_and_board(autopilot):
    ident = autopilot.identify()
    assert ident.autopilot == "ArduPilot"
    assert ident.board_id == 7701
    assert ident.firmware_version == "1.0.0"
    assert (ident.usb_vid, ident.usb_pid) == (0x1209, 0x5741)


def test_parameter_set_is_read_back(autopilot):
    autopilot.set_param("FS_GCS_TIMEOUT", 7.5)
    assert autopilot.get_param("FS_GCS_TIMEOUT") == pytest.approx(7.5)


def test_restore_puts_back_changed_parameters(autopilot):
    before = autopilot.fetch_params()
    autopilot.set_param("FS_THR_ENABLE", 3)
    assert autopilot.restore_params(before) == ["FS_THR_ENABLE"]
    assert autopilot.get_param("FS_THR_ENABLE") == before["FS_THR_ENABLE"]


def test_unknown_parameter_is_a_clear_error(autopilot):
    with pytest.raises(ParamError, match="NOT_A_PARAM"):
        autopilot.set_param("NOT_A_PARAM", 1.0, timeout=0.5)


def test_rejected_parameter_value_names_the_value_kept(autopilot):
    with pytest.raises(ParamError, match="kept FS_THR_ENABLE"):
        autopilot.set_param("FS_THR_ENABLE", 99)


def test_arming_without_a_position_is_refused_with_the_reason(autopilot):
    with pytest.raises(CommandRefused, match=r"\(FAILED\): Arm: "):
        autopilot.arm()
    assert autopilot.armed is False


def test_wait_mode_timeout_says_what_was_awaited_and_seen(autopilot, sim):
    with pytest.raises(WaitTimeout) as err:
        autopilot.wait_mode("RTL", within=1.0)
    text = str(err.value)
    assert "mode RTL" in text and "1.00 s of vehicle time" in text
    assert "STABILIZE" in text


def test_wait_and_maintain_holds_on_the_ground(autopilot, sim):
    t = autopilot.wait_and_maintain(
        "altitude below 1 m",
        lambda m: m.relative_alt * 1e-3 if m.get_type() == "GLOBAL_POSITION_INT" else None,
        lambda alt: alt < 1.0,
        hold=2.0,
        within=2.0,
    )
    assert t >= 2.0


def test_wait_and_maintain_fails_when_the_condition_never_holds(autopilot, sim):
    with pytest.raises(WaitTimeout, match="altitude above 50 m"):
        autopilot.wait_and_maintain(
            "altitude above 50 m",
            lambda m: m.relative_alt * 1e-3 if m.get_type() == "GLOBAL_POSITION_INT" else None,
            lambda alt: alt > 50.0,
            hold=1.0,
            within=2.0,
        )


def test_hooks_see_every_actuator_message(autopilot, sim):
    seen = []
    autopilot.add_hook(lambda m: seen.append(m.time_usec) if m.get_type() == "HIL_ACTUATOR_CONTROLS" else None)
    target = autopilot.vehicle_time + 2.0
    autopilot.wait_for("2 s", lambda m: autopilot.vehicle_time >= target, within=3.0)
    sim.stop()
    assert len(seen) > 700
    steps = {b - a for a, b in zip(seen, seen[1:], strict=False)}
    assert steps == {sim.dt_us}, "a message was dropped or duplicated"


def test_a_board_that_stops_answering_fails_fast_without_hanging(board):
    session = BoardSession(board)
    session.__enter__()
    try:
        loop = session.make_sim()
        loop.start()
        autopilot = session.autopilot
        autopilot.wait_for("1 s of flight time", lambda m: autopilot.vehicle_time > 1.0, within=5.0)
        os.kill(board._process.pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(BoardNotAnswering) as err:
            autopilot.wait_mode("RTL", within=60.0)
        assert time.monotonic() - start < 10.0
        assert "HIL_ACTUATOR_CONTROLS" in str(err.value)
    finally:
        os.kill(board._process.pid, signal.SIGKILL)
        problems = session.cleanup()
        board.stop()
    assert any("stopped answering" in p for p in problems)


def test_restore_leaves_the_boards_own_calibrations_alone(autopilot):
    from dataclasses import replace

    before = autopilot.fetch_params()
    autopilot.profile = replace(autopilot.profile, unrestorable=("FS_THR_*",))
    autopilot.set_param("FS_THR_ENABLE", 3)
    try:
        assert autopilot.restore_params(before) == []  # as BARO1_GND_PRESS on ArduPilot
        assert autopilot.get_param("FS_THR_ENABLE") == 3
    finally:
        autopilot.set_param("FS_THR_ENABLE", before["FS_THR_ENABLE"])


def test_streams_are_requested_one_message_at_a_time(autopilot):
    sent = []
    real_command = autopilot.command

    def command(cmd, *params, **kw):
        sent.append((cmd, params[:2]))
        return real_command(cmd, *params, **kw)

    autopilot.command = command
    problems = autopilot.request_streams(timeout=1.0)
    from hil.mavlink.dialect import mavlink

    asked = {p[0] for c, p in sent if c == mavlink.MAV_CMD_SET_MESSAGE_INTERVAL}
    assert mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT in asked and mavlink.MAVLINK_MSG_ID_SYSTEM_TIME in asked
    assert len(asked) == len(autopilot.profile.telemetry_streams)
    assert isinstance(problems, list)  # refusals are reported, not raised


def _dropping_list_requests(autopilot, monkeypatch, drop: int) -> list[str]:
    """Outgoing PARAM_REQUEST_LISTs: the first `drop` never reach the board, as when a
    firmware still booting ignores them (ArduCopter's params_ready)."""
    sent: list[str] = []
    real_send = autopilot.conn.send

    def send(msg):
        kind = msg.get_type()
        sent.append(kind)
        if kind == "PARAM_REQUEST_LIST" and sent.count(kind) <= drop:
            return None
        return real_send(msg)

    monkeypatch.setattr(autopilot.conn, "send", send)
    return sent


def test_a_parameter_list_request_lost_while_the_board_boots_is_asked_again(autopilot, monkeypatch):
    sent = _dropping_list_requests(autopilot, monkeypatch, drop=1)
    params = autopilot.fetch_params(timeout=15.0)
    assert sent.count("PARAM_REQUEST_LIST") == 2
    assert "FS_THR_ENABLE" in params and len(params) > 50


def test_a_parameter_list_that_never_comes_is_a_bounded_wait_naming_what_came(autopilot, monkeypatch):
    sent = _dropping_list_requests(autopilot, monkeypatch, drop=1000)
    with pytest.raises(WaitTimeout, match="got none, asked for the list 3 time"):
        autopilot.fetch_params(timeout=5.0)
    assert sent.count("PARAM_REQUEST_LIST") == 3
