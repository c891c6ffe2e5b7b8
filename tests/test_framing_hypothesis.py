"""FrameReader, fuzzed: valid MAVLink frames come out whole and in order whatever noise
surrounds them and however the stream is cut into reads; arbitrary bytes never raise,
they are counted as noise.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hil.mavlink.dialect import mavlink, new_codec
from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, FrameReader

STALL_S = 0.05
F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
U8 = st.integers(0, 255)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)

MESSAGES = st.one_of(
    st.builds(mavlink.MAVLink_heartbeat_message, U8, U8, U8, U32, U8, U8),
    st.builds(
        mavlink.MAVLink_statustext_message,
        st.integers(0, 7),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=50).map(str.encode),
        U16,
        U8,
    ),
    st.builds(
        mavlink.MAVLink_global_position_int_message,
        U32,
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**15), 2**15 - 1),
        st.integers(-(2**15), 2**15 - 1),
        st.integers(-(2**15), 2**15 - 1),
        U16,
    ),
    st.builds(mavlink.MAVLink_timesync_message, st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1)),
    # The hot path: decoded by HotCodec, not pymavlink.
    st.builds(
        mavlink.MAVLink_hil_actuator_controls_message,
        st.integers(0, 2**64 - 1),
        st.lists(F32, min_size=16, max_size=16),
        U8,
        st.integers(0, 2**64 - 1),
    ),
)


def _frame(msg: Any, seq: int) -> bytes:
    codec = new_codec(1, 1)
    codec.seq = seq & 0xFF
    return bytes(msg.pack(codec))


def _fields(msg: Any) -> dict[str, Any]:
    out = msg.to_dict()
    out.pop("mavpackettype", None)
    return {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in out.items()}


def _reader() -> FrameReader:
    return FrameReader(new_codec(255, 190), hot=(HIL_ACTUATOR_CONTROLS,), stall_s=STALL_S)


def _read_all(reader: FrameReader, stream: bytes, cuts: list[int]) -> list[Any]:
    """Feed `stream` in pieces cut at `cuts`, then let the stall timer give up on leftovers."""
    out: list[Any] = []
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        out += reader.feed(stream[a:b], 0.0)
    now = 0.0
    while reader.buf:
        now += 2 * STALL_S
        before = len(reader.buf)
        out += reader.poll(now)
        assert len(reader.buf) < before or not reader.buf, "the reader stopped making progress"
    return out


NOISE = st.binary(max_size=40)
#: Noise that cannot start a frame: every such byte is skipped at once.
QUIET_NOISE = NOISE.map(lambda b: bytes(x for x in b if x not in (0xFD, 0xFE)))


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(MESSAGES, min_size=1, max_size=8),
    noise=st.lists(QUIET_NOISE, min_size=9, max_size=9),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_frames_between_noise_come_out_whole_and_in_order(messages, noise, cuts):
    frames = [_frame(m, i) for i, m in enumerate(messages)]
    stream = noise[0] + b"".join(f + n for f, n in zip(frames, noise[1:], strict=False))
    reader = _reader()
    got = _read_all(reader, stream, cuts)
    assert [m.get_type() for m in got] == [m.get_type() for m in messages]
    assert [_fields(m) for m in got] == [_fields(m) for m in messages]
    assert reader.bad_bytes == len(stream) - sum(len(f) for f in frames)


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(MESSAGES, min_size=1, max_size=6),
    noise=st.lists(NOISE, min_size=7, max_size=7),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_a_stray_start_byte_in_the_noise_costs_no_valid_frame(messages, noise, cuts):
    frames = [_frame(m, i) for i, m in enumerate(messages)]
    stream = noise[0] + b"".join(f + n for f, n in zip(frames, noise[1:], strict=False))
    got = _read_all(_reader(), stream, cuts)
    # Noise may, at odds of 2^-16 per candidate, hold a frame of its own; the valid ones
    # all come out, in order.
    wanted = iter(_fields(m) for m in got)
    for msg in messages:
        assert _fields(msg) in wanted, f"{msg.get_type()} was lost"


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_arbitrary_bytes_never_raise_and_are_counted(data, cuts):
    reader = _reader()
    got = _read_all(reader, data, cuts)
    for msg in got:
        assert msg.get_type()  # a message, not an exception or a half-decoded object
    assert reader.bad_bytes <= len(data)


@settings(max_examples=200, deadline=None)
@given(message=MESSAGES, flip=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_corrupted_frame_is_dropped_and_the_next_one_survives(message, flip, bit):
    frame = bytearray(_frame(message, 0))
    i = 1 + flip % (len(frame) - 1)  # any byte after the start byte
    frame[i] ^= 1 << bit
    follower = mavlink.MAVLink_heartbeat_message(2, 3, 81, 5, 3, 3)
    stream = bytes(frame) + _frame(follower, 1)
    reader = _reader()
    got = _read_all(reader, stream, [])
    # CRC-16 catches every single-bit error, wherever it lands (length, flags, payload, CRC).
    assert [(m.get_type(), _fields(m)) for m in got] == [("HEARTBEAT", _fields(follower))]
    assert reader.bad_bytes == len(frame)
