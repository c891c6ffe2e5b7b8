"""PX4/ArduPilot serial bootloader codec: request bytes, reply parsing, the flash CRC rule."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.firmware import bootloader_codec as bl
from hil.firmware.bootloader_codec import (
    BootloaderCodecError,
    ChipDescription,
    DeviceInfo,
    Reply,
    Status,
    flash_crc,
    parse_chip_des_reply,
    parse_reply,
)

_PROPS = settings(max_examples=200, deadline=None)


def _reference_crc(data: bytes) -> int:
    """Bit-by-bit reflected CRC-32 (poly 0xEDB88320), init 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc


# ----------------------------------------------------------------------- requests


def test_requests_are_opcode_args_eoc() -> None:
    assert bl.encode_get_sync() == b"\x21\x20"
    assert bl.encode_get_device(DeviceInfo.FLASH_SIZE) == b"\x22\x04\x20"
    assert bl.encode_chip_erase() == b"\x23\x20"
    assert bl.encode_read_multi(8) == b"\x28\x08\x20"
    assert bl.encode_get_crc() == b"\x29\x20"
    assert bl.encode_get_sn(8) == b"\x2b\x08\x00\x00\x00\x20"
    assert bl.encode_get_otp(4) == b"\x2a\x04\x00\x00\x00\x20"
    assert bl.encode_get_chip() == b"\x2c\x20"
    assert bl.encode_get_chip_des() == b"\x2e\x20"
    assert bl.encode_set_boot_delay(5) == b"\x2d\x05\x20"
    assert bl.encode_set_baud(921600) == b"\x33\x00\x10\x0e\x00\x20"
    assert bl.encode_reboot() == b"\x30\x20"


def test_prog_multi_carries_length_and_data() -> None:
    assert bl.encode_prog_multi(b"\x01\x02\x03\x04") == b"\x27\x04\x01\x02\x03\x04\x20"


@pytest.mark.parametrize("length", [0, 3, 253, 256])
def test_prog_multi_rejects_lengths_the_bootloader_refuses(length: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        bl.encode_prog_multi(bytes(length))


def test_read_multi_rejects_lengths_that_are_not_words() -> None:
    with pytest.raises(ValueError):
        bl.encode_read_multi(6)


@given(image=st.binary(max_size=2000), size=st.sampled_from([4, 64, 252]))
def test_prog_multi_chunks_cover_the_image_padded_with_ff(image: bytes, size: int) -> None:
    chunks = list(bl.prog_multi_chunks(image, size))
    joined = b"".join(chunks)
    assert joined == image + b"\xff" * (-len(image) % 4)
    assert all(0 < len(c) <= size and len(c) % 4 == 0 for c in chunks)
    for chunk in chunks:
        bl.encode_prog_multi(chunk)


@given(image=st.binary(max_size=2000), size=st.sampled_from([4, 64, 252]))
def test_prog_multi_requests_are_the_encoded_chunks(image: bytes, size: int) -> None:
    assert list(bl.prog_multi_requests(image, size)) == [
        bl.encode_prog_multi(chunk) for chunk in bl.prog_multi_chunks(image, size)
    ]


def test_serial_number_words_print_as_the_uploader_does() -> None:
    assert (
        bl.format_serial_number([0x00390021, 0x3036510B, 0x37353833]) == "003900213036510b37353833"
    )


# ------------------------------------------------------------------------ replies


def test_sync_reply_is_ok() -> None:
    assert parse_reply(b"\x12\x10") == Reply(Status.OK, b"", 2)


@pytest.mark.parametrize("status", [Status.FAILED, Status.INVALID, Status.BAD_SILICON_REV])
def test_refusals_are_reported(status: Status) -> None:
    reply = parse_reply(bytes([0x12, status]))
    assert reply is not None and reply.status is status and not reply.ok


def test_word_reply_decodes_little_endian() -> None:
    reply = parse_reply(b"\x05\x00\x00\x00\x12\x10", 4)
    assert reply is not None and reply.u32 == 5 and reply.consumed == 6


def test_partial_reply_needs_more_bytes() -> None:
    assert parse_reply(b"") is None
    assert parse_reply(b"\x12") is None
    assert parse_reply(b"\x05\x00\x00", 4) is None


def test_refusal_instead_of_data_waits_until_the_read_ends() -> None:
    # "12 13" may also be the first two bytes of a word, so only a timed-out read decides.
    assert parse_reply(b"\x12\x13", 4) is None
    reply = parse_reply(b"\x12\x13", 4, at_end=True)
    assert reply is not None and reply.status is Status.INVALID and reply.consumed == 2


def test_data_that_looks_like_a_refusal_is_still_data() -> None:
    reply = parse_reply(b"\x12\x13\x00\x00\x12\x10", 4)
    assert reply is not None and reply.ok and reply.u32 == 0x1312


def test_garbage_reply_is_a_codec_error_showing_the_bytes() -> None:
    with pytest.raises(BootloaderCodecError, match="41 50 4d"):
        parse_reply(b"APM")
    with pytest.raises(BootloaderCodecError, match="not in sync"):
        parse_reply(b"\x00\x01\x02\x03\x04\x05", 4)
    with pytest.raises(BootloaderCodecError, match="unknown status byte 0x99"):
        parse_reply(b"\x12\x99")


def test_truncated_reply_at_end_of_read_is_a_codec_error() -> None:
    with pytest.raises(BootloaderCodecError, match="truncated"):
        parse_reply(b"\x05\x00", 4, at_end=True)


@_PROPS
@given(
    data=st.binary(max_size=64),
    status=st.sampled_from(list(Status)),
    extra=st.binary(max_size=8),
)
def test_encode_then_parse_reply_round_trips(data: bytes, status: Status, extra: bytes) -> None:
    if status is not Status.OK:
        data = b""
    reply = parse_reply(bl.encode_reply(status, data) + extra, len(data))
    assert reply == Reply(status, data, len(data) + 2)


@_PROPS
@given(buf=st.binary(max_size=80), data_len=st.integers(0, 70), at_end=st.booleans())
def test_garbage_replies_raise_only_codec_errors(buf: bytes, data_len: int, at_end: bool) -> None:
    try:
        reply = parse_reply(buf, data_len, at_end=at_end)
    except BootloaderCodecError:
        return
    if reply is not None:
        assert reply.consumed <= len(buf)


@_PROPS
@given(family=st.text("STM32FHL0123456789 ", max_size=20), revision=st.text("ABCXYZ?", max_size=4))
def test_chip_description_round_trips(family: str, revision: str) -> None:
    wire = bl.encode_chip_des_reply(family, revision)
    assert parse_chip_des_reply(wire) == ChipDescription(family, revision, len(wire))
    assert parse_chip_des_reply(wire[:-1]) is None


def test_chip_description_refusal() -> None:
    assert parse_chip_des_reply(b"\x12\x13") is None
    assert parse_chip_des_reply(b"\x12\x13", at_end=True) == Reply(Status.INVALID, b"", 2)


@_PROPS
@given(buf=st.binary(max_size=40), at_end=st.booleans())
def test_chip_description_garbage_raises_only_codec_errors(buf: bytes, at_end: bool) -> None:
    try:
        parse_chip_des_reply(buf, at_end=at_end)
    except BootloaderCodecError:
        pass


# ---------------------------------------------------------------------------- CRC


def test_crc_of_erased_zero_word_is_zero() -> None:
    # Init 0, no final xor: zeros leave the register at 0 (hand check of the rule).
    assert flash_crc(b"\x00\x00\x00\x00", 4) == 0


def test_crc_of_one_byte_is_the_table_entry() -> None:
    # One byte b from register 0 gives CRC-table[b]; table[1] is the well-known 0x77073096.
    assert _reference_crc(b"\x01") == 0x77073096
    assert zlib.crc32(b"\x01", 0xFFFFFFFF) ^ 0xFFFFFFFF == 0x77073096


def test_crc_pads_with_ff_to_a_word_then_to_flash_size() -> None:
    assert flash_crc(b"\x01\x02\x03", 8) == _reference_crc(b"\x01\x02\x03\xff" + b"\xff" * 4)
    assert flash_crc(b"\x01\x02\x03", 8) == 0xC97E8476  # pinned from the bitwise reference


def test_crc_equals_an_explicitly_padded_flash_for_large_sizes() -> None:
    image = bytes(range(256)) * 3 + b"\x7f"
    size = 200_000
    padded = image + b"\xff" * (size - len(image))
    assert flash_crc(image, size) == zlib.crc32(padded, 0xFFFFFFFF) ^ 0xFFFFFFFF


@_PROPS
@given(image=st.binary(max_size=40), spare=st.integers(0, 40))
def test_crc_matches_bitwise_reference(image: bytes, spare: int) -> None:
    size = len(image) + (-len(image) % 4) + spare
    padded = image + b"\xff" * (size - len(image))
    assert flash_crc(image, size) == _reference_crc(padded)


def test_image_larger_than_flash_is_a_codec_error() -> None:
    with pytest.raises(BootloaderCodecError, match="does not fit"):
        flash_crc(b"\x00" * 5, 4)


# ------------------------------------------------------------- external flash (EXTF_*)


def test_extf_requests_carry_their_size_word() -> None:
    assert bl.encode_extf_erase(0x1234) == bytes([0x34, 0x34, 0x12, 0, 0, 0x20])
    assert bl.encode_extf_get_crc(8) == bytes([0x37, 8, 0, 0, 0, 0x20])
    assert bl.Opcode.EXTF_READ_MULTI == 0x36  # defined upstream, used by no uploader
    with pytest.raises(ValueError):
        bl.encode_extf_erase(1 << 32)


@given(image=st.binary(max_size=2000), size=st.sampled_from([4, 64, 252]))
def test_extf_prog_multi_requests_are_prog_multi_with_the_extf_opcode(
    image: bytes, size: int
) -> None:
    requests = list(bl.extf_prog_multi_requests(image, size))
    assert all(r[0] == bl.Opcode.EXTF_PROG_MULTI and r[-1] == bl.EOC for r in requests)
    assert all(r[1] == len(r) - 3 for r in requests)
    assert b"".join(r[2:-1] for r in requests) == image + b"\xff" * (-len(image) % 4)


@_PROPS
@given(image=st.binary(max_size=600).map(lambda b: b + b"\xff" * (-len(b) % 4)))
def test_extf_crc_is_the_flash_crc_rule_without_padding(image: bytes) -> None:
    assert bl.extf_crc(image, len(image)) == flash_crc(image, len(image))
    assert bl.extf_crc(image + b"\x00" * 8, len(image)) == _reference_crc(image)


def test_extf_crc_of_more_than_the_image_is_a_codec_error() -> None:
    with pytest.raises(BootloaderCodecError, match="CRC of 9 bytes"):
        bl.extf_crc(b"\x00" * 8, 9)


_ERASE_PERCENTS = st.lists(st.integers(0, 100), max_size=40).map(lambda p: sorted(p) + [100])


@_PROPS
@given(
    percents=_ERASE_PERCENTS,
    status=st.sampled_from(list(Status)),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
def test_extf_erase_reply_round_trips_however_it_is_split(
    percents: list[int], status: Status, cuts: list[int]
) -> None:
    wire = bl.encode_extf_erase_reply(percents, status)
    buf, fed, percent, seen = bytearray(), 0, 0, None
    for end in [*sorted(c for c in cuts if c < len(wire)), len(wire)]:
        buf += wire[fed:end]
        fed = max(fed, end)
        state = bl.parse_extf_erase(buf, percent)
        del buf[: state.consumed]
        percent, seen = state.percent, state.done
        if seen is not None:
            break
    assert (percent, seen) == (100, status)


def test_extf_erase_percent_18_is_not_taken_for_insync() -> None:
    state = bl.parse_extf_erase(bytes([0, 18, 16, 50, 100, 0x12, 0x10]))
    assert (state.percent, state.done, state.consumed) == (100, Status.OK, 7)


def test_extf_erase_without_its_closing_sync_needs_more_bytes() -> None:
    state = bl.parse_extf_erase(bytes([0, 50, 95, 0x12]))
    assert (state.percent, state.done, state.consumed) == (95, None, 3)


@_PROPS
@given(buf=st.binary(max_size=80), percent=st.integers(0, 100))
def test_extf_erase_garbage_raises_only_codec_errors(buf: bytes, percent: int) -> None:
    try:
        state = bl.parse_extf_erase(buf, percent)
    except BootloaderCodecError:
        return
    assert 0 <= state.consumed <= len(buf) and 0 <= state.percent <= 100


def test_extf_erase_reply_refuses_percents_over_100() -> None:
    with pytest.raises(ValueError, match="101"):
        bl.encode_extf_erase_reply([50, 101])
