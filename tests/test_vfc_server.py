"""The virtual board as a user sees it: a real process, a real pty, MAVLink 2 on the wire."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.errors import BoardNotAnswering
from hil.links import registry
from hil.mavlink.dialect import (
    GCS_COMPONENT_ID,
    GCS_SYSTEM_ID,
    SIM_COMPONENT_ID,
    VFC_COMPONENT_ID,
    VFC_SYSTEM_ID,
    VFC_USB_PID,
    VFC_USB_VID,
    mavlink,
    new_codec,
)
from hil.timeout import Deadline
from hil.vfc.process import VirtualBoardProcess

M = mavlink
SERIAL = "HILVFCTEST01"
ALL_SENSORS = 0x1FFF


class Link:
    """A ground station + simulator on the board's port: pyserial and pymavlink only."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.serial = serial.Serial(port, timeout=0.05)
        self.gcs = new_codec(GCS_SYSTEM_ID, GCS_COMPONENT_ID)
        self.sim = new_codec(GCS_SYSTEM_ID, SIM_COMPONENT_ID)
        self.parser = new_codec(GCS_SYSTEM_ID, GCS_COMPONENT_ID)
        self.pending: list[Any] = []

    def close(self) -> None:
        self.serial.close()

    def send(self, msg: Any, *, as_sim: bool = False) -> None:
        codec = self.sim if as_sim else self.gcs
        self.serial.write(msg.pack(codec))
        codec.seq = (codec.seq + 1) % 256

    def read(self) -> list[Any]:
        data = self.serial.read(1)  # waits up to the port timeout for the first byte
        data += self.serial.read(self.serial.in_waiting)
        msgs = self.pending + [
            m for m in (self.parser.parse_buffer(data) or []) if m.get_type() != "BAD_DATA"
        ]
        self.pending = []
        return msgs

    def expect(
        self, mtype: str, cond: Callable[[Any], bool] = lambda m: True, timeout: float = 3.0
    ) -> Any:
        """The first `mtype` message meeting `cond`; fails showing what arrived instead."""
        deadline = Deadline(timeout)
        seen: list[str] = []
        while not deadline.expired:
            msgs = self.read()
            for i, m in enumerate(msgs):
                if m.get_type() == mtype and cond(m):
                    self.pending = msgs[i + 1 :]
                    return m
                seen.append(m.get_type())
        pytest.fail(f"no {mtype} on {self.port} within {timeout} s; saw {seen[-30:]}")

    def command(self, command: int, *params: float) -> Any:
        p = list(params) + [0.0] * (7 - len(params))
        self.send(self.gcs.command_long_encode(VFC_SYSTEM_ID, VFC_COMPONENT_ID, command, 0, *p))
        return self.expect("COMMAND_ACK", lambda m: m.command == command)

    def step(self, t_us: int) -> tuple[Any, list[Any]]:
        """One lockstep step: HIL_SENSOR out, the matching HIL_ACTUATOR_CONTROLS back."""
        self.send(
            self.sim.hil_sensor_encode(
                t_us, 0, 0, -9.80665, 0, 0, 0, 0.2, 0.0, 0.4, 1013.25, 0, 0, 20.0, ALL_SENSORS
            ),
            as_sim=True,
        )
        others: list[Any] = []
        deadline = Deadline(2.0)
        while not deadline.expired:
            msgs = self.read()
            for i, m in enumerate(msgs):
                if m.get_type() == "HIL_ACTUATOR_CONTROLS" and m.time_usec == t_us:
                    self.pending = msgs[i + 1 :]
                    return m, others
                others.append(m)
        pytest.fail(f"no HIL_ACTUATOR_CONTROLS for time_usec {t_us}")

    def param(self, name: str) -> Any:
        self.send(
            self.gcs.param_request_read_encode(VFC_SYSTEM_ID, VFC_COMPONENT_ID, name.encode(), -1)
        )
        return self.expect("PARAM_VALUE", lambda m: m.param_id == name)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    proc = VirtualBoardProcess(SERIAL, tmp_path / "flash.bin", tmp_path / "registry")
    try:
        proc.start(timeout=10.0)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def link(board: VirtualBoardProcess) -> Iterator[Link]:
    lk = Link(board.port)
    try:
        yield lk
    finally:
        lk.close()


def test_heartbeat_identifies_an_ardupilot_quadrotor(link: Link) -> None:
    hb = link.expect("HEARTBEAT")
    assert hb.get_srcSystem() == VFC_SYSTEM_ID and hb.get_srcComponent() == VFC_COMPONENT_ID
    assert hb.type == M.MAV_TYPE_QUADROTOR
    assert hb.autopilot == M.MAV_AUTOPILOT_ARDUPILOTMEGA
    assert hb.base_mode & M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
    assert not hb.base_mode & M.MAV_MODE_FLAG_SAFETY_ARMED


def test_param_request_list_returns_every_parameter_with_its_count(link: Link) -> None:
    link.send(link.gcs.param_request_list_encode(VFC_SYSTEM_ID, VFC_COMPONENT_ID))
    first = link.expect("PARAM_VALUE")
    received = {first.param_index: first}
    deadline = Deadline(3.0)
    while len(received) < first.param_count and not deadline.expired:
        for m in link.read():
            if m.get_type() == "PARAM_VALUE":
                received[m.param_index] = m
    assert sorted(received) == list(range(first.param_count))
    assert {m.param_count for m in received.values()} == {first.param_count}
    assert "SCHED_LOOP_RATE" in {m.param_id for m in received.values()}


def test_param_set_persists_across_reboot_on_a_new_port(
    board: VirtualBoardProcess, link: Link
) -> None:
    link.send(
        link.gcs.param_set_encode(
            VFC_SYSTEM_ID, VFC_COMPONENT_ID, b"RTL_ALT", 2500.0, M.MAV_PARAM_TYPE_REAL32
        )
    )
    assert link.expect("PARAM_VALUE", lambda m: m.param_id == "RTL_ALT").param_value == 2500.0
    old_port = link.port
    ack = link.command(M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, 1)
    assert ack.result == M.MAV_RESULT_ACCEPTED
    link.close()
    new_port = board.wait_port_change(old_port, timeout=5.0)
    assert new_port != old_port
    assert registry.find_entry(board.registry_dir, SERIAL)["usb_serial"] == SERIAL
    again = Link(new_port)
    try:
        assert again.param("RTL_ALT").param_value == 2500.0
    finally:
        again.close()


def test_out_of_range_param_set_is_refused_and_the_value_kept(link: Link) -> None:
    before = link.param("ANGLE_MAX").param_value
    link.send(
        link.gcs.param_set_encode(
            VFC_SYSTEM_ID, VFC_COMPONENT_ID, b"ANGLE_MAX", 99999.0, M.MAV_PARAM_TYPE_REAL32
        )
    )
    answer = link.expect("PARAM_VALUE", lambda m: m.param_id == "ANGLE_MAX")
    assert answer.param_value == before
    text = link.expect("STATUSTEXT", lambda m: "ANGLE_MAX" in m.text)
    assert "range" in text.text


def test_arming_without_sensors_is_refused_with_a_prearm_statustext(link: Link) -> None:
    ack = link.command(M.MAV_CMD_COMPONENT_ARM_DISARM, 1)
    assert ack.result in (
        M.MAV_RESULT_FAILED,
        M.MAV_RESULT_DENIED,
        M.MAV_RESULT_TEMPORARILY_REJECTED,
    )
    link.expect("STATUSTEXT", lambda m: m.text.startswith("Arm: "))  # AP_Arming::check_failed while arming


def test_hil_sensor_is_answered_in_lockstep_and_sets_the_board_clock(link: Link) -> None:
    others: list[Any] = []
    for k in range(1, 401):  # one board second at 400 Hz
        reply, seen = link.step(k * 2500)
        assert reply.flags & 1 and len(reply.controls) == 16
        others += seen
    others += link.read()
    stamps = [m.time_boot_ms for m in others if m.get_type() in ("SYSTEM_TIME", "ATTITUDE")]
    assert stamps and max(stamps) <= 1000
    assert max(stamps) >= 900  # the clock followed the sensor time
    assert stamps == sorted(stamps)


def test_timesync_is_answered_with_the_board_time(link: Link) -> None:
    link.step(1_234_000)
    link.send(link.gcs.timesync_encode(0, 777))
    reply = link.expect("TIMESYNC", lambda m: m.ts1 == 777)
    assert reply.tc1 == 1_234_000_000


def _attitude_per_board_second(link: Link, start_us: int) -> int:
    count = 0
    for k in range(1, 401):
        _, seen = link.step(start_us + k * 2500)
        count += sum(1 for m in seen if m.get_type() == "ATTITUDE")
    return count


def test_set_message_interval_changes_a_stream_rate(link: Link) -> None:
    link.step(2500)
    assert _attitude_per_board_second(link, 2500) in (9, 10, 11)
    ack = link.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_ATTITUDE, 20_000)
    assert ack.result == M.MAV_RESULT_ACCEPTED
    assert _attitude_per_board_second(link, 1_002_500) in (49, 50, 51)
    link.command(M.MAV_CMD_SET_MESSAGE_INTERVAL, M.MAVLINK_MSG_ID_ATTITUDE, -1)
    assert _attitude_per_board_second(link, 2_002_500) == 0


def test_autopilot_version_carries_vendor_product_and_board_id(link: Link) -> None:
    ack = link.command(M.MAV_CMD_REQUEST_MESSAGE, M.MAVLINK_MSG_ID_AUTOPILOT_VERSION)
    assert ack.result == M.MAV_RESULT_ACCEPTED
    version = link.expect("AUTOPILOT_VERSION")
    assert (version.vendor_id, version.product_id) == (VFC_USB_VID, VFC_USB_PID)
    assert version.board_version >> 16 == 7701
    assert version.flight_sw_version == (1 << 24) | 255
    assert version.capabilities & M.MAV_PROTOCOL_CAPABILITY_MAVLINK2
    assert version.uid != 0


def test_reboot_to_bootloader_is_unsupported_for_now(
    board: VirtualBoardProcess, link: Link
) -> None:
    port = board.port
    ack = link.command(M.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, 3)
    assert ack.result == M.MAV_RESULT_UNSUPPORTED
    link.expect("STATUSTEXT", lambda m: "bootloader" in m.text.lower())
    time.sleep(0.3)
    assert board.port == port


def test_unknown_command_is_unsupported(link: Link) -> None:
    assert link.command(31999).result == M.MAV_RESULT_UNSUPPORTED


def test_hil_sensor_with_nan_fields_is_ignored(link: Link) -> None:
    link.send(
        link.sim.hil_sensor_encode(
            5000, float("nan"), 0, -9.8, 0, 0, 0, 0, 0, 0, 1013, 0, 0, 20, 0x3F
        ),
        as_sim=True,
    )
    reply, _ = link.step(7500)  # the next good sample is still answered
    assert reply.time_usec == 7500


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(garbage=st.binary(min_size=1, max_size=400), marker=st.integers(1, 2**62))
def test_garbage_bytes_then_a_valid_request_still_get_an_answer(
    link: Link, garbage: bytes, marker: int
) -> None:
    link.serial.write(garbage)
    link.send(link.gcs.timesync_encode(0, marker))
    link.expect("TIMESYNC", lambda m: m.ts1 == marker, timeout=2.0)


def test_stopping_exits_cleanly_and_removes_the_registry_entry(board: VirtualBoardProcess) -> None:
    assert registry.find_entry(board.registry_dir, SERIAL) is not None
    assert board.stop(timeout=5.0) == 0
    assert not board.alive
    assert not (board.registry_dir / f"{SERIAL}.json").exists()
    assert board.stop() == 0  # idempotent


def test_a_second_board_with_the_same_serial_refuses_to_start(
    board: VirtualBoardProcess, tmp_path: Path
) -> None:
    twin = VirtualBoardProcess(SERIAL, tmp_path / "twin.bin", board.registry_dir)
    with pytest.raises(BoardNotAnswering, match=SERIAL) as failure:
        twin.start(timeout=5.0)
    assert "exited with code 2" in str(failure.value)
    assert (
        board.alive and registry.find_entry(board.registry_dir, SERIAL)["process_id"] == board.pid
    )


def test_a_mode_change_is_acknowledged_and_announced_by_a_heartbeat(link: Link) -> None:
    alt_hold = 2
    ack = link.command(M.MAV_CMD_DO_SET_MODE, M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, alt_hold)
    assert ack.result == M.MAV_RESULT_ACCEPTED
    link.expect("HEARTBEAT", lambda m: m.custom_mode == alt_hold, timeout=0.3)
