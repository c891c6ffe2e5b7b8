"""DFU 1.1 / DfuSe codec: status, commands, memory layouts, functional descriptor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.firmware import dfuse_codec as dfu
from hil.firmware.dfuse_codec import (
    Command,
    DfuCodecError,
    DfuseCommand,
    DfuState,
    DfuStatus,
    FunctionalDescriptor,
    MemoryLayout,
    Sector,
    StatusReply,
)

_PROPS = settings(max_examples=200, deadline=None)
F4_LAYOUT = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg"


# ----------------------------------------------------------------------- numbers


def test_numbers_match_the_dfu_spec() -> None:
    assert (dfu.DfuRequest.DNLOAD, dfu.DfuRequest.GETSTATUS, dfu.DfuRequest.ABORT) == (1, 3, 6)
    assert (DfuState.DFU_IDLE, DfuState.DFU_DNBUSY, DfuState.DFU_ERROR) == (2, 4, 10)
    assert (DfuStatus.ERR_ADDRESS, DfuStatus.ERR_STALLEDPKT) == (8, 15)
    assert (dfu.REQUEST_TYPE_OUT, dfu.REQUEST_TYPE_IN) == (0x21, 0xA1)
    assert (dfu.STM32_ROM_VID, dfu.STM32_ROM_PID) == (0x0483, 0xDF11)


# --------------------------------------------------------------------- GETSTATUS


def test_getstatus_layout_is_status_u24_timeout_state_istring() -> None:
    reply = dfu.parse_status(b"\x00\x64\x00\x00\x04\x00")
    assert reply == StatusReply(DfuStatus.OK, 100, DfuState.DFU_DNBUSY, 0)


@_PROPS
@given(
    status=st.sampled_from(list(DfuStatus)),
    timeout=st.integers(0, 0xFFFFFF),
    state=st.sampled_from(list(DfuState)),
    istring=st.integers(0, 255),
)
def test_getstatus_round_trips(status, timeout, state, istring) -> None:
    reply = StatusReply(status, timeout, state, istring)
    wire = dfu.build_status(reply)
    assert len(wire) == 6 and dfu.parse_status(wire) == reply


@pytest.mark.parametrize(
    ("wire", "needle"),
    [
        (b"\x00\x00\x00\x00\x02", "6 bytes"),
        (b"\x10\x00\x00\x00\x02\x00", "status 16"),
        (b"\x00\x00\x00\x00\x0b\x00", "state 11"),
    ],
)
def test_bad_getstatus_is_a_codec_error(wire: bytes, needle: str) -> None:
    with pytest.raises(DfuCodecError, match=needle):
        dfu.parse_status(wire)


@_PROPS
@given(wire=st.binary(max_size=10))
def test_getstatus_garbage_raises_only_codec_errors(wire: bytes) -> None:
    try:
        dfu.parse_status(wire)
    except DfuCodecError:
        pass


# ------------------------------------------------------------------ DfuSe commands


def test_dfuse_command_payloads() -> None:
    assert dfu.set_address_command(0x08000000) == b"\x21\x00\x00\x00\x08"
    assert dfu.erase_page_command(0x08004000) == b"\x41\x00\x40\x00\x08"
    assert dfu.mass_erase_command() == b"\x41"
    assert dfu.read_unprotect_command() == b"\x92"


@_PROPS
@given(address=st.integers(0, 2**32 - 1))
def test_addressed_commands_round_trip(address: int) -> None:
    assert dfu.parse_command(dfu.set_address_command(address)) == Command(
        DfuseCommand.SET_ADDRESS, address
    )
    assert dfu.parse_command(dfu.erase_page_command(address)) == Command(
        DfuseCommand.ERASE, address
    )


def test_bare_commands_round_trip() -> None:
    assert dfu.parse_command(dfu.mass_erase_command()) == Command(DfuseCommand.ERASE, None)
    assert dfu.parse_command(dfu.read_unprotect_command()) == Command(
        DfuseCommand.READ_UNPROTECT, None
    )


@_PROPS
@given(payload=st.binary(max_size=8))
def test_command_garbage_raises_only_codec_errors(payload: bytes) -> None:
    try:
        dfu.parse_command(payload)
    except DfuCodecError:
        pass


def test_data_blocks_are_relative_to_the_pointer() -> None:
    assert dfu.data_block_address(2, 2048, 0x08000000) == 0x08000000
    assert dfu.data_block_address(3, 2048, 0x08000000) == 0x08000800
    with pytest.raises(ValueError):
        dfu.data_block_address(0, 2048, 0)


# ----------------------------------------------------------------- memory layout


def test_f4_layout_parses_into_twelve_sectors() -> None:
    layout = dfu.parse_memory_layout(F4_LAYOUT)
    assert layout.name == "Internal Flash"
    assert [s.size // 1024 for s in layout.sectors] == [16] * 4 + [64] + [128] * 7
    assert layout.sectors[4] == Sector(0x08010000, 65536, True, True, True)
    assert layout.sectors[-1].end == 0x08100000
    assert layout.sector_at(0x08020000) == layout.sectors[5]
    assert layout.sector_at(0x08100000) is None


def test_f4_layout_builds_back_to_the_same_string() -> None:
    assert dfu.build_memory_layout(dfu.parse_memory_layout(F4_LAYOUT)) == F4_LAYOUT


def test_type_letter_bits_are_readable_erasable_writable() -> None:
    (sector,) = dfu.parse_memory_layout("@Option Bytes  /0x1FFFC000/01*016 e").sectors
    assert (sector.address, sector.size) == (0x1FFFC000, 16)
    assert (sector.readable, sector.erasable, sector.writable) == (True, False, True)
    (sector,) = dfu.parse_memory_layout("@OTP /0x1FFF7800/01*512 a").sectors
    assert (sector.readable, sector.erasable, sector.writable) == (True, False, False)


def test_several_address_groups_are_supported() -> None:
    layout = dfu.parse_memory_layout("@Flash/0x08000000/02*001Ka/0x08100000/01*001Mg")
    assert [s.address for s in layout.sectors] == [0x08000000, 0x08000400, 0x08100000]
    assert layout.sectors[-1].size == 1 << 20


@st.composite
def layouts(draw: st.DrawFn) -> MemoryLayout:
    address = draw(st.integers(0, 0x1000_0000))
    sectors = []
    for _ in range(draw(st.integers(1, 20))):
        size = draw(st.sampled_from([16, 1000, 1024, 16 * 1024, 128 * 1024, 1 << 20]))
        bits = draw(st.integers(1, 7))
        sectors.append(Sector(address, size, bool(bits & 1), bool(bits & 2), bool(bits & 4)))
        address += size + draw(st.sampled_from([0, 0, 0x10000]))
    name = draw(st.text("ABCDEFGHIJ klmnop", min_size=1, max_size=20).map(str.strip).filter(bool))
    return MemoryLayout(name, tuple(sectors))


@_PROPS
@given(layout=layouts())
def test_memory_layout_round_trips(layout: MemoryLayout) -> None:
    assert dfu.parse_memory_layout(dfu.build_memory_layout(layout)) == layout


@pytest.mark.parametrize(
    "text",
    [
        "Internal Flash/0x08000000/04*016Kg",
        "@Flash/0x08000000/04*016Kz",
        "@Flash/0x08000000/",
        "@Flash/0xFFFFFFFF/02*1Kg",
    ],
)
def test_bad_layout_strings_are_codec_errors(text: str) -> None:
    with pytest.raises(DfuCodecError, match="memory layout"):
        dfu.parse_memory_layout(text)


@_PROPS
@given(text=st.text("@/0x123456789abcdefKMB*,gaz ", max_size=60))
def test_layout_garbage_raises_only_codec_errors(text: str) -> None:
    try:
        dfu.parse_memory_layout(text)
    except DfuCodecError:
        pass


def test_absurd_sector_counts_are_refused_quickly() -> None:
    with pytest.raises(DfuCodecError):
        dfu.parse_memory_layout("@Flash/0x00000000/99999999*1Bg")


# ------------------------------------------------------------ functional descriptor


def test_stm32_functional_descriptor_bytes() -> None:
    wire = dfu.build_functional_descriptor(FunctionalDescriptor())
    assert wire == bytes([9, 0x21, 0x0B, 255, 0, 0x00, 0x08, 0x1A, 0x01])
    desc = dfu.parse_functional_descriptor(wire)
    assert desc.can_download and desc.can_upload and desc.will_detach
    assert not desc.manifestation_tolerant


@_PROPS
@given(
    attributes=st.integers(0, 255),
    detach=st.integers(0, 0xFFFF),
    transfer=st.integers(0, 0xFFFF),
    version=st.integers(0, 0xFFFF),
)
def test_functional_descriptor_round_trips(attributes, detach, transfer, version) -> None:
    desc = FunctionalDescriptor(attributes, detach, transfer, version)
    assert dfu.parse_functional_descriptor(dfu.build_functional_descriptor(desc)) == desc


def test_dfu_1_0_descriptor_without_version_reads_as_0x0100() -> None:
    assert (
        dfu.parse_functional_descriptor(bytes([7, 0x21, 0x03, 10, 0, 0, 4])).dfu_version == 0x0100
    )


@_PROPS
@given(wire=st.binary(max_size=12))
def test_functional_descriptor_garbage_raises_only_codec_errors(wire: bytes) -> None:
    try:
        dfu.parse_functional_descriptor(wire)
    except DfuCodecError:
        pass
