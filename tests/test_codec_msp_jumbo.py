"""MSP v1 jumbo frames: replies of 255 bytes or more, as Betaflight sends MSP_BOXNAMES.

Layout (Betaflight `src/main/msp/msp_serial.c`, `mspSerialEncode`): `$M` dir, size byte
255, cmd, real size u16 LE, payload, xor over size, cmd, both real-size bytes and payload.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import msp
from hil.codecs.msp import Direction, MspCommand, MspError, MspFrame, MspParser

_PROPS = settings(max_examples=60, deadline=None)

_direction = st.sampled_from(list(Direction))
_payload = st.binary(min_size=0, max_size=1000)
_v1 = st.builds(MspFrame, _direction, st.just(1), st.integers(0, 254), _payload)
_v2 = st.builds(
    MspFrame, _direction, st.just(2), st.integers(0, 0xFFFF), _payload, st.integers(0, 255)
)
_jumbo = st.builds(
    MspFrame, _direction, st.just(1), st.integers(0, 254), st.binary(min_size=255, max_size=1000)
)


def _xor(data: bytes) -> int:
    return functools.reduce(lambda a, b: a ^ b, data, 0)


# ------------------------------------------------------------------ known answers


def test_255_bytes_is_already_a_jumbo_frame() -> None:
    # Betaflight switches at dataLen >= 255. Checksum: FF ^ 74 ^ FF ^ 00 ^ zeros = 74.
    wire = msp.encode_reply(MspCommand.BOXNAMES, bytes(255))
    assert wire == bytes.fromhex("24 4D 3E FF 74 FF 00") + bytes(255) + bytes([0x74])


def test_254_bytes_is_still_a_plain_v1_frame() -> None:
    wire = msp.encode_reply(MspCommand.BOXNAMES, bytes(254))
    assert wire[:5] == bytes.fromhex("24 4D 3E FE 74") and len(wire) == 6 + 254


def test_jumbo_checksum_covers_the_real_size_bytes() -> None:
    # 300 = 0x012C: FF ^ 74 ^ 2C ^ 01 = A6 over a zero payload.
    wire = msp.encode_reply(MspCommand.BOXNAMES, bytes(300))
    assert wire[3:7] == bytes.fromhex("FF 74 2C 01") and wire[-1] == 0xA6
    assert wire[-1] == _xor(wire[3:-1])


def test_a_boxnames_reply_of_about_300_bytes_decodes() -> None:
    names = ["ARM", "ANGLE", "HORIZON", "ALTHOLD", "HEADFREE", "FAILSAFE", "GPS RESCUE"]
    text = "".join(f"{n};" for n in names * 6).encode("ascii")
    assert 255 <= len(text) <= 400
    frame = msp.decode_frame(msp.encode_reply(MspCommand.BOXNAMES, text))
    assert frame.version == 1 and msp.decode_box_names(frame.payload) == names * 6


def test_a_jumbo_frame_announcing_fewer_than_255_bytes_is_noise() -> None:
    body = bytes([255, 1]) + (10).to_bytes(2, "little") + bytes(10)
    with pytest.raises(MspError):
        msp.decode_frame(b"$M>" + body + bytes([_xor(body)]))


def test_a_jumbo_frame_with_a_bad_checksum_is_refused() -> None:
    wire = bytearray(msp.encode_reply(MspCommand.BOXNAMES, bytes(300)))
    wire[5] ^= 0x01  # the real size's low byte is checksummed, so this must fail
    with pytest.raises(MspError):
        msp.decode_frame(bytes(wire))


def test_jumbo_limit_is_the_u16_length() -> None:
    with pytest.raises(ValueError, match="jumbo"):
        msp.encode_v1(1, bytes(msp.MAX_JUMBO_PAYLOAD + 1))


# ------------------------------------------------------------------ properties


@_PROPS
@given(st.one_of(_v1, _v2))
def test_round_trip_0_to_1000_bytes_on_v1_and_v2(frame: MspFrame) -> None:
    assert msp.decode_frame(msp.encode_frame(frame)) == frame
    assert MspParser().feed(msp.encode_frame(frame)) == [frame]


@_PROPS
@given(_jumbo)
def test_v1_payloads_of_255_or_more_go_jumbo(frame: MspFrame) -> None:
    wire = msp.encode_frame(frame)
    assert wire[3] == msp.JUMBO_SIZE_MARK
    assert int.from_bytes(wire[5:7], "little") == len(frame.payload)
    assert wire[-1] == _xor(wire[3:-1])


@settings(max_examples=20, deadline=None)  # each example decodes len(wire) splits
@given(st.one_of(_jumbo, _v2), st.data())
def test_a_frame_split_at_every_byte_boundary_still_decodes(frame: MspFrame, data) -> None:
    wire = msp.encode_frame(frame)
    # every two-piece split
    for cut in range(len(wire) + 1):
        parser = MspParser()
        assert parser.feed(wire[:cut]) + parser.feed(wire[cut:]) == [frame], cut
    # one byte at a time, then a random chunking
    parser = MspParser()
    assert [f for b in wire for f in parser.feed(bytes([b]))] == [frame]
    sizes = data.draw(st.lists(st.integers(1, 64), min_size=1, max_size=40))
    parser, out, pos = MspParser(), [], 0
    for size in sizes * (len(wire) // sum(sizes) + 1):
        out += parser.feed(wire[pos : pos + size])
        pos += size
    assert out == [frame]


_jumbo_garbage = st.builds(
    lambda direction, rest: b"$M" + bytes([direction, 255]) + rest,
    _direction,
    st.binary(max_size=600),
)


@_PROPS
@given(st.one_of(st.binary(max_size=600), _jumbo_garbage))
def test_garbage_raises_only_msp_error(data: bytes) -> None:
    try:
        msp.decode_frame(data)
    except MspError:
        pass
    MspParser().feed(data)  # the stream parser never raises at all


@_PROPS
@given(st.binary(max_size=40), _jumbo, st.binary(max_size=40), _v1)
def test_parser_finds_a_jumbo_frame_between_noise_and_another_frame(
    noise: bytes, jumbo: MspFrame, more_noise: bytes, after: MspFrame
) -> None:
    # Noise without '$' so it cannot open a candidate that swallows the frames.
    clean = lambda b: b.replace(b"$", b"")  # noqa: E731
    wire = clean(noise) + msp.encode_frame(jumbo) + clean(more_noise) + msp.encode_frame(after)
    assert MspParser().feed(wire) == [jumbo, after]
