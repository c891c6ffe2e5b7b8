"""The real-time loop's own process (hil.sim.rt_child): the shared-memory blocks and the
message stream between it and the harness, its errors reaching the harness as one line,
and the child dying with the harness."""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil import children
from hil.errors import HilError
from hil.sim import rt_child
from hil.sim.betaflight_loop import BetaflightLoopConfig, betaflight_loop
from hil.sim.rt_child import (
    CHANNELS,
    COMMAND,
    STATE,
    BlockError,
    MessageReader,
    ProcessLoop,
    command_block,
    decode_command,
    decode_state,
    encode_command,
    encode_message,
    encode_state,
    state_block,
)

_i64 = st.integers(-(2**63), 2**63 - 1)
_f64 = st.floats(allow_nan=False)
_ch = st.integers(-(2**31), 2**31 - 1)


@st.composite
def states(draw):
    return (
        draw(_i64), draw(_i64), draw(_i64), draw(_f64),
        *draw(st.lists(_f64, min_size=4 + 3 + 3 + 4 + 3, max_size=4 + 3 + 3 + 4 + 3)),
        *draw(st.lists(_ch, min_size=CHANNELS, max_size=CHANNELS)),
        draw(st.booleans()), draw(_f64), draw(st.booleans()), draw(st.booleans()),
    )


@given(states())
def test_state_round_trips(values):
    assert decode_state(encode_state(values)) == values


@given(st.lists(_ch, max_size=CHANNELS), st.lists(st.integers(0, 2**40), max_size=CHANNELS), st.booleans(), _f64)
def test_command_round_trips(channels, writes, on, target):
    got_channels, got_writes, got_on, got_target = decode_command(encode_command(channels, writes, on, target))
    assert got_channels == channels + [1500] * (CHANNELS - len(channels))
    assert got_writes == [w % 2**32 for w in writes] + [0] * (CHANNELS - len(writes))
    assert (got_on, got_target) == (on, target)


@given(st.binary(max_size=2 * STATE.size))
def test_garbage_blocks_decode_or_are_refused(data):
    for decode, size in ((decode_state, STATE.size), (decode_command, COMMAND.size)):
        if len(data) != size:
            with pytest.raises(BlockError):
                decode(data)
        else:
            decode(data)  # any bytes of the right size are some state: no crash


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(BlockError):
        encode_command([2**40], [], False, 0.0)
    with pytest.raises(BlockError):
        encode_state((1, 2))


def test_sequence_lock_gives_the_last_complete_write_only():
    buf = mmap.mmap(-1, rt_child.SHM_SIZE)
    writer, reader = state_block(buf), state_block(buf)
    assert reader.read()[0] == 0
    first = encode_state((1, 2, 3, 4.0, *[0.5] * 17, *range(CHANNELS), True, 0.25, False, True))
    writer.write(first)
    seq, payload = reader.read()
    assert payload == first and seq == 2
    # A writer caught inside the block (odd sequence word): nothing is taken.
    buf[0:8] = (3).to_bytes(8, "little")
    assert reader.read() is None
    with pytest.raises(BlockError):
        writer.write(b"short")
    # The two blocks do not overlap.
    cmd = command_block(buf)
    cmd.write(encode_command([1000] * CHANNELS, [1] * CHANNELS, True, 5.0))
    buf[0:8] = (2).to_bytes(8, "little")
    assert reader.read()[1] == first


@given(st.lists(st.tuples(st.text(max_size=20), st.integers(), st.floats(allow_nan=False)), max_size=8),
       st.integers(1, 64))
def test_messages_round_trip_however_the_stream_is_cut(messages, chunk):
    stream = b"".join(encode_message(m) for m in messages)
    reader = MessageReader()
    got = []
    for i in range(0, len(stream), chunk):
        got.extend(reader.feed(stream[i : i + chunk]))
    assert got == messages


@given(st.binary(max_size=300))
def test_garbage_messages_are_refused_not_crashed_on(data):
    reader = MessageReader()
    try:
        reader.feed(data)
    except BlockError:
        pass


def test_an_impossible_length_is_a_broken_stream():
    with pytest.raises(BlockError, match="broken"):
        MessageReader().feed((rt_child.MAX_MESSAGE + 1).to_bytes(4, "little") + b"x")


# -- the process --------------------------------------------------------------------------


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loop() -> ProcessLoop:
    """A loop process against nobody (its state packets go to a closed port)."""
    cfg = BetaflightLoopConfig(rate_hz=200.0, spin_us=0, realtime_priority=None, process=True)
    return betaflight_loop("127.0.0.1", "127.0.0.1", None, cfg, motor_port=0, state_port=_free_udp_port())


def _wait_for(what, predicate, within=10.0):
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.05)


def test_the_process_loop_keeps_the_loop_interface():
    loop = _loop()
    try:
        assert "rc_loss" in loop.supported_injections
        loop.start()
        _wait_for("the loop's time moving", lambda: loop.time > 0.3)
        loop.arm_switch(True)
        loop.set_sticks(roll=1600, throttle=1100)
        _wait_for("the sticks in the loop", lambda: loop.rc_channels[:5] == [1600, 1500, 1100, 1500, 1900])
        loop.hold_altitude(3.0)  # the pilot model flies the throttle in the child
        _wait_for("the pilot on the throttle", lambda: loop.rc_channels[2] != 1100)
        t = loop.time
        loop.schedule("rc_loss", t + 0.1, t + 0.2)
        _wait_for("the injection's events", lambda: len(loop.events) == 2)
        assert [e[1:] for e in loop.events] == [("injection_start", "rc_loss"), ("injection_stop", "rc_loss")]
        # An injection moves the arm switch in the loop; the harness's switch, written
        # again to where it was, still wins (a write counts, not a change of value).
        loop.arm_switch(False)
        _wait_for("disarmed by the switch", lambda: loop.rc_channels[4] == 1000)
        t = loop.time
        loop.schedule("arm_switch", t + 0.05, None)
        _wait_for("armed by the injection", lambda: loop.rc_channels[4] == 1900)
        loop.arm_switch(False)
        _wait_for("disarmed by the switch again", lambda: loop.rc_channels[4] == 1000)
        with pytest.raises(HilError, match="cannot act on"):
            loop.schedule("gps_spoofing", 1.0, 2.0)
        loop.plant.rc_link.configure(loss=0.0, total=True)
        _wait_for("the RC link's state", lambda: loop.plant.rc_link.total)
        loop.plant.rc_enabled = False
        assert loop.plant.rc_enabled is False
        # The link's public attributes, read in the loop's process.
        assert loop.link.rc_frames_sent == 0 and loop.link.gps_feed is None
        assert loop.link.state_port > 0
        with pytest.raises(HilError, match="no link.nonesuch"):
            _ = loop.link.nonesuch
        loop.stop()
        lines, figures = loop.report(since_s=0.1)
        assert "own process" in figures["loop_scheduler"] and lines
        assert loop.error is None
    finally:
        loop.close()
    assert loop.pid is not None and not children.running(loop.pid)


def test_a_dead_child_is_the_loops_error_not_a_hang():
    loop = _loop()
    try:
        loop.start()
        os.kill(loop.pid, signal.SIGKILL)
        _wait_for("the loop's error", lambda: loop.error is not None)
        assert "ended" in str(loop.error) and "\n" not in str(loop.error)
        with pytest.raises(HilError, match="real-time loop process"):
            loop.schedule("rc_loss", 1.0, 2.0)
    finally:
        loop.close()


def test_a_loop_that_cannot_be_built_is_one_line():
    with pytest.raises(HilError, match="could not build the loop: no real-time loop factory"):
        ProcessLoop("nonesuch", {})


def test_the_child_dies_with_the_harness(tmp_path):
    """SIGKILL the process that started the loop: its loop process does not outlive it."""
    script = textwrap.dedent(
        """
        import sys, time
        sys.path.insert(0, sys.argv[1])
        from tests.test_rt_child import _loop
        loop = _loop()
        loop.start()
        print(loop.pid, flush=True)
        time.sleep(60)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", script, root], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the harness process said {line!r}"
        child = int(line)
        assert children.running(child)
        parent.kill()
        parent.wait(10)
        _wait_for("the loop process to end with its harness", lambda: not children.running(child))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_the_bench_compares_thread_and_process_in_alternating_runs(monkeypatch):
    from hil import bench

    monkeypatch.setattr(bench, "_sitl_missing", lambda: "Betaflight SITL is not installed")
    figures = bench.realtime_compare(seconds=1.0, runs=2, harness_load=True)
    names = [f.name for f in figures]
    assert len(figures) == 6 and len(set(names)) == 6
    assert sum("own process" in n for n in names) == 3 and all("harness loaded" in n for n in names)
    assert all(not f.runs and f.passed is None for f in figures)
