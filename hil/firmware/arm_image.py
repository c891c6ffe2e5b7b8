"""What a Cortex-M application image can be checked for without our own header.

Two facts every ArduPilot, PX4, Betaflight and INAV build for an STM32 carries:

- its vector table at the start of the application: word 0 is the initial stack
  pointer, which must lie in RAM; word 1 is the reset handler, which must be a Thumb
  address (bit 0 set) inside the bytes the image itself writes (ARMv7-M ARM B1.5.3);
- ArduPilot builds with AP_CHECK_FIRMWARE_ENABLED also carry an `app_descriptor`
  (libraries/AP_HAL_ChibiOS/bl_comms.h, filled in by Tools/ardupilotwaf/chibios.py and
  checked by the bootloader's check_good_firmware_unsigned()): a signature, CRC-32 of
  the bytes before and after it, the image size, and the board id.

Pure functions on bytes; anything wrong raises `ImageError` with a one-line reason.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from hil.firmware.image import FirmwareImage, ImageError

#: Where an initial stack pointer may point: ARMv7-M's SRAM region (STM32 SRAM, F7/H7
#: DTCM and AXI/D2/D3 SRAM), and the F3/F4/G4 core-coupled RAM. Ends are inclusive:
#: the stack starts at the first address past the top of RAM.
RAM_WINDOWS: tuple[tuple[int, int], ...] = ((0x10000000, 0x10100000), (0x20000000, 0x40000000))
VECTOR_TABLE_MIN = 8
"""Bytes of the vector table checked: the initial SP and the reset vector."""

APP_DESCRIPTOR_SIG = bytes((0x40, 0xA2, 0xE4, 0xF1, 0x64, 0x68, 0x91, 0x06))
_DESCRIPTOR = struct.Struct("<8sIIIIBBH")
_CRC_GAP = 16  # image_crc1, image_crc2, image_size, git_hash: left out of both CRCs


def crc32_ap(data: bytes, crc: int = 0) -> int:
    """ArduPilot's crc32_small: reflected 0xEDB88320, initial value 0, no final xor."""
    return zlib.crc32(data, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


@dataclass(frozen=True)
class VectorTable:
    """The first two words of a Cortex-M vector table."""

    initial_sp: int
    reset: int


def check_vector_table(image: FirmwareImage, at: int, *, what: str = "") -> VectorTable:
    """The vector table at `at`; ImageError unless it looks like a Cortex-M application's.

    `what` names where `at` is (e.g. "the application start") in the message.
    """
    place = f"0x{at:08X}" + (f" ({what})" if what else "")
    if not (image.covers(at) and image.covers(at + VECTOR_TABLE_MIN - 1)):
        raise ImageError(
            f"{image.path}: no vector table at {place}: the image does not write those bytes"
        )
    sp, reset = struct.unpack("<II", image.read(at, VECTOR_TABLE_MIN))
    if sp % 4 or not any(lo <= sp <= hi for lo, hi in RAM_WINDOWS):
        raise ImageError(
            f"{image.path}: no Cortex-M vector table at {place}: initial stack pointer "
            f"0x{sp:08X} is not a word-aligned RAM address; not firmware for this board, or junk"
        )
    if not reset & 1 or not image.covers(reset & ~1):
        raise ImageError(
            f"{image.path}: no Cortex-M vector table at {place}: reset vector 0x{reset:08X} "
            "is not a Thumb address (bit 0 set) inside the image; not firmware for this "
            "board, or junk"
        )
    return VectorTable(sp, reset)


@dataclass(frozen=True)
class AppDescriptor:
    """ArduPilot's app_descriptor (unsigned form) and where it sits in the payload."""

    offset: int
    image_crc1: int
    image_crc2: int
    image_size: int
    git_hash: int
    version_major: int
    version_minor: int
    board_id: int

    def encode(self) -> bytes:
        """The descriptor's bytes as they sit in the payload at `offset`."""
        return _DESCRIPTOR.pack(
            APP_DESCRIPTOR_SIG,
            self.image_crc1,
            self.image_crc2,
            self.image_size,
            self.git_hash,
            self.version_major,
            self.version_minor,
            self.board_id,
        )


def find_app_descriptor(payload: bytes, name: str = "<payload>") -> AppDescriptor | None:
    """The payload's app_descriptor checked as ArduPilot's bootloader checks it, or None.

    The first signature wins (the bootloader uses memmem, the build uses find). Raises
    ImageError when the descriptor is there but its size or CRCs do not hold.
    """
    offset = payload.find(APP_DESCRIPTOR_SIG)
    if offset < 0:
        return None
    if offset + _DESCRIPTOR.size > len(payload):
        raise ImageError(
            f"{name}: ArduPilot app descriptor at +0x{offset:X} is cut off by the end of the image"
        )
    _, crc1, crc2, size, git_hash, major, minor, board_id = _DESCRIPTOR.unpack_from(payload, offset)
    head = offset + len(APP_DESCRIPTOR_SIG)
    if size > len(payload) or head + _CRC_GAP > size:
        raise ImageError(
            f"{name}: ArduPilot app descriptor says image_size {size}, the payload holds "
            f"{len(payload)} bytes and the descriptor ends at {head + _CRC_GAP}; the image is corrupt"
        )
    got1 = crc32_ap(payload[:head])
    got2 = crc32_ap(payload[head + _CRC_GAP : size])
    if (got1, got2) != (crc1, crc2):
        raise ImageError(
            f"{name}: ArduPilot app descriptor CRCs say 0x{crc1:08X}/0x{crc2:08X}, the image "
            f"gives 0x{got1:08X}/0x{got2:08X}; the image is corrupt"
        )
    return AppDescriptor(offset, crc1, crc2, size, git_hash, major, minor, board_id)


def stamp_app_descriptor(payload: bytes, *, git_hash: int = 0) -> bytes:
    """Fill in the descriptor's CRCs and size, as ArduPilot's build does (its set_app_descriptor).

    The payload must already hold the signature followed by room for the descriptor.
    """
    offset = payload.find(APP_DESCRIPTOR_SIG)
    if offset < 0 or offset + _DESCRIPTOR.size > len(payload):
        raise ImageError("no room for an ArduPilot app descriptor: signature missing or cut off")
    head = offset + len(APP_DESCRIPTOR_SIG)
    crc1 = crc32_ap(payload[:head])
    crc2 = crc32_ap(payload[head + _CRC_GAP :])
    fields = struct.pack("<IIII", crc1, crc2, len(payload), git_hash & 0xFFFFFFFF)
    return payload[:head] + fields + payload[head + _CRC_GAP :]
