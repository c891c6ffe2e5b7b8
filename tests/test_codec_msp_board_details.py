"""MSP_BOARD_INFO's fields after the target name, MSP_BUILD_INFO and MSP_UID (the replies
the Betaflight flasher reads), and the STM32 DFU serial computed from a unique id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.codecs.msp import (
    SIGNATURE_LENGTH,
    BoardDetails,
    BoardInfo,
    BuildInfo,
    MspError,
    Uid,
)
from hil.usb.stm32_uid import stm32_usb_serial

_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
_u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def _details(draw) -> BoardDetails:
    names = (draw(_text), draw(_text))
    depth = draw(st.integers(0, 2))
    if depth == 0:
        return BoardDetails(*names, None, None, draw(st.binary(max_size=SIGNATURE_LENGTH - 1)))
    signature = draw(st.binary(min_size=SIGNATURE_LENGTH, max_size=SIGNATURE_LENGTH))
    if depth == 1:
        return BoardDetails(*names, signature)
    return BoardDetails(*names, signature, draw(st.integers(0, 255)), draw(st.binary(max_size=16)))


_date = st.text("Jan 0123456789", min_size=11, max_size=11)
_time = st.text("0123456789:", min_size=8, max_size=8)
_build = st.builds(BuildInfo, _date, _time, st.binary(min_size=7, max_size=7), st.binary(max_size=8))


@given(st.one_of(_details(), _build, st.builds(Uid, st.tuples(_u32, _u32, _u32))))
def test_decode_inverts_encode(value) -> None:
    assert type(value).decode(value.encode()) == value


@given(st.binary(max_size=120))
def test_garbage_raises_only_the_codec_error(data: bytes) -> None:
    for decode in (BoardDetails.decode, BuildInfo.decode, Uid.decode):
        try:
            decode(data)
        except MspError:
            pass


def test_a_betaflight_46_board_info_reply_reads_the_board_name_and_mcu_type() -> None:
    """The reply layout of msp.c MSP_BOARD_INFO: identifier, hw revision, type,
    capabilities, target, board, manufacturer, signature, MCU type, configuration state..."""
    rest = BoardDetails("MATEKF405SE", "MTKS", bytes(32), 1, b"\x02\x40\x1f").encode()
    info = BoardInfo.decode(BoardInfo("S405", 0, 2, 1, "STM32F405", rest).encode())
    details = BoardDetails.decode(info.rest)
    assert (info.target_name, details.board_name, details.manufacturer_id, details.mcu_type_id) == (
        "STM32F405", "MATEKF405SE", "MTKS", 1,
    )  # fmt: skip


def test_a_build_info_reply_keeps_the_compiler_date_and_time() -> None:
    info = BuildInfo.decode(b"Dec  5 2026" + b"00:00:36" + b"abcdef0" + b"\x00\x00")
    assert (info.date, info.time, info.revision) == ("Dec  5 2026", "00:00:36", b"abcdef0")


def test_the_dfu_serial_of_an_f4_is_uid0_plus_uid2_then_the_top_of_uid1() -> None:
    # libopencm3 issue #760: UID 002d0030 3334510b 32313533 -> serial 325e35633334
    assert stm32_usb_serial((0x002D0030, 0x3334510B, 0x32313533)) == "325E35633334"
    assert stm32_usb_serial((0xFFFFFFFF, 0, 2)) == "000000010000"  # the 32-bit sum wraps
    with pytest.raises(ValueError):
        stm32_usb_serial((1, 2))
