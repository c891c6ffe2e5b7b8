"""The USB serial number an STM32 shows, computed from its 96-bit unique id.

ST's ROM DFU bootloader on the F2 and F4 names itself by the chip's unique id: eight hex
digits of U_ID_0 + U_ID_2 (32-bit sum), then the upper four hex digits of U_ID_1, in
capitals (libopencm3 issue #760, from a disassembly of the F2/F3/F4 system memory; the
F3 takes the upper half of U_ID_2 instead). ST's USB device library builds the same
string in `Get_SerialNum`, and so does Betaflight's VCP where it uses that library (F7,
H7, G4 and HAL F4 builds: src/platform/STM32/vcp_hal/usbd_desc.c). Betaflight's
StdPeriph F4 VCP answers the constant "0x8000000" instead (vcpf4/usbd_desc.c), so on an
F405/F411 board only MSP_UID tells which DFU device will be the board.
"""

from __future__ import annotations

from collections.abc import Sequence


def stm32_usb_serial(uid: Sequence[int], *, f3: bool = False) -> str:
    """The 12-character serial of ST's ROM DFU bootloader (and Get_SerialNum) for `uid`
    (U_ID_0, U_ID_1, U_ID_2 as 32-bit words)."""
    if len(uid) != 3 or any(not 0 <= int(w) <= 0xFFFFFFFF for w in uid):
        raise ValueError(f"an STM32 unique id is three 32-bit words, got {tuple(uid)!r}")
    first = (int(uid[0]) + int(uid[2])) & 0xFFFFFFFF
    second = int(uid[2] if f3 else uid[1]) >> 16
    return f"{first:08X}{second:04X}"
