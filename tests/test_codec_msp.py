"""MSP codec: v1/v2 framing, streaming through CLI text and noise, payload layouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import msp
from hil.codecs.msp import (
    ApiVersion,
    ArmingDisable,
    Attitude,
    BoardInfo,
    Direction,
    FailsafeConfig,
    FailsafeProcedure,
    FcVariant,
    FcVersion,
    ModeRange,
    Motors,
    MspCommand,
    MspError,
    MspFrame,
    MspParser,
    RawImu,
    RcChannels,
    RebootMode,
    RebootReply,
    Sensor,
    Status,
)

_PROPS = settings(max_examples=200, deadline=None)


# ------------------------------------------------------------------ known answers


def test_v1_api_version_request() -> None:
    # '$' 'M' '<', len 0, cmd 1, xor(00, 01) = 01
    assert msp.encode_request(MspCommand.API_VERSION) == bytes.fromhex("24 4D 3C 00 01 01")


def test_v1_reply_checksum_covers_len_cmd_payload() -> None:
    # 03 ^ 01 = 02; ^ 00 = 02; ^ 01 = 03; ^ 2F = 2C  (API 1.47)
    data = msp.encode_reply(MspCommand.API_VERSION, bytes([0, 1, 47]))
    assert data == bytes.fromhex("24 4D 3E 03 01 00 01 2F 2C")


def test_v2_api_version_request() -> None:
    # crc8_dvb_s2 over 00 | 01 00 | 00 00, bit by bit (shift; xor 0xD5 if the top bit
    # fell out): 00 -> 00; 01 -> D5; 00: D5 7F FE 29 52 A4 9D EF -> 0B;
    # 00: 16 2C 58 B0 B5 BF AB -> 83; 00: D3 73 E6 19 32 64 C8 -> 45.
    data = msp.encode_request(MspCommand.API_VERSION, version=2)
    assert data == bytes.fromhex("24 58 3C 00 01 00 00 00 45")


def test_error_frames_say_so() -> None:
    frame = msp.decode_frame(msp.encode_reply(MspCommand.RAW_IMU, error=True))
    assert frame.is_error and frame.direction is Direction.ERROR
    assert msp.encode_reply(1, error=True)[:3] == b"$M!"


def test_v1_refuses_what_only_v2_can_carry() -> None:
    # 255..65535 payload bytes fit a v1 jumbo frame (tests/test_codec_msp_jumbo.py).
    with pytest.raises(ValueError, match="v2"):
        msp.encode_v1(0x1F01)
    with pytest.raises(ValueError, match="v2"):
        msp.encode_v1(1, bytes(msp.MAX_JUMBO_PAYLOAD + 1))


# ------------------------------------------------------------------------ framing

_direction = st.sampled_from(list(Direction))
_v1 = st.builds(
    MspFrame, _direction, st.just(1), st.integers(0, 255), st.binary(max_size=msp.MAX_V1_PAYLOAD)
)
_v2 = st.builds(
    MspFrame,
    _direction,
    st.just(2),
    st.integers(0, 0xFFFF),
    st.binary(max_size=300),
    st.integers(0, 255),
)
_frames = st.one_of(_v1, _v2)


@_PROPS
@given(_frames)
def test_decode_inverts_encode(frame: MspFrame) -> None:
    assert msp.decode_frame(msp.encode_frame(frame)) == frame


@_PROPS
@given(st.binary(max_size=60))
def test_arbitrary_bytes_raise_only_msp_error(data: bytes) -> None:
    try:
        msp.decode_frame(data)
    except MspError:
        pass


#: v1 payloads of 255 bytes and more go out as jumbo frames.
_jumbo = st.builds(
    MspFrame, st.sampled_from(list(Direction)), st.just(1), st.integers(0, 254),
    st.binary(min_size=255, max_size=1000),
)


@_PROPS
@given(st.one_of(_frames, _jumbo), st.data())
def test_truncations_and_bit_flips_raise_only_msp_error(frame: MspFrame, data) -> None:
    wire = msp.encode_frame(frame)
    with pytest.raises(MspError):
        msp.decode_frame(wire[: data.draw(st.integers(0, len(wire) - 1))])
    bit = data.draw(st.integers(0, 8 * len(wire) - 1))
    flipped = bytearray(wire)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        assert msp.decode_frame(bytes(flipped)) != frame  # a flipped bit never passes unseen
    except MspError:
        pass


# ---------------------------------------------------------------------- streaming

_noise = st.lists(
    st.one_of(
        st.binary(max_size=20),
        st.sampled_from(
            [b"$", b"$M", b"$M<", b"$M>\xf0", b"$X>", b"$X<\x00\x01\x00\xff\x10", b"#"]
        ),
        st.just(b"\r\n# status\r\nMCU F405 Clock=168MHz\r\n"),
    ),
    max_size=8,
).map(b"".join)


@_PROPS
@given(_noise, st.lists(_frames, min_size=1, max_size=4))
def test_parser_recovers_frames_after_noise(noise: bytes, frames: list) -> None:
    out = MspParser().feed(noise + b"".join(msp.encode_frame(f) for f in frames))
    assert out[-len(frames) :] == frames


@_PROPS
@given(st.lists(_frames, min_size=1, max_size=4), st.data())
def test_parser_handles_any_chunking(frames: list, data) -> None:
    stream = b"".join(msp.encode_frame(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = MspParser()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += parser.feed(stream[a:b])
    assert out == frames


def test_cli_text_between_frames_is_skipped_and_counted() -> None:
    req = msp.encode_request(MspCommand.STATUS)
    text = b"Entering CLI Mode, type 'exit' to return\r\n# "
    parser = MspParser()
    out = parser.feed(text + req + text)
    assert [f.cmd for f in out] == [MspCommand.STATUS]
    assert parser.discarded == 2 * len(text)


def test_a_corrupt_frame_does_not_hide_the_next() -> None:
    good = msp.encode_reply(MspCommand.ATTITUDE, Attitude(15, -20, 90).encode())
    bad = bytearray(good)
    bad[-1] ^= 1
    assert MspParser().feed(bytes(bad) + good) == [msp.decode_frame(good)]


# ----------------------------------------------------------------------- payloads


def test_api_variant_version_board_of_the_betaflight_sitl() -> None:
    assert ApiVersion.decode(bytes([0, 1, 47])) == ApiVersion(0, 1, 47)
    assert FcVariant.decode(b"BTFL").identifier == "BTFL"
    assert FcVersion.decode(bytes([4, 6, 0])) == FcVersion(4, 6, 0)
    payload = b"SITL" + bytes([0, 0, 0, 0x04, 4]) + b"SITL" + bytes(40)
    info = BoardInfo.decode(payload)
    assert (info.identifier, info.hardware_revision, info.target_name) == ("SITL", 0, "SITL")
    assert info.encode() == payload


def _status_ex_payload(arming: int, modes: int = 0) -> bytes:
    # cycle 125 us, i2c 0, sensors ACC|GYRO, modes, pid profile 0, load 12,
    # 4 pid profiles, rate profile 0, 0 extra mode bytes, 29 flags, arming, config 0
    return (
        (125).to_bytes(2, "little")
        + bytes(2)
        + (0x21).to_bytes(2, "little")
        + modes.to_bytes(4, "little")
        + bytes([0])
        + (12).to_bytes(2, "little")
        + bytes([4, 0, 0, 29])
        + arming.to_bytes(4, "little")
        + bytes([0])
    )


def test_status_ex_decodes_arming_flags_by_name() -> None:
    flags = ArmingDisable.BOOT_GRACE_TIME | ArmingDisable.CALIBRATING | ArmingDisable.ARM_SWITCH
    status = msp.decode_status_ex(_status_ex_payload(int(flags), modes=0b10001))
    assert status.cycle_time_us == 125
    assert status.sensor_flags == Sensor.ACC | Sensor.GYRO
    assert status.arming_disabled == flags
    assert status.arming_flag_count == 29
    assert status.armed and status.failsafe_mode
    assert (1 << 9) == ArmingDisable.BOOT_GRACE_TIME and (1 << 28) == ArmingDisable.ARM_SWITCH


def test_status_keeps_unknown_arming_bits() -> None:
    status = msp.decode_status_ex(_status_ex_payload(1 << 26))
    assert int(status.arming_disabled) == 1 << 26


def test_short_legacy_status_has_no_arming_fields() -> None:
    status = msp.decode_status(_status_ex_payload(0)[:15])
    assert status.arming_flag_count is None and not status.extended


def test_attitude_yaw_is_whole_degrees() -> None:
    att = Attitude.decode((-123).to_bytes(2, "little", signed=True) + bytes([50, 0, 0x68, 1]))
    assert (att.roll_deg, att.pitch_deg, att.yaw_deg) == (-12.3, 5.0, 360)


def test_arm_on_aux1_mode_range() -> None:
    arm = ModeRange(0, 0, 0, msp.us_to_step(1700), msp.us_to_step(2100))
    assert arm.encode() == bytes([0, 0, 0, 32, 48])
    assert (msp.step_to_us(32), msp.step_to_us(48)) == (1700, 2100)


def test_failsafe_config_defaults() -> None:
    payload = bytes([15, 60]) + (1000).to_bytes(2, "little") + bytes([0, 100, 0, 1])
    cfg = FailsafeConfig.decode(payload)
    assert (cfg.delay, cfg.off_delay, cfg.throttle, cfg.throttle_low_delay) == (15, 60, 1000, 100)
    assert cfg.procedure == FailsafeProcedure.DROP


def test_reboot_request_and_reply() -> None:
    assert msp.encode_reboot_request() == b""
    assert msp.encode_reboot_request(RebootMode.BOOTLOADER_ROM) == b"\x01"
    assert RebootReply.decode(b"\x00") == RebootReply(0)


def test_set_raw_rc_request_bytes() -> None:
    payload = RcChannels((1500, 1500, 1000, 1500, 1800)).encode()
    assert payload[:4] == bytes([0xDC, 0x05, 0xDC, 0x05])
    wire = msp.encode_request(MspCommand.SET_RAW_RC, payload)
    assert wire[3:5] == bytes([10, 200])


# ------------------------------------------------------- payload round trip/garbage

_u8, _u16, _u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
_i16 = st.integers(-32768, 32767)
_i16x3 = st.tuples(_i16, _i16, _i16)
_ascii = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=4, max_size=4)
_short_ascii = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@st.composite
def _board_info(draw) -> BoardInfo:
    head = (draw(_ascii), draw(_u16))
    depth = draw(st.integers(0, 2))
    if depth == 0:
        return BoardInfo(*head)
    if depth == 1:
        return BoardInfo(*head, draw(_u8), draw(_u8))
    return BoardInfo(*head, draw(_u8), draw(_u8), draw(_short_ascii), draw(st.binary(max_size=40)))


@st.composite
def _status(draw) -> Status:
    extended = draw(st.booleans())
    head = dict(
        extended=extended,
        cycle_time_us=draw(_u16),
        i2c_errors=draw(_u16),
        sensors=draw(_u16),
        pid_profile=draw(_u8),
        system_load=draw(_u16),
        gyro_cycle_time=0 if extended else draw(_u16),
        pid_profile_count=draw(_u8) if extended else 0,
        rate_profile=draw(_u8) if extended else 0,
    )
    if not draw(st.booleans()):
        return Status(flight_modes=draw(_u32), **head)
    extra = draw(st.integers(0, 15))
    modes = draw(st.integers(0, (1 << (32 + 8 * extra)) - 1))
    config = draw(st.none() | _u8)
    rest = draw(st.binary(max_size=4)) if config is not None else b""
    return Status(
        flight_modes=modes,
        extra_mode_bytes=extra,
        arming_flag_count=draw(_u8),
        arming_disable_flags=draw(_u32),
        config_state=config,
        rest=rest,
        **head,
    )


_mode_range = st.one_of(
    st.builds(ModeRange, _u8, _u8, _u8, _u8, _u8),
    st.builds(ModeRange, _u8, _u8, _u8, _u8, _u8, _u8, _u8),
)

_PAYLOADS = [
    (st.builds(ApiVersion, _u8, _u8, _u8), ApiVersion.decode),
    (st.builds(FcVariant, _ascii), FcVariant.decode),
    (st.builds(FcVersion, _u8, _u8, _u8), FcVersion.decode),
    (_board_info(), BoardInfo.decode),
    (_status(), None),
    (st.builds(RawImu, _i16x3, _i16x3, _i16x3), RawImu.decode),
    (st.builds(Motors, st.lists(_u16, max_size=8).map(tuple)), Motors.decode),
    (st.builds(RcChannels, st.lists(_u16, max_size=18).map(tuple)), RcChannels.decode),
    (st.builds(Attitude, _i16, _i16, _i16), Attitude.decode),
    (_mode_range, ModeRange.decode),
    (
        st.builds(FailsafeConfig, _u8, _u8, _u16, _u8, _u16, _u8, st.binary(max_size=6)),
        FailsafeConfig.decode,
    ),
    (st.builds(RebootReply, _u8, st.none() | _u8), RebootReply.decode),
]
_DECODERS = [d for _, d in _PAYLOADS if d] + [msp.decode_status, msp.decode_status_ex]


@_PROPS
@given(st.one_of(*[s for s, _ in _PAYLOADS]))
def test_payload_decode_inverts_encode(value) -> None:
    if isinstance(value, Status):
        assert Status.decode(value.encode(), extended=value.extended) == value
    else:
        assert type(value).decode(value.encode()) == value


@_PROPS
@given(st.sampled_from(_DECODERS), st.binary(max_size=64))
def test_payload_garbage_raises_only_msp_error(decode, data: bytes) -> None:
    try:
        decode(data)
    except MspError:
        pass


def test_a_noise_header_whose_checksum_happens_to_match_does_not_swallow_frames() -> None:
    # Found by hypothesis: "$M<" + length '$' + command '<' and a lucky xor made a
    # 36-byte bogus frame out of the three real frames behind it.
    frames = [
        MspFrame(Direction.REPLY, 1, 0, b"\x00\x00\x00\x00"),
        MspFrame(Direction.REPLY, 2, 0, b"\x00\x00\x00\x00", 73),
        MspFrame(Direction.ERROR, 2, 16, b"\x00\x00\x00\x00", 224),
    ]
    out = MspParser().feed(b"$M<$<M" + b"".join(msp.encode_frame(f) for f in frames))
    assert out[-3:] == frames
