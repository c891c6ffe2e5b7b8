"""USB DFU 1.1 with ST's DfuSe extensions, as pure data (PROTOCOLS.md section 2).

Request, state and status numbers; the 6-byte GETSTATUS answer; DfuSe command payloads;
the memory-layout string of an alt setting; the DFU functional descriptor. A USB driver
sends and receives these bytes; nothing here touches a device or a clock.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum

from hil.errors import HilError

STM32_ROM_VID = 0x0483
STM32_ROM_PID = 0xDF11
REQUEST_TYPE_OUT = 0x21  # class, interface, host to device
REQUEST_TYPE_IN = 0xA1  # class, interface, device to host
DFUSE_VERSION = 0x011A
DFU_FUNCTIONAL_DESCRIPTOR_TYPE = 0x21
FIRST_DATA_BLOCK = 2
"""DNLOAD wValue 0 carries DfuSe commands; data blocks start at 2."""

_ADDRESS_LIMIT = 1 << 32
MAX_SECTORS = 1 << 16
"""More sectors than any STM32 has; a layout string claiming more is garbage."""


class DfuCodecError(HilError):
    """Bytes from a DFU device (or a layout string) do not match the DFU/DfuSe formats."""


class DfuRequest(IntEnum):
    """Class-specific bRequest values."""

    DETACH = 0
    DNLOAD = 1
    UPLOAD = 2
    GETSTATUS = 3
    CLRSTATUS = 4
    GETSTATE = 5
    ABORT = 6


class DfuState(IntEnum):
    """bState in GETSTATUS / GETSTATE."""

    APP_IDLE = 0
    APP_DETACH = 1
    DFU_IDLE = 2
    DFU_DNLOAD_SYNC = 3
    DFU_DNBUSY = 4
    DFU_DNLOAD_IDLE = 5
    DFU_MANIFEST_SYNC = 6
    DFU_MANIFEST = 7
    DFU_MANIFEST_WAIT_RESET = 8
    DFU_UPLOAD_IDLE = 9
    DFU_ERROR = 10


class DfuStatus(IntEnum):
    """bStatus in GETSTATUS."""

    OK = 0
    ERR_TARGET = 1
    ERR_FILE = 2
    ERR_WRITE = 3
    ERR_ERASE = 4
    ERR_CHECK_ERASED = 5
    ERR_PROG = 6
    ERR_VERIFY = 7
    ERR_ADDRESS = 8
    ERR_NOTDONE = 9
    ERR_FIRMWARE = 10
    ERR_VENDOR = 11
    ERR_USBR = 12
    ERR_POR = 13
    ERR_UNKNOWN = 14
    ERR_STALLEDPKT = 15


class DfuseCommand(IntEnum):
    """First byte of a DfuSe command (DNLOAD with wValue 0)."""

    SET_ADDRESS = 0x21
    ERASE = 0x41  # with an address: one page; alone: mass erase
    READ_UNPROTECT = 0x92


# ------------------------------------------------------------------------- GETSTATUS


@dataclass(frozen=True)
class StatusReply:
    """The 6-byte GETSTATUS answer."""

    status: DfuStatus
    poll_timeout_ms: int
    state: DfuState
    string_index: int = 0


def build_status(reply: StatusReply) -> bytes:
    """GETSTATUS bytes: status, pollTimeout u24 LE (ms), state, iString."""
    if not 0 <= reply.poll_timeout_ms <= 0xFFFFFF:
        raise ValueError(f"poll timeout {reply.poll_timeout_ms} ms does not fit 24 bits")
    return (
        bytes([DfuStatus(reply.status)])
        + reply.poll_timeout_ms.to_bytes(3, "little")
        + bytes([DfuState(reply.state), reply.string_index])
    )


_STATUSES = {member.value: member for member in DfuStatus}
_STATES = {member.value: member for member in DfuState}


def parse_status(data: bytes) -> StatusReply:
    """Parse a GETSTATUS answer; anything but 6 valid bytes is a DfuCodecError."""
    data = bytes(data)
    if len(data) != 6:
        raise DfuCodecError(
            f"GETSTATUS answer must be 6 bytes, got {len(data)} ({data[:16].hex(' ')})"
        )
    status = _STATUSES.get(data[0])  # a dict look-up: this runs twice per DFU block
    if status is None:
        raise DfuCodecError(f"GETSTATUS status {data[0]} is not a DFU status (0..15)")
    state = _STATES.get(data[4])
    if state is None:
        raise DfuCodecError(f"GETSTATUS state {data[4]} is not a DFU state (0..10)")
    return StatusReply(status, data[1] | data[2] << 8 | data[3] << 16, state, data[5])


# --------------------------------------------------------------------- DfuSe commands


def _addressed(command: DfuseCommand, address: int) -> bytes:
    if not 0 <= address < _ADDRESS_LIMIT:
        raise ValueError(f"address {address:#x} does not fit 32 bits")
    return bytes([command]) + struct.pack("<I", address)


def set_address_command(address: int) -> bytes:
    """DfuSe "set address pointer": `21 addr`; later data blocks are relative to it."""
    return _addressed(DfuseCommand.SET_ADDRESS, address)


def erase_page_command(address: int) -> bytes:
    """DfuSe "erase page/sector containing address": `41 addr`."""
    return _addressed(DfuseCommand.ERASE, address)


def mass_erase_command() -> bytes:
    """DfuSe mass erase: `41` alone."""
    return bytes([DfuseCommand.ERASE])


def read_unprotect_command() -> bytes:
    """DfuSe read-unprotect: `92`; the device mass-erases and resets."""
    return bytes([DfuseCommand.READ_UNPROTECT])


@dataclass(frozen=True)
class Command:
    """A decoded DfuSe command; `address` is None for mass erase and read-unprotect."""

    command: DfuseCommand
    address: int | None


def parse_command(payload: bytes) -> Command:
    """Decode a DNLOAD wValue-0 payload, as a DfuSe device does."""
    payload = bytes(payload)
    if not payload:
        raise DfuCodecError("empty DfuSe command (a zero-length DNLOAD means 'leave DFU')")
    try:
        command = DfuseCommand(payload[0])
    except ValueError:
        raise DfuCodecError(f"unknown DfuSe command 0x{payload[0]:02X}") from None
    if len(payload) == 5 and command is not DfuseCommand.READ_UNPROTECT:
        return Command(command, struct.unpack_from("<I", payload, 1)[0])
    if len(payload) == 1 and command is not DfuseCommand.SET_ADDRESS:
        return Command(command, None)
    raise DfuCodecError(
        f"DfuSe command 0x{payload[0]:02X} with {len(payload) - 1} argument bytes is not valid"
    )


def data_block_address(block: int, transfer_size: int, pointer: int) -> int:
    """Where DNLOAD/UPLOAD block `block` (wValue >= 2) lands: `(block - 2) * size + pointer`."""
    if block < FIRST_DATA_BLOCK:
        raise ValueError(f"block {block} is a command block, data blocks start at 2")
    return (block - FIRST_DATA_BLOCK) * transfer_size + pointer


# ---------------------------------------------------------------------- memory layout


@dataclass(frozen=True)
class Sector:
    """One flash sector of an alt setting's memory layout."""

    address: int
    size: int
    readable: bool
    erasable: bool
    writable: bool

    @property
    def end(self) -> int:
        return self.address + self.size

    @property
    def type_letter(self) -> str:
        """The layout string's type letter: 'a' + bits - 1 (bit0 r, bit1 e, bit2 w)."""
        bits = self.readable | self.erasable << 1 | self.writable << 2
        return chr(0x60 + bits)


@dataclass(frozen=True)
class MemoryLayout:
    """An alt setting's name and its sectors, in address order."""

    name: str
    sectors: tuple[Sector, ...]

    def sector_at(self, address: int) -> Sector | None:
        """The sector holding `address`, or None when it is outside every sector."""
        for sector in self.sectors:
            if sector.address <= address < sector.end:
                return sector
        return None


_GROUP_RE = re.compile(r"/\s*0x([0-9A-Fa-f]+)\s*/([^/]*)")
_SECTOR_RE = re.compile(r"^\s*(\d+)\s*\*\s*(\d+)\s*([BKM]?)\s*([a-g])\s*$")
_MULTIPLIERS = {"": 1, "B": 1, "K": 1024, "M": 1024 * 1024}


def parse_memory_layout(text: str) -> MemoryLayout:
    """Parse `@Name/0xADDR/N*SIZE[B|K|M]t,...[/0xADDR/...]` into sectors.

    The type letter's low three bits are readable, erasable, writable (dfu-util
    `dfuse_mem.c`); the name is stripped of ST's padding spaces.
    """
    if not text.startswith("@") or "/" not in text:
        raise DfuCodecError(f"memory layout {text[:80]!r} must look like '@Name/0xADDR/N*SIZEKt'")
    slash = text.index("/")
    name, rest = text[1:slash].strip(), text[slash:]
    sectors: list[Sector] = []
    pos = 0
    for match in _GROUP_RE.finditer(rest):
        if match.start() != pos:
            break
        pos = match.end()
        address = int(match.group(1), 16)
        for item in match.group(2).split(","):
            if not item.strip():
                continue  # a trailing comma
            found = _SECTOR_RE.match(item)
            if found is None:
                raise DfuCodecError(
                    f"memory layout {text[:80]!r}: sector group {item.strip()!r} is not N*SIZE[B|K|M]t"
                )
            count, size = int(found.group(1)), int(found.group(2)) * _MULTIPLIERS[found.group(3)]
            bits = ord(found.group(4)) & 7
            if size == 0 or address + count * size > _ADDRESS_LIMIT:
                raise DfuCodecError(
                    f"memory layout {text[:80]!r}: {item.strip()!r} at 0x{address:X} is empty "
                    "or runs past 32-bit addresses"
                )
            if len(sectors) + count > MAX_SECTORS:
                raise DfuCodecError(f"memory layout {text[:80]!r} lists over {MAX_SECTORS} sectors")
            for _ in range(count):
                sectors.append(
                    Sector(address, size, bool(bits & 1), bool(bits & 2), bool(bits & 4))
                )
                address += size
    if pos != len(rest) or not sectors:
        raise DfuCodecError(
            f"memory layout {text[:80]!r}: expected '/0xADDR/N*SIZEKt,...' groups after the name"
        )
    return MemoryLayout(name, tuple(sectors))


def _size_text(size: int) -> str:
    for letter, factor in (("M", 1024 * 1024), ("K", 1024)):
        if size % factor == 0:
            return f"{size // factor:03d}{letter}"
    return f"{size:03d}B"


def _runs_text(runs: list[tuple[int, int, str]]) -> str:
    return ",".join(f"{count:02d}*{_size_text(size)}{letter}" for count, size, letter in runs)


def build_memory_layout(layout: MemoryLayout) -> str:
    """The layout string a DfuSe device reports (runs of equal sectors as `N*SIZE`)."""
    groups: list[str] = []
    runs: list[tuple[int, int, str]] = []
    cursor: int | None = None
    for sector in layout.sectors:
        if sector.size <= 0 or not (sector.readable or sector.erasable or sector.writable):
            raise ValueError(f"sector at {sector.address:#x} needs a size and a permission")
        if sector.address != cursor:
            if runs:
                groups.append(_runs_text(runs))
            groups.append(f"0x{sector.address:08X}")
            runs = []
        if runs and runs[-1][1:] == (sector.size, sector.type_letter):
            runs[-1] = (runs[-1][0] + 1, sector.size, sector.type_letter)
        else:
            runs.append((1, sector.size, sector.type_letter))
        cursor = sector.end
    if runs:
        groups.append(_runs_text(runs))
    return f"@{layout.name}  /" + "/".join(groups)


# ------------------------------------------------------------- functional descriptor


@dataclass(frozen=True)
class FunctionalDescriptor:
    """The DFU functional descriptor (bDescriptorType 0x21) of a DFU interface."""

    attributes: int = 0x0B
    detach_timeout_ms: int = 255
    transfer_size: int = 2048
    dfu_version: int = DFUSE_VERSION

    @property
    def can_download(self) -> bool:
        return bool(self.attributes & 0x01)

    @property
    def can_upload(self) -> bool:
        return bool(self.attributes & 0x02)

    @property
    def manifestation_tolerant(self) -> bool:
        return bool(self.attributes & 0x04)

    @property
    def will_detach(self) -> bool:
        return bool(self.attributes & 0x08)


_FUNCTIONAL = struct.Struct("<BBBHHH")


def build_functional_descriptor(desc: FunctionalDescriptor) -> bytes:
    """The 9-byte descriptor: bLength, type 0x21, attributes, detach, transfer, bcdDFU."""
    return _FUNCTIONAL.pack(
        _FUNCTIONAL.size,
        DFU_FUNCTIONAL_DESCRIPTOR_TYPE,
        desc.attributes,
        desc.detach_timeout_ms,
        desc.transfer_size,
        desc.dfu_version,
    )


def parse_functional_descriptor(data: bytes) -> FunctionalDescriptor:
    """Parse the descriptor; a DFU 1.0 one (bLength 7, no bcdDFUVersion) reads as 0x0100."""
    data = bytes(data)
    if len(data) < 7 or data[1] != DFU_FUNCTIONAL_DESCRIPTOR_TYPE:
        raise DfuCodecError(
            f"not a DFU functional descriptor (need >= 7 bytes of type 0x21): {data[:16].hex(' ')}"
        )
    length = data[0]
    if length < 7 or length > len(data):
        raise DfuCodecError(f"DFU functional descriptor bLength {length} with {len(data)} bytes")
    attributes, detach, transfer = struct.unpack_from("<BHH", data, 2)
    version = struct.unpack_from("<H", data, 7)[0] if length >= 9 else 0x0100
    return FunctionalDescriptor(attributes, detach, transfer, version)
