"""ArduPilot SITL JSON physics codec: servo packets, state lines, frame bookkeeping."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import ardupilot_json as aj
from hil.codecs.ardupilot_json import (
    ArduPilotJsonError,
    FrameKind,
    FrameTracker,
    JsonState,
    ServoPacket,
    decode_servo_packet,
    decode_state_line,
    encode_servo_packet,
    encode_state_line,
)

_PROPS = settings(max_examples=200, deadline=None)

_u16 = st.integers(0, 0xFFFF)
_packets = st.builds(
    ServoPacket,
    _u16,
    st.integers(0, 0xFFFFFFFF),
    st.one_of(
        st.lists(_u16, min_size=16, max_size=16), st.lists(_u16, min_size=32, max_size=32)
    ).map(tuple),
)

_f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
_f64 = st.floats(allow_nan=False, allow_infinity=False)
_v3 = st.tuples(_f32, _f32, _f32)
_states = st.builds(
    JsonState,
    timestamp_s=_f64,
    gyro=_v3,
    accel_body=_v3,
    position=st.tuples(_f64, _f64, _f64),
    velocity=_v3,
    attitude=_v3,
    quaternion=st.none() | st.tuples(_f32, _f32, _f32, _f32),
    rng=st.lists(st.none() | _f32, max_size=6).map(tuple),
    windvane=st.none() | st.tuples(_f32, _f32),
    airspeed=st.none() | _f32,
    velocity_wind=st.none() | _v3,
    rc=st.lists(st.integers(800, 2200).map(float), max_size=12).map(tuple),
    battery=st.none() | st.tuples(_f32, _f32),
    no_time_sync=st.booleans(),
)


def _hover(**kw: object) -> JsonState:
    base: dict[str, object] = dict(
        timestamp_s=12.5,
        gyro=(0.0, 0.0, 0.0),
        accel_body=(0.0, 0.0, -9.80665),
        position=(0.0, 0.0, -10.0),
        velocity=(0.0, 0.0, 0.0),
        attitude=(0.0, 0.0, 0.0),
    )
    base.update(kw)
    return JsonState(**base)  # type: ignore[arg-type]


# --- servo packet ---------------------------------------------------------------------


def test_packet_sizes_follow_sim_json_h_layout() -> None:
    # u16 magic, u16 frame_rate, u32 frame_count, u16 pwm[N], packed, little-endian.
    assert aj.PACKET_LEN == {18458: 40, 29569: 72}
    assert struct.calcsize("<HHI16H") == 40 and struct.calcsize("<HHI32H") == 72


def test_sixteen_channel_packet_layout_by_hand() -> None:
    pwm = (1000, 1100) + (1500,) * 14
    data = encode_servo_packet(ServoPacket(400, 0x01020304, pwm))
    assert data[:8] == bytes.fromhex("1a48 9001 04030201")  # 18458, 400, frame 0x01020304
    assert data[8:12] == bytes.fromhex("e803 4c04")  # 1000, 1100 us
    assert len(data) == 40


def test_magic_follows_the_channel_count() -> None:
    assert ServoPacket(400, 1, (1500,) * 16).magic == aj.MAGIC_16 == 18458
    assert ServoPacket(400, 1, (1500,) * 32).magic == aj.MAGIC_32 == 29569


@_PROPS
@given(_packets)
def test_decode_inverts_encode_for_both_magics(packet: ServoPacket) -> None:
    assert decode_servo_packet(encode_servo_packet(packet)) == packet


@_PROPS
@given(st.binary(max_size=100))
def test_random_bytes_raise_only_the_codec_error(data: bytes) -> None:
    try:
        packet = decode_servo_packet(data)
    except ArduPilotJsonError:
        return
    assert encode_servo_packet(packet) == data


def test_unknown_magic_is_named() -> None:
    data = struct.pack("<HHI16H", 0x1234, 400, 1, *([1500] * 16))
    with pytest.raises(ArduPilotJsonError, match=r"magic 4660 \(0x1234\) is neither 18458.*29569"):
        decode_servo_packet(data)


def test_magic_and_length_must_agree() -> None:
    data16 = encode_servo_packet(ServoPacket(400, 1, (1500,) * 16))
    data32 = encode_servo_packet(ServoPacket(400, 1, (1500,) * 32))
    with pytest.raises(
        ArduPilotJsonError, match="magic 18458 must be 40 bytes .16 channels., got 72"
    ):
        decode_servo_packet(data16[:8] + data32[8:])
    with pytest.raises(
        ArduPilotJsonError, match="magic 29569 must be 72 bytes .32 channels., got 40"
    ):
        decode_servo_packet(data32[:8] + data16[8:])


def test_short_packet_is_rejected() -> None:
    with pytest.raises(ArduPilotJsonError, match="shorter than its 8-byte header"):
        decode_servo_packet(b"\x1a\x48\x90")


def test_packet_refuses_values_its_fields_cannot_hold() -> None:
    with pytest.raises(ArduPilotJsonError, match="16 or 32"):
        ServoPacket(400, 1, (1500,) * 8)
    with pytest.raises(ArduPilotJsonError, match="u32"):
        ServoPacket(400, 2**32, (1500,) * 16)
    with pytest.raises(ArduPilotJsonError, match="u16"):
        ServoPacket(400, 1, (70000,) + (1500,) * 15)


def test_step_comes_from_frame_rate() -> None:
    assert ServoPacket(400, 0, (0,) * 16).step_s == 1 / 400
    assert ServoPacket(0, 0, (0,) * 16).step_s is None


def test_ports_step_by_ten_per_instance() -> None:
    assert [aj.port_for_instance(i) for i in range(3)] == [9002, 9012, 9022]


# --- frame bookkeeping ----------------------------------------------------------------


def test_tracker_tells_new_repeated_missed_and_restarted_frames() -> None:
    tracker = FrameTracker()
    kinds = [tracker.observe(n) for n in (5, 6, 6, 9, 2, 3)]
    assert [v.kind for v in kinds] == [
        FrameKind.FIRST,
        FrameKind.NEW,
        FrameKind.REPEAT,
        FrameKind.NEW,
        FrameKind.RESTART,
        FrameKind.NEW,
    ]
    assert kinds[3].missed == 2 and tracker.missed == 2
    assert [v.steps for v in kinds] == [True, True, False, True, True, True]
    assert tracker.restarts == 1 and tracker.count(FrameKind.REPEAT) == 1


def test_tracker_counts_repeats_in_a_row() -> None:
    tracker = FrameTracker()
    for n in (1, 1, 1, 1):
        tracker.observe(n)
    assert tracker.repeats == 3  # SITL keeps resending: our replies are not accepted
    tracker.observe(2)
    assert tracker.repeats == 0


@_PROPS
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=50))
def test_tracker_steps_on_every_packet_but_repeats(counts: list[int]) -> None:
    tracker = FrameTracker()
    verdicts = [tracker.observe(n) for n in counts]
    repeats = sum(a == b for a, b in zip(counts, counts[1:], strict=False))
    assert sum(not v.steps for v in verdicts) == repeats
    assert tracker.restarts == sum(b < a for a, b in zip(counts, counts[1:], strict=False))


# --- state line -----------------------------------------------------------------------


def test_state_line_is_compact_and_framed_by_newlines() -> None:
    line = encode_state_line(_hover())
    assert line.startswith(b"\n{") and line.endswith(b"}\n") and line.count(b"\n") == 2
    assert b": " not in line and b", " not in line


def test_required_fields_carry_sim_json_names() -> None:
    obj = json.loads(encode_state_line(_hover()))
    assert set(obj) == {"timestamp", "imu", "position", "velocity", "attitude"}
    assert set(obj["imu"]) == {"gyro", "accel_body"}
    assert obj["timestamp"] == 12.5 and obj["imu"]["accel_body"] == [0.0, 0.0, -9.80665]


def _sitl_reads(line: str, section: str, key: str) -> str:
    """Emulate SIM_JSON's lookup: first `section`, then the first `key` after it, skip `key":`."""
    at = line.find(section) + len(section) + 1
    at = line.find(key, at)
    assert at >= 0, key
    return line[at + len(key) + 2 :]


def test_every_key_is_found_where_sitl_looks_for_it() -> None:
    state = _hover(
        quaternion=(1.0, 0.0, 0.0, 0.0),
        velocity_wind=(3.0, 0.0, -0.5),
        rng=(4.0, None, 6.0),
        windvane=(0.25, 7.0),
        airspeed=11.0,
        rc=tuple(float(1000 + i) for i in range(12)),
        battery=(16.8, 12.0),
        no_time_sync=True,
    )
    line = encode_state_line(state).decode()
    expect = {
        ("", "timestamp"): "12.5",
        ("imu", "gyro"): "[0.0,0.0,0.0]",
        ("imu", "accel_body"): "[0.0,0.0,-9.80665]",
        ("", "position"): "[0.0,0.0,-10.0]",
        ("", "attitude"): "[0.0,0.0,0.0]",
        ("", "quaternion"): "[1.0,0.0,0.0,0.0]",
        ("", "velocity"): "[0.0,0.0,0.0]",
        ("", "velocity_wind"): "[3.0,0.0,-0.5]",
        ("", "rng_1"): "4.0",
        ("", "rng_3"): "6.0",
        ("windvane", "direction"): "0.25",
        ("windvane", "speed"): "7.0",
        ("", "airspeed"): "11.0",
        ("rc", "rc_1"): "1000.0",
        ("rc", "rc_10"): "1009.0",
        ("battery", "voltage"): "16.8",
        ("battery", "current"): "12.0",
        ("", "no_time_sync"): "1",
    }
    for (section, key), value in expect.items():
        assert _sitl_reads(line, section, key).startswith(value), (section, key)


def test_no_time_sync_is_written_as_an_integer() -> None:
    assert b'"no_time_sync":1' in encode_state_line(_hover(no_time_sync=True))
    assert b"no_time_sync" not in encode_state_line(_hover())


@_PROPS
@given(_states)
def test_state_lines_round_trip(state: JsonState) -> None:
    assert decode_state_line(encode_state_line(state)) == state


@_PROPS
@given(st.text(max_size=200))
def test_random_text_raises_only_the_codec_error(text: str) -> None:
    try:
        decode_state_line(text)
    except ArduPilotJsonError:
        pass


@_PROPS
@given(st.binary(max_size=200))
def test_random_bytes_to_the_line_decoder_raise_only_the_codec_error(data: bytes) -> None:
    try:
        decode_state_line(data)
    except ArduPilotJsonError:
        pass


@_PROPS
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                        ["timestamp", "imu", "gyro", "accel_body", "position", "velocity", "attitude",
                         "quaternion", "rng_1", "rc", "rc_1", "battery", "voltage", "windvane"]), c, max_size=6),
                    max_leaves=20))  # fmt: skip
def test_json_of_the_wrong_shape_raises_only_the_codec_error(obj: object) -> None:
    try:
        decode_state_line(json.dumps(obj))
    except ArduPilotJsonError:
        pass


def test_a_hand_written_minimal_line_decodes() -> None:
    line = (
        '\n{"timestamp":3.25,"imu":{"gyro":[0,0,0.5],"accel_body":[0,0,-9.8]},'
        '"position":[1,2,-3],"attitude":[0,0,1],"velocity":[0,0,0]}\n'
    )
    state = decode_state_line(line)
    assert state.timestamp_s == 3.25 and state.gyro == (0.0, 0.0, 0.5)
    assert state.position == (1.0, 2.0, -3.0) and state.quaternion is None


@pytest.mark.parametrize("drop", ["timestamp", "imu", "position", "velocity"])
def test_missing_required_key_is_named(drop: str) -> None:
    obj = json.loads(encode_state_line(_hover()))
    del obj[drop]
    with pytest.raises(ArduPilotJsonError, match=drop):
        decode_state_line(json.dumps(obj))


def test_attitude_or_quaternion_is_required() -> None:
    with pytest.raises(ArduPilotJsonError, match="attitude .* or quaternion"):
        _hover(attitude=None)
    assert _hover(attitude=None, quaternion=(1.0, 0.0, 0.0, 0.0)).attitude is None


def test_non_finite_and_float32_overflow_are_refused() -> None:
    with pytest.raises(ArduPilotJsonError, match="finite"):
        _hover(gyro=(float("nan"), 0.0, 0.0))
    with pytest.raises(ArduPilotJsonError, match="32-bit float"):
        _hover(velocity=(1e39, 0.0, 0.0))
    assert _hover(position=(1e39, 0.0, 0.0)).position[0] == 1e39  # position is a double
    with pytest.raises(ArduPilotJsonError, match="not a number"):
        decode_state_line(encode_state_line(_hover()).replace(b"12.5", b"NaN"))


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ArduPilotJsonError, match="unknown keys \\['wind'\\]"):
        decode_state_line(encode_state_line(_hover())[:-2] + b',"wind":1}\n')


def test_trailing_unsent_rangefinders_are_dropped() -> None:
    assert _hover(rng=(1.0, None, None)).rng == (1.0,)


def test_datagram_lines_are_split() -> None:
    one = encode_state_line(_hover())
    assert aj.split_state_lines(one + one) == [one.strip(), one.strip()]
