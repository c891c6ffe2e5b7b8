"""The PX4 / ArduPilot serial bootloader protocol as pure data: requests, replies, CRC.

Requests are `<opcode>[args]0x20`, replies `[data]0x12<status>`, words little-endian u32
(PROTOCOLS.md section 1). Nothing here touches a port or a clock: the flasher sends what
`encode_*` returns and feeds what it reads to `parse_reply`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

from hil.errors import HilError

INSYNC = 0x12
EOC = 0x20

PROG_MULTI_MAX = 252
"""Largest PROG_MULTI / READ_MULTI payload: a u8 length that is a multiple of 4."""

BL_REV_MIN = 2
BL_REV_MAX = 5
"""Bootloader revisions the uploaders accept; ours reports 5."""

CHIP_DES_MAX = 1024
"""Sanity bound on GET_CHIP_DES's length word, so garbage cannot ask for megabytes."""

_FF_CHUNK = b"\xff" * (1 << 16)


class BootloaderCodecError(HilError):
    """Bytes from a bootloader do not form a reply the protocol allows."""


class Opcode(IntEnum):
    """Request opcodes."""

    GET_SYNC = 0x21
    GET_DEVICE = 0x22
    CHIP_ERASE = 0x23
    PROG_MULTI = 0x27
    READ_MULTI = 0x28
    GET_CRC = 0x29
    GET_OTP = 0x2A
    GET_SN = 0x2B
    GET_CHIP = 0x2C
    SET_BOOT_DELAY = 0x2D
    GET_CHIP_DES = 0x2E
    REBOOT = 0x30
    SET_BAUD = 0x33
    # ArduPilot external flash (AP_Bootloader bl_protocol.cpp; uploader.py defines all four
    # and uses 0x34, 0x35 and 0x37; 0x36 is reserved in PX4-Bootloader bl.c).
    EXTF_ERASE = 0x34
    EXTF_PROG_MULTI = 0x35
    EXTF_READ_MULTI = 0x36
    EXTF_GET_CRC = 0x37


class Status(IntEnum):
    """The byte after INSYNC in every reply."""

    OK = 0x10
    FAILED = 0x11
    INVALID = 0x13  # bootloader rev3+
    BAD_SILICON_REV = 0x14  # bootloader rev5+


_REFUSALS = frozenset({Status.FAILED, Status.INVALID, Status.BAD_SILICON_REV})


class DeviceInfo(IntEnum):
    """GET_DEVICE arguments; each answers one u32."""

    BL_REV = 1
    BOARD_ID = 2
    BOARD_REV = 3
    FLASH_SIZE = 4  # flashable bytes, after the bootloader
    VEC_AREA = 5
    EXTF_SIZE = 6  # ArduPilot external flash


# ---------------------------------------------------------------------------- requests


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit an unsigned 32-bit word")
    return struct.pack("<I", value)


def encode_get_sync() -> bytes:
    """GET_SYNC: `21 20`, answered `12 10`; the first thing a host sends."""
    return bytes([Opcode.GET_SYNC, EOC])


def encode_get_device(arg: int) -> bytes:
    """GET_DEVICE with a `DeviceInfo` argument; answered by a u32."""
    if not 0 <= arg <= 0xFF:
        raise ValueError(f"GET_DEVICE argument {arg} does not fit a byte")
    return bytes([Opcode.GET_DEVICE, arg, EOC])


def encode_chip_erase() -> bytes:
    """CHIP_ERASE: the reply comes only when the erase is done (tens of seconds)."""
    return bytes([Opcode.CHIP_ERASE, EOC])


def _check_multi_length(length: int, what: str) -> None:
    if length <= 0 or length % 4 or length > PROG_MULTI_MAX:
        raise ValueError(
            f"{what} length {length} must be a multiple of 4 between 4 and {PROG_MULTI_MAX}"
        )


def encode_prog_multi(data: bytes) -> bytes:
    """PROG_MULTI: program `data` (4..252 bytes, multiple of 4) at the write pointer."""
    _check_multi_length(len(data), "PROG_MULTI")
    return bytes([Opcode.PROG_MULTI, len(data)]) + bytes(data) + bytes([EOC])


def prog_multi_chunks(image: bytes, chunk_size: int = PROG_MULTI_MAX) -> Iterator[bytes]:
    """Split an image into PROG_MULTI payloads, the last padded with 0xFF to a multiple of 4."""
    _check_multi_length(chunk_size, "chunk")
    padded = bytes(image) + b"\xff" * (-len(image) % 4)
    for start in range(0, len(padded), chunk_size):
        yield padded[start : start + chunk_size]


def prog_multi_requests(image: bytes, chunk_size: int = PROG_MULTI_MAX) -> Iterator[bytes]:
    """`encode_prog_multi` of each of `prog_multi_chunks(image)`, built with one copy each."""
    _check_multi_length(chunk_size, "chunk")
    padded = memoryview(bytes(image) + b"\xff" * (-len(image) % 4))
    eoc = bytes([EOC])
    full = bytes([Opcode.PROG_MULTI, chunk_size])
    for start in range(0, len(padded), chunk_size):
        chunk = padded[start : start + chunk_size]
        head = full if len(chunk) == chunk_size else bytes([Opcode.PROG_MULTI, len(chunk)])
        yield b"".join((head, chunk, eoc))


def encode_read_multi(length: int) -> bytes:
    """READ_MULTI: read `length` bytes (4..252, multiple of 4) at the read pointer."""
    _check_multi_length(length, "READ_MULTI")
    return bytes([Opcode.READ_MULTI, length, EOC])


def encode_get_crc() -> bytes:
    """GET_CRC: the bootloader's CRC over the whole flashable area (see `flash_crc`)."""
    return bytes([Opcode.GET_CRC, EOC])


def encode_get_otp(address: int) -> bytes:
    """GET_OTP: one u32 of one-time-programmable memory at byte `address`."""
    return bytes([Opcode.GET_OTP]) + _u32(address) + bytes([EOC])


def encode_get_sn(index: int) -> bytes:
    """GET_SN: one u32 of the chip's unique id; `index` is a byte offset 0, 4 or 8."""
    return bytes([Opcode.GET_SN]) + _u32(index) + bytes([EOC])


def encode_get_chip() -> bytes:
    """GET_CHIP: the MCU id code as a u32."""
    return bytes([Opcode.GET_CHIP, EOC])


def encode_get_chip_des() -> bytes:
    """GET_CHIP_DES: u32 length then ASCII "family,revision"."""
    return bytes([Opcode.GET_CHIP_DES, EOC])


def encode_set_boot_delay(seconds: int) -> bytes:
    """SET_BOOT_DELAY: seconds the bootloader waits for a host before booting the app."""
    if not 0 <= seconds <= 0xFF:
        raise ValueError(f"boot delay {seconds} s does not fit a byte")
    return bytes([Opcode.SET_BOOT_DELAY, seconds, EOC])


def encode_set_baud(baud: int) -> bytes:
    """SET_BAUD (UART only)."""
    return bytes([Opcode.SET_BAUD]) + _u32(baud) + bytes([EOC])


def encode_reboot() -> bytes:
    """REBOOT: answered `12 10`; the application starts about 100 ms later."""
    return bytes([Opcode.REBOOT, EOC])


def encode_extf_erase(size: int) -> bytes:
    """EXTF_ERASE: erase the external flash sectors holding `size` bytes.

    Answered INSYNC OK at once, then one percent byte per sector step, then INSYNC OK
    when done (`parse_extf_erase`).
    """
    return bytes([Opcode.EXTF_ERASE]) + _u32(size) + bytes([EOC])


def extf_prog_multi_requests(image: bytes, chunk_size: int = PROG_MULTI_MAX) -> Iterator[bytes]:
    """EXTF_PROG_MULTI requests for `image` (padded with 0xFF to a multiple of 4), written
    at the external flash pointer, which EXTF_ERASE resets to 0."""
    for request in prog_multi_requests(image, chunk_size):
        yield bytes([Opcode.EXTF_PROG_MULTI]) + request[1:]


def encode_extf_get_crc(size: int) -> bytes:
    """EXTF_GET_CRC: the CRC of the first `size` bytes of external flash (see `extf_crc`)."""
    return bytes([Opcode.EXTF_GET_CRC]) + _u32(size) + bytes([EOC])


# ----------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Reply:
    """One reply: its status, the data before INSYNC, and how many bytes it used."""

    status: Status
    data: bytes
    consumed: int

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def u32(self) -> int:
        """The data as one little-endian u32 (GET_DEVICE, GET_CRC, GET_SN, ...)."""
        if len(self.data) != 4:
            raise BootloaderCodecError(
                f"expected a 4-byte word before the sync, got {len(self.data)} bytes"
            )
        return int.from_bytes(self.data, "little")


def encode_reply(status: Status | int = Status.OK, data: bytes = b"") -> bytes:
    """A reply as a bootloader sends it (for virtual bootloaders and tests)."""
    return bytes(data) + bytes([INSYNC, Status(status)])


def _status(byte: int, where: str, buf: bytes) -> Status:
    try:
        return Status(byte)
    except ValueError:
        raise BootloaderCodecError(
            f"unknown status byte 0x{byte:02X} after INSYNC {where}; received {buf[:16].hex(' ')}"
        ) from None


def parse_reply(buf: bytes, data_len: int = 0, *, at_end: bool = False) -> Reply | None:
    """Parse one reply expecting `data_len` data bytes; None means "need more bytes".

    A refusal (FAILED / INVALID / BAD_SILICON_REV) comes without data. Data can begin
    with the same two bytes, so a short buffer that looks like a refusal is only taken
    as one when `at_end` says no more bytes are coming (the caller's read timed out).
    Anything else is garbage: BootloaderCodecError, with the bytes seen.
    """
    buf = bytes(buf)
    full = data_len + 2
    if len(buf) >= full and buf[data_len] == INSYNC:
        status = _status(buf[data_len + 1], f"at byte {data_len}", buf)
        if status is Status.OK:
            return Reply(status, buf[:data_len], full)
        if data_len == 0:
            return Reply(status, b"", 2)
    if len(buf) >= 2 and buf[0] == INSYNC and buf[1] in _REFUSALS:
        if len(buf) >= full or at_end or data_len == 0:
            return Reply(Status(buf[1]), b"", 2)
        return None
    if len(buf) >= full:
        raise BootloaderCodecError(
            f"expected {data_len} data bytes then INSYNC 0x12 and a status; "
            f"received {buf[: full + 8].hex(' ')}: not in sync (application running, wrong baud?)"
        )
    if data_len == 0 and buf[:1] not in (b"", bytes([INSYNC])):
        raise BootloaderCodecError(
            f"expected INSYNC 0x12, received {buf[:8].hex(' ')}: not in sync "
            "(application running, wrong baud?)"
        )
    if at_end:
        raise BootloaderCodecError(
            f"reply truncated: expected {full} bytes, received {len(buf)} ({buf.hex(' ')})"
        )
    return None


@dataclass(frozen=True)
class ChipDescription:
    """GET_CHIP_DES answer: "family,revision" split in two."""

    family: str
    revision: str
    consumed: int


def encode_chip_des_reply(family: str, revision: str) -> bytes:
    """The GET_CHIP_DES reply a bootloader sends for this family and revision."""
    text = f"{family},{revision}".encode("ascii")
    return encode_reply(Status.OK, _u32(len(text)) + text)


def parse_chip_des_reply(buf: bytes, *, at_end: bool = False) -> ChipDescription | Reply | None:
    """Parse GET_CHIP_DES: a description, a refusal `Reply`, or None for "need more bytes"."""
    buf = bytes(buf)
    refused = len(buf) >= 2 and buf[0] == INSYNC and buf[1] in _REFUSALS
    if len(buf) < 4:
        if not at_end:
            return None
        if refused:
            return Reply(Status(buf[1]), b"", 2)
        raise BootloaderCodecError(
            f"GET_CHIP_DES reply truncated: received {len(buf)} bytes ({buf.hex(' ')})"
        )
    length = int.from_bytes(buf[:4], "little")
    if length > CHIP_DES_MAX:
        # A refusal's "12 1x" read as a length word is >= 0x1000, so it always lands here.
        if refused:
            return Reply(Status(buf[1]), b"", 2)
        raise BootloaderCodecError(
            f"GET_CHIP_DES length word {length} exceeds {CHIP_DES_MAX}; received "
            f"{buf[:8].hex(' ')}: not in sync"
        )
    reply = parse_reply(buf, 4 + length, at_end=at_end)
    if reply is None or not reply.ok:
        return reply
    text = reply.data[4:].decode("ascii", errors="replace")
    family, _, revision = text.partition(",")
    return ChipDescription(family, revision, reply.consumed)


EXTF_ERASE_LAST_PERCENT = 90
"""uploader.py reads percent bytes until one reaches 90, then waits for INSYNC OK."""


@dataclass(frozen=True)
class ExtfEraseProgress:
    """How far an EXTF_ERASE reply has come: the last percent seen, and the final status
    once the closing INSYNC arrived (None before)."""

    percent: int
    done: Status | None
    consumed: int


def encode_extf_erase_reply(percents: Sequence[int], status: Status | int = Status.OK) -> bytes:
    """The bytes an EXTF_ERASE answer takes after its first INSYNC OK: the percent bytes
    (each 0..100), then INSYNC and `status` (for virtual bootloaders and tests)."""
    for percent in percents:
        if not 0 <= percent <= 100:
            raise ValueError(f"percent {percent} is not within 0..100")
    return bytes(percents) + bytes([INSYNC, Status(status)])


def parse_extf_erase(buf: bytes, percent: int = 0) -> ExtfEraseProgress:
    """Parse what follows EXTF_ERASE's first INSYNC OK, given the last `percent` seen.

    As uploader.py reads it: bytes are percents until one reaches 90 (a percent of 18 is
    0x12, so INSYNC only counts after that); then bytes up to INSYNC are further
    percents and the byte after INSYNC is the final status. A byte over 100 where a
    percent belongs is garbage: BootloaderCodecError.
    """
    buf = bytes(buf)
    at = 0
    while at < len(buf):
        byte = buf[at]
        if percent >= EXTF_ERASE_LAST_PERCENT and byte == INSYNC:
            if at + 1 >= len(buf):
                break
            status = _status(buf[at + 1], "closing EXTF_ERASE", buf)
            return ExtfEraseProgress(percent, status, at + 2)
        if byte > 100:
            raise BootloaderCodecError(
                f"EXTF_ERASE progress byte 0x{byte:02X} is not a percent; received "
                f"{buf[:16].hex(' ')}: not in sync"
            )
        percent = byte
        at += 1
    return ExtfEraseProgress(percent, None, at)


def format_serial_number(words: Sequence[int]) -> str:
    """The chip serial as uploaders print it: each GET_SN word byte-reversed, in hex."""
    return "".join(f"{w & 0xFFFFFFFF:08x}" for w in words)


# --------------------------------------------------------------------------------- CRC


def flash_crc(image: bytes, flash_size: int) -> int:
    """The CRC GET_CRC must answer after `image` was programmed into `flash_size` bytes.

    Reflected CRC-32, init 0, no final xor, over the image padded with 0xFF to a multiple
    of 4 and then with 0xFF to `flash_size`. The padding is fed in 64 KiB pieces rather
    than built whole.
    """
    padded_len = len(image) + (-len(image) % 4)
    if padded_len > flash_size:
        raise BootloaderCodecError(
            f"image of {len(image)} bytes does not fit the board's {flash_size} bytes of flash"
        )
    crc = zlib.crc32(image, 0xFFFFFFFF)
    remaining = flash_size - len(image)
    while remaining:
        step = min(remaining, len(_FF_CHUNK))
        crc = zlib.crc32(_FF_CHUNK[:step], crc)
        remaining -= step
    return crc ^ 0xFFFFFFFF


def extf_crc(image: bytes, size: int) -> int:
    """The CRC EXTF_GET_CRC answers for `size` bytes after `image` was programmed: the same
    CRC-32 (init 0, no final xor) over the first `size` bytes, no padding to the flash
    size (uploader.py `firmware.extf_crc`; bl_protocol.cpp also sums a tail of 1..3 bytes).
    """
    if not 0 <= size <= len(image):
        raise BootloaderCodecError(f"CRC of {size} bytes asked of an image of {len(image)}")
    return zlib.crc32(bytes(image[:size]), 0xFFFFFFFF) ^ 0xFFFFFFFF
