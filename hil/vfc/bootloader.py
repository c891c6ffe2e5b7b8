"""The virtual board's PX4/ArduPilot serial bootloader, served on its own pty.

Byte for byte as PROTOCOLS.md section 1: requests `<opcode>[args]0x20`, replies
`[data]0x12<status>`. Erase and program are refused (INVALID) until the host sent
GET_SYNC and asked GET_DEVICE for BL_REV, BOARD_ID and FLASH_SIZE. The first word of
the application is held back in RAM and only written at REBOOT, so a flash cut off
half way leaves an application that does not boot (its magic is missing); GET_CRC
counts the held word as written, as the real bootloader does. Unknown opcodes and
garbage get INVALID and never stop the loop.

The board's external flash (`extflash.bin` beside `flash.bin`) answers ArduPilot's EXTF
opcodes as AP_Bootloader's bl_protocol.cpp does: EXTF_ERASE <size> (INSYNC OK, a percent
byte per step, INSYNC OK), EXTF_PROG_MULTI at a pointer the erase resets, EXTF_GET_CRC
<size>. With `extf_size=0` the bootloader has none: GET_DEVICE EXTF_SIZE and the EXTF
opcodes get INVALID, as a bootloader built without EXT_FLASH_SIZE_MB does.

With a valid application the bootloader waits `boot_delay_s` (5 s) for a host, then
boots it; once a host has synced, or with no valid application, it waits for REBOOT.
"""

from __future__ import annotations

import hashlib
import select
import sys
import time
from collections.abc import Callable

from hil.firmware.bootloader_codec import (
    EOC,
    PROG_MULTI_MAX,
    DeviceInfo,
    Opcode,
    Status,
    encode_chip_des_reply,
    encode_extf_erase_reply,
    encode_reply,
    extf_crc,
    flash_crc,
)
from hil.mavlink.dialect import VFC_BOARD_ID
from hil.vfc.flash import (
    APP_BASE,
    APP_SIZE,
    EXTF_SECTOR,
    EXTF_TOTAL,
    SECTORS,
    ExternalFlash,
    Flash,
    FlashError,
)
from hil.vfc.pty import Pty

BL_REV = 5
BOARD_REV = 0
#: The STM32F4 vector table's first 16 bytes as the F4 bootloader reports them (fixed).
VEC_AREA = bytes(16)
CHIP_ID = 0x10016413  # revision 0x1001, device id 0x413: STM32F405/407
CHIP_FAMILY, CHIP_REVISION = "STM32F40x", "Z"
BOOT_DELAY_S = 5.0
REBOOT_AFTER_S = 0.1
SECTOR_ERASE_S = 1.0
"""Seconds to erase one 128 KiB sector (smaller sectors in proportion), like an F4."""
PARTIAL_TIMEOUT_S = 0.5
"""A request that stays incomplete this long is dropped with INVALID (bl.c's cin_wait)."""
OUTBUF_LIMIT = 64 * 1024
SELECT_TIMEOUT_S = 0.02

# Total length of each fixed-size request, opcode and EOC included.
_FIXED_LENGTHS: dict[int, int] = {
    Opcode.GET_SYNC: 2,
    Opcode.GET_DEVICE: 3,
    Opcode.CHIP_ERASE: 2,
    Opcode.READ_MULTI: 3,
    Opcode.GET_CRC: 2,
    Opcode.GET_OTP: 6,
    Opcode.GET_SN: 6,
    Opcode.GET_CHIP: 2,
    Opcode.SET_BOOT_DELAY: 3,
    Opcode.GET_CHIP_DES: 2,
    Opcode.REBOOT: 2,
    Opcode.SET_BAUD: 6,
}
_EXTF_FIXED_LENGTHS: dict[int, int] = {Opcode.EXTF_ERASE: 6, Opcode.EXTF_GET_CRC: 6}
_MULTI = frozenset({Opcode.PROG_MULTI, Opcode.EXTF_PROG_MULTI})
_REQUIRED_INFO = frozenset({DeviceInfo.BL_REV, DeviceInfo.BOARD_ID, DeviceInfo.FLASH_SIZE})


def _u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "little")


class SerialBootloader:
    """One bootloader session: a new pty, served until REBOOT, a boot timeout or a stop."""

    def __init__(
        self,
        flash: Flash,
        usb_serial: str,
        *,
        board_id: int = VFC_BOARD_ID,
        app_valid: bool = False,
        boot_delay_s: float = BOOT_DELAY_S,
        sector_erase_s: float = SECTOR_ERASE_S,
        extf_size: int = EXTF_TOTAL,
        on_port: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.flash = flash
        self.usb_serial = usb_serial
        self.board_id = board_id
        self.app_valid = app_valid
        self.sector_erase_s = max(0.0, sector_erase_s)
        self.log = log or (lambda text: print(f"bootloader {usb_serial}: {text}", file=sys.stderr))
        self.ext_flash = ExternalFlash.beside(flash, extf_size) if extf_size > 0 else None
        self._extf_offset = 0  # next EXTF_PROG_MULTI offset
        self._fixed = dict(_FIXED_LENGTHS)
        if self.ext_flash is not None:
            self._fixed.update(_EXTF_FIXED_LENGTHS)
        self._rx = bytearray()
        self._rx_at = 0.0
        self._out = bytearray()
        self._synced = False
        self._info_seen: set[int] = set()
        self._prog_offset = 0  # next PROG_MULTI offset from APP_BASE
        self._read_offset = 0  # next READ_MULTI offset from APP_BASE
        self._first_word: bytes | None = None  # held back until REBOOT
        self._boot_at: float | None = (
            time.monotonic() + boot_delay_s if app_valid and boot_delay_s > 0 else None
        )
        if app_valid and boot_delay_s <= 0:
            self._boot_at = time.monotonic()
        self._reboot_at: float | None = None
        self._should_stop: Callable[[], bool] = lambda: False
        self.pty = Pty.open()
        self.log(
            f"bootloader on {self.pty.path} ("
            + (f"valid app, booting it in {boot_delay_s:.1f} s unless a host syncs" if app_valid
               else "no valid app: waiting for a host")
            + ")"
        )
        if on_port is not None:
            on_port(self.pty.path)

    @property
    def port(self) -> str:
        return self.pty.path

    def close(self) -> None:
        self._flush()
        self.pty.close()

    # -- serving ------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> str:
        """Serve until REBOOT or the boot timeout ("boot") or `should_stop()` ("stop")."""
        self._should_stop = should_stop
        while True:
            if should_stop():
                return "stop"
            now = time.monotonic()
            if self._reboot_at is not None and now >= self._reboot_at:
                self._flush()
                return "boot"
            if self._boot_at is not None and now >= self._boot_at:
                self.log("no host within the boot delay: booting the application")
                return "boot"
            self.serve_once(SELECT_TIMEOUT_S)

    def serve_once(self, timeout: float) -> None:
        fd = self.pty.master_fd
        try:
            readable, _, _ = select.select([fd], [fd] if self._out else [], [], timeout)
        except InterruptedError:  # pragma: no cover
            readable = []
        now = time.monotonic()
        if readable:
            data = self.pty.read()
            if data:
                self._rx += data
                self._rx_at = now
        self._process(now)
        self._flush()

    def _reply(self, status: Status = Status.OK, data: bytes = b"") -> None:
        if len(self._out) < OUTBUF_LIMIT:  # nobody reading: drop, as a USB CDC port would
            self._out += encode_reply(status, data)

    def _flush(self) -> None:
        if self._out and not self.pty.closed:
            written = self.pty.write(self._out)
            if written:
                del self._out[:written]

    # -- request framing ------------------------------------------------------------------
    def _process(self, now: float) -> None:
        rx = self._rx
        while rx and self._reboot_at is None:
            op = rx[0]
            fixed = self._fixed
            if op in _MULTI and (op == Opcode.PROG_MULTI or self.ext_flash is not None):
                if len(rx) < 2:
                    need = None
                elif rx[1] == 0 or rx[1] % 4 or rx[1] > PROG_MULTI_MAX:
                    # bl.c rejects the length before reading data: the data that follows
                    # is then read as (invalid) opcodes.
                    del rx[:2]
                    self._reply(Status.INVALID)
                    continue
                else:
                    need = rx[1] + 3
            elif op in fixed:
                need = fixed[op]
            else:
                del rx[:1]
                self._reply(Status.INVALID)
                continue
            if need is None or len(rx) < need:
                if now - self._rx_at > PARTIAL_TIMEOUT_S:
                    rx.clear()
                    self._reply(Status.INVALID)
                return
            request = bytes(rx[:need])
            del rx[:need]
            if request[-1] != EOC:
                self._reply(Status.INVALID)
                continue
            try:
                self._handle(request)
            except FlashError as exc:
                self.log(f"flash error: {exc}")
                self._reply(Status.FAILED)

    # -- requests -------------------------------------------------------------------------
    @property
    def host_ready(self) -> bool:
        """GET_SYNC and GET_DEVICE(BL_REV, BOARD_ID, FLASH_SIZE) seen: erase/program allowed."""
        return self._synced and _REQUIRED_INFO <= self._info_seen

    def _handle(self, request: bytes) -> None:
        op, args = request[0], request[1:-1]
        if op == Opcode.GET_SYNC:
            self._synced = True
            self._boot_at = None  # a host is here: stay until it says REBOOT
            self._read_offset = 0
            self._reply()
        elif op == Opcode.GET_DEVICE:
            self._get_device(args[0])
        elif op == Opcode.CHIP_ERASE:
            self._chip_erase()
        elif op == Opcode.PROG_MULTI:
            self._prog_multi(args[1:])
        elif op == Opcode.READ_MULTI:
            self._read_multi(args[0])
        elif op == Opcode.GET_CRC:
            self._reply(Status.OK, _u32(self.crc()))
        elif op == Opcode.GET_OTP:
            self._reply(Status.OK, _u32(0xFFFFFFFF))
        elif op == Opcode.GET_SN:
            self._get_sn(int.from_bytes(args, "little"))
        elif op == Opcode.GET_CHIP:
            self._reply(Status.OK, _u32(CHIP_ID))
        elif op == Opcode.GET_CHIP_DES:
            self._out += encode_chip_des_reply(CHIP_FAMILY, CHIP_REVISION)
        elif op in (Opcode.SET_BOOT_DELAY, Opcode.SET_BAUD):
            self._reply()  # a pty has no baud; the boot delay lives in the board's options
        elif op == Opcode.REBOOT:
            self._reboot()
        elif op == Opcode.EXTF_ERASE:
            self._extf_erase(int.from_bytes(args, "little"))
        elif op == Opcode.EXTF_PROG_MULTI:
            self._extf_prog_multi(args[1:])
        elif op == Opcode.EXTF_GET_CRC:
            self._extf_get_crc(int.from_bytes(args, "little"))

    def _get_device(self, arg: int) -> None:
        values = {
            DeviceInfo.BL_REV: _u32(BL_REV),
            DeviceInfo.BOARD_ID: _u32(self.board_id),
            DeviceInfo.BOARD_REV: _u32(BOARD_REV),
            DeviceInfo.FLASH_SIZE: _u32(APP_SIZE),
            DeviceInfo.VEC_AREA: VEC_AREA,
        }
        if self.ext_flash is not None:
            values[DeviceInfo.EXTF_SIZE] = _u32(self.ext_flash.size)
        value = values.get(arg)
        if value is None:
            self._reply(Status.INVALID)
            return
        self._info_seen.add(arg)
        self._reply(Status.OK, value)

    def _chip_erase(self) -> None:
        if not self.host_ready:
            self._reply(Status.INVALID)
            return
        self.log("erasing the application sectors")
        self._first_word = None
        self._prog_offset = 0
        self._read_offset = 0
        self.app_valid = False
        for start, size in SECTORS:
            if start < APP_BASE:
                continue
            self.flash.erase_sector(start)
            if not self._sleep(self.sector_erase_s * size / (128 * 1024)):
                return  # stopping: the host gets no reply, as from a board losing power
        self.flash.flush()
        self._reply()

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` (erasing); False if asked to stop meanwhile."""
        end = time.monotonic() + seconds
        while True:
            if self._should_stop():
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))

    def _prog_multi(self, data: bytes) -> None:
        if not self.host_ready:
            self._reply(Status.INVALID)
            return
        offset = self._prog_offset
        if offset + len(data) > APP_SIZE:
            self._reply(Status.INVALID)
            return
        to_write = data
        if offset == 0:
            self._first_word = data[:4]
            to_write = b"\xff\xff\xff\xff" + data[4:]
        self.flash.write(APP_BASE + offset, to_write)
        if not self.flash.matches(APP_BASE + offset, to_write):  # bl.c reads each word back
            self.log(f"program verify failed at 0x{APP_BASE + offset:08X} (not erased?)")
            self._reply(Status.FAILED)
            return
        self._prog_offset = offset + len(data)
        self._reply()

    def _extf_erase(self, size: int) -> None:
        ext = self.ext_flash
        if ext is None or not self.host_ready or size > ext.size:
            self._reply(Status.INVALID)
            return
        self.log(f"erasing {size} bytes of external flash")
        self._reply()  # at once, before the erase, as bl_protocol.cpp
        sectors = ext.erase(size)
        percents = [0] + [done * 100 // sectors for done in range(1, sectors)] + [100]
        self._extf_offset = 0
        if not self._sleep(self.sector_erase_s * sectors * EXTF_SECTOR / (128 * 1024)):
            return
        ext.flush()
        self._out += encode_extf_erase_reply(percents)

    def _extf_prog_multi(self, data: bytes) -> None:
        ext = self.ext_flash
        if ext is None or not self.host_ready or self._extf_offset + len(data) > ext.size:
            self._reply(Status.INVALID)
            return
        ext.write(self._extf_offset, data)
        if ext.read(self._extf_offset, len(data)) != data:
            self.log(f"external flash verify failed at +0x{self._extf_offset:X} (not erased?)")
            self._reply(Status.FAILED)
            return
        self._extf_offset += len(data)
        self._reply()

    def _extf_get_crc(self, size: int) -> None:
        ext = self.ext_flash
        if ext is None or size > ext.size:
            self._reply(Status.INVALID)
            return
        ext.flush()
        self._reply(Status.OK, _u32(extf_crc(ext.read(0, size), size)))

    def _read_multi(self, length: int) -> None:
        offset = self._read_offset
        if length == 0 or length % 4 or length > PROG_MULTI_MAX or offset + length > APP_SIZE:
            self._reply(Status.INVALID)
            return
        self._read_offset = offset + length
        self._reply(Status.OK, self.flash.read(APP_BASE + offset, length))

    def _get_sn(self, index: int) -> None:
        if index not in (0, 4, 8):
            self._reply(Status.INVALID)
            return
        uid = hashlib.blake2b(self.usb_serial.encode(), digest_size=12, person=b"stm32uid").digest()
        self._reply(Status.OK, uid[index : index + 4])

    def crc(self) -> int:
        """GET_CRC's answer: the app area with the held-back word counted as written."""
        app = self.flash.app_bytes()
        if self._first_word is not None:
            held = bytes(a & b for a, b in zip(app[:4], self._first_word, strict=True))
            app = held + app[4:]
        return flash_crc(app, APP_SIZE)

    def _reboot(self) -> None:
        if self._first_word is not None:
            self.flash.write(APP_BASE, self._first_word)
            self._first_word = None
        self.flash.flush()
        if self.ext_flash is not None:
            self.ext_flash.flush()
        self._reply()
        self._reboot_at = time.monotonic() + REBOOT_AFTER_S
        self.log("REBOOT: starting the application")
