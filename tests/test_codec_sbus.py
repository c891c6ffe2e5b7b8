"""SBUS codec: value/us conversion, 25-byte frames, streaming with and without gaps."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hil.codecs import sbus
from hil.codecs.sbus import SbusError, SbusFrame, SbusParser, us_to_value, value_to_us

_PROPS = settings(max_examples=200, deadline=None)

_frames = st.builds(
    SbusFrame,
    st.tuples(*[st.integers(0, 2047)] * 16),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


def test_value_to_us_anchor_points() -> None:
    assert [value_to_us(v) for v in (172, 992, 1811)] == [987.5, 1500, 2011.875]
    assert [us_to_value(u) for u in (987.5, 1500, 2011.875)] == [172, 992, 1811]


@given(st.integers(0, 2047))
def test_every_value_survives_microseconds(v: int) -> None:
    assert us_to_value(value_to_us(v)) == v


def test_us_to_value_clamps() -> None:
    assert us_to_value(0) == 0
    assert us_to_value(5000) == 2047


def test_frame_layout_by_hand() -> None:
    # ch1 = 1 -> bit 0 of byte 1; failsafe + frame lost -> flags 0x0C; end byte 0x00.
    data = sbus.encode(SbusFrame((1,) + (0,) * 15, frame_lost=True, failsafe=True))
    assert data == b"\x0f\x01" + bytes(21) + b"\x0c\x00"


def test_line_settings_are_documented() -> None:
    assert sbus.BAUD == 100_000
    assert (sbus.FRAME_PERIOD_S, sbus.FAST_FRAME_PERIOD_S) == (0.011, 0.006)
    doc = sbus.__doc__ or ""
    assert "100000 baud" in doc and "8E2" in doc and "inverted" in doc


@_PROPS
@given(_frames)
def test_decode_inverts_encode(frame: SbusFrame) -> None:
    data = sbus.encode(frame)
    assert len(data) == 25
    assert sbus.decode(data) == frame


@_PROPS
@given(st.binary(max_size=40))
def test_arbitrary_bytes_raise_only_sbus_error(data: bytes) -> None:
    try:
        sbus.decode(data)
    except SbusError:
        pass


@_PROPS
@given(_frames, st.integers(0, 24), st.integers(0, 199))
def test_truncations_and_bit_flips_raise_only_sbus_error(frame, cut, bit) -> None:
    data = sbus.encode(frame)
    with pytest.raises(SbusError):
        sbus.decode(data[:cut])
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        sbus.decode(bytes(flipped))
    except SbusError:
        pass


_garbage = st.lists(
    st.one_of(st.binary(max_size=30), st.sampled_from([b"\x0f", b"\x00", b"\x0f" + bytes(24)])),
    max_size=6,
).map(b"".join)


@_PROPS
@given(_garbage, st.lists(_frames, min_size=1, max_size=4))
def test_after_a_gap_every_frame_is_found(garbage: bytes, frames: list) -> None:
    parser = SbusParser()
    parser.feed(garbage)
    assert parser.feed(b"".join(sbus.encode(f) for f in frames), gap_before=True) == frames


@_PROPS
@given(_garbage, st.lists(_frames, min_size=1, max_size=4))
def test_without_a_gap_frames_after_garbage_are_found(garbage: bytes, frames: list) -> None:
    # Without timing, data bytes equal to 0x0F can mimic a header; frames whose body has
    # none are always recovered, false frames from the garbage itself may precede them.
    stream = b"".join(sbus.encode(f) for f in frames)
    assume(all(b"\x0f" not in sbus.encode(f)[1:] for f in frames))
    out = SbusParser().feed(garbage + stream)
    assert out[-len(frames) :] == frames


@_PROPS
@given(st.lists(_frames, min_size=1, max_size=4), st.data())
def test_clean_stream_survives_any_chunking(frames: list, data) -> None:
    stream = b"".join(sbus.encode(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = SbusParser()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += parser.feed(stream[a:b])
    assert out == frames


def test_wrong_end_byte_is_rejected() -> None:
    data = bytearray(sbus.encode(SbusFrame((992,) * 16)))
    data[24] = 0x04  # an SBUS2 end byte
    with pytest.raises(SbusError, match="end 0x00"):
        sbus.decode(bytes(data))
    assert SbusParser().feed(bytes(data)) == []
