"""CRSF codec: CRC, 11-bit packing, tick/us conversion, frames, streaming resync."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.codecs import crsf
from hil.codecs.crsf import (
    CrsfError,
    CrsfFrame,
    CrsfParser,
    LinkStatistics,
    RcChannelsPacked,
    crc8_dvb_s2,
    ticks_to_us,
    us_to_ticks,
)

_PROPS = settings(max_examples=200, deadline=None)


# --------------------------------------------------------------------------- crc


def test_crc8_of_one_byte_is_the_polynomial() -> None:
    # crc = 0x01; seven shifts with the top bit clear give 0x80; the eighth shifts the
    # top bit out and xors the polynomial: 0x00 ^ 0xD5 = 0xD5.
    assert crc8_dvb_s2(b"\x01") == 0xD5


def test_crc8_of_two_bytes_worked_bit_by_bit() -> None:
    # after 0x01: 0xD5. xor 0x02 -> 0xD7 = 1101_0111, then per bit (top bit set: shift,
    # xor 0xD5; clear: shift): 0xAE^D5=7B, F6, EC^D5=39, 72, E4, C8^D5=1D, 3A, 74.
    assert crc8_dvb_s2(b"\x01\x02") == 0x74


def test_crc8_matches_the_catalogue_check_value() -> None:
    assert crc8_dvb_s2(b"123456789") == 0xBC  # CRC-8/DVB-S2 "check" in the CRC catalogue


# ---------------------------------------------------------------------- channels


def test_tick_and_microsecond_anchor_points() -> None:
    assert [ticks_to_us(t) for t in (172, 992, 1811)] == [988, 1500, 2012]
    assert [us_to_ticks(u) for u in (988, 1500, 2012)] == [172, 992, 1811]


def test_us_to_ticks_clamps_to_eleven_bits() -> None:
    assert us_to_ticks(0) == 0
    assert us_to_ticks(10_000) == 2047


@given(st.integers(988, 2012))
def test_every_whole_microsecond_survives_ticks(us: int) -> None:
    assert ticks_to_us(us_to_ticks(us)) == us


def test_centred_sticks_pack_as_hand_derived_bytes() -> None:
    # 992 = 0b011_1110_0000. ch0 low byte E0; byte1 = ch0 bits 8..10 (011) + ch1 bits
    # 0..4 (0) = 03; byte2 = ch1 bits 5..10 (011111) = 1F; byte3 = ch2 bits 2..9 = F8;
    # byte4 = ch2 bit 10 (0) + ch3 bits 0..6 (1100000) << 1 = C0.
    frame = crsf.encode(RcChannelsPacked((992,) * 16))
    assert frame[:3] == bytes([0xC8, 24, 0x16])
    assert frame[3:8] == bytes.fromhex("E0031FF8C0")
    assert frame[-1] == crc8_dvb_s2(frame[2:-1])
    assert len(frame) == 26


# ------------------------------------------------------------------------ frames

_ticks = st.integers(0, 2047)
_rc = st.builds(RcChannelsPacked, st.tuples(*[_ticks] * 16))
_neg = st.integers(-255, 0)
_stats = st.builds(
    LinkStatistics,
    _neg,
    _neg,
    st.integers(0, 100),
    st.integers(-128, 127),
    st.integers(0, 1),
    st.integers(0, 255),
    st.integers(0, 255),
    _neg,
    st.integers(0, 100),
    st.integers(-128, 127),
)
_generic = st.builds(
    CrsfFrame,
    st.integers(0, 255).filter(lambda t: t not in (0x14, 0x16)),
    st.binary(max_size=crsf.MAX_PAYLOAD),
)
_messages = st.one_of(_rc, _stats, _generic)


@_PROPS
@given(_messages)
def test_decode_inverts_encode(msg: crsf.CrsfMessage) -> None:
    data = crsf.encode(msg)
    assert len(data) <= crsf.MAX_FRAME
    assert data[1] == len(data) - 2
    assert crsf.decode(data) == msg


def test_link_statistics_known_bytes() -> None:
    msg = LinkStatistics(-60, -72, 100, -5, 1, 7, 2, -55, 98, 9)
    payload = crsf.encode(msg)[3:-1]
    assert payload == bytes([60, 72, 100, 0xFB, 1, 7, 2, 55, 98, 9])


def test_payload_too_long_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        crsf.encode(CrsfFrame(0x7F, bytes(61)))


def test_bad_crc_is_a_crsf_error() -> None:
    data = bytearray(crsf.encode(RcChannelsPacked((992,) * 16)))
    data[-1] ^= 0xFF
    with pytest.raises(CrsfError, match="CRC"):
        crsf.decode(bytes(data))


def test_elrs_frame_intervals() -> None:
    assert crsf.ELRS_FRAME_INTERVAL_US[500] == 2000
    assert crsf.ELRS_FRAME_INTERVAL_US[250] == 4000
    assert crsf.ELRS_FRAME_INTERVAL_US[150] == pytest.approx(6666.67, abs=0.01)
    assert crsf.ELRS_FRAME_INTERVAL_US[50] == 20000


# ------------------------------------------------------------------------ garbage


@_PROPS
@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_crsf_error(data: bytes) -> None:
    try:
        crsf.decode(data)
    except CrsfError:
        pass


@_PROPS
@given(_messages, st.data())
def test_truncations_and_bit_flips_raise_only_crsf_error(msg: crsf.CrsfMessage, data) -> None:
    frame = crsf.encode(msg)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(CrsfError):
        crsf.decode(frame[:cut])
    bit = data.draw(st.integers(0, 8 * len(frame) - 1))
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        crsf.decode(bytes(flipped))
    except CrsfError:
        pass


# ---------------------------------------------------------------------- streaming

_garbage = st.lists(
    st.one_of(st.binary(max_size=20), st.sampled_from([b"\xc8", b"\xc8\x18", b"\xc8\x3e\x16"])),
    max_size=8,
).map(b"".join)


@_PROPS
@given(_garbage, st.lists(_messages, min_size=1, max_size=5))
def test_parser_recovers_frames_after_garbage(garbage: bytes, msgs: list) -> None:
    out = CrsfParser().feed(garbage + b"".join(crsf.encode(m) for m in msgs))
    assert out[-len(msgs) :] == msgs


@_PROPS
@given(st.lists(_messages, min_size=1, max_size=5), st.data())
def test_parser_handles_any_chunking(msgs: list, data) -> None:
    stream = b"".join(crsf.encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = CrsfParser()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += parser.feed(stream[a:b])
    assert out == msgs


def test_parser_skips_a_corrupt_frame_and_keeps_the_next() -> None:
    good = crsf.encode(RcChannelsPacked((992,) * 16))
    bad = bytearray(good)
    bad[10] ^= 0x40
    parser = CrsfParser()
    assert parser.feed(bytes(bad) + good) == [RcChannelsPacked((992,) * 16)]
    assert parser.discarded == len(bad)


def test_known_type_with_wrong_size_is_noise_in_a_stream() -> None:
    data = bytes([0xC8, 7, 0x16]) + bytes(5)
    data += bytes([crc8_dvb_s2(data[2:])])
    good = crsf.encode(RcChannelsPacked((992,) * 16))
    assert CrsfParser().feed(data + good) == [RcChannelsPacked((992,) * 16)]


def test_a_crc_collision_at_the_end_of_the_buffer_does_not_swallow_real_frames() -> None:
    # Found by hypothesis: a fake header whose CRC happens to match and whose claimed
    # length runs exactly to the end of what has arrived.
    frame = crsf.encode(RcChannelsPacked((0,) * 16))
    data = b"\xc8>\x16\xc8>\x16jk\xa1\xd9\xfc\x80" + frame * 2
    assert CrsfParser().feed(data) == [RcChannelsPacked((0,) * 16)] * 2
