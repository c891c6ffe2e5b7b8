"""The virtual board's STM32 ROM DFU device: USB DFU 1.1 with ST's DfuSe extensions.

A board powered with BOOT0 held (`python -m hil.vfc ... --boot0`) runs `serve_dfu`
instead of its flight software: the device 0483:df11 of PROTOCOLS.md section 2, acting
on the board's `Flash`. It has no USB bus to sit on, so it listens on a Unix socket
named in the registry entry (state `dfu`, `usb_socket`), and the harness's pyusb backend
(`hil.boards.virtual_usb`) carries control transfers through it, framed as
hil.usb.control_socket says.

A device that "drops off the bus" (after DFU leave, a read-unprotect reset, or when the
board stops) closes its connections; the backend turns that into `usb.core.USBError`.

The device: one configuration, one interface (class 0xFE/1/2, DFU mode), alt setting 0
"Internal Flash" with the F4 layout below, the bootloader sector read-only (type `a`).
DFU requests follow the DFU 1.1 state diagram with the ST ROM's DfuSe behaviour:

- DNLOAD wValue 0 is a DfuSe command (`21 addr` set pointer, `41 addr` erase sector,
  `41` mass erase of the application sectors, `92` read-unprotect = mass erase + reset);
  DNLOAD wValue >= 2 programs `(wValue - 2) * wTransferSize + pointer`. Both move to
  dfuDNLOAD-SYNC; the next GETSTATUS starts the operation and answers dfuDNBUSY with the
  time it takes as pollTimeout; GETSTATUS after that time gives dfuDNLOAD-IDLE, or
  dfuERROR with the status of what went wrong. (Polling earlier answers dfuDNBUSY with
  the time left, where hardware would NAK.) As in ST's DfuSe device (the flash work
  runs once the GETSTATUS answer has gone out, in EP0_TxReady), erasing and programming
  happen after that answer is sent: during the host's pollTimeout, not before it.
- Consecutive data blocks need no new pointer: block n lands at pointer + (n - 2) *
  wTransferSize (UM0424 / AN3156), and the pointer moves only with SET_ADDRESS (or, as
  on the ST ROM, with a sector erase).
- Status codes: errADDRESS for an address outside the memory map, errTARGET for a
  sector that is read-only (the bootloader) or not erasable, errCHECK_ERASED for
  programming bytes that are not erased (0xFF; writing 0xFF anywhere is a no-op, as on
  NOR), errWRITE / errERASE when the flash refuses, errVERIFY when it reads back wrong,
  errSTALLEDPKT for a request the current state does not accept (the request is stalled
  and the device enters dfuERROR; CLRSTATUS gets back to dfuIDLE).
- UPLOAD wValue 0 lists the DfuSe commands; wValue >= 2 reads from the pointer as
  above; a short answer (end of flash) ends the upload (dfuIDLE).
- Leave: a zero-length DNLOAD in dfuDNLOAD-IDLE, then GETSTATUS: the device answers
  dfuMANIFEST and resets (drops off the bus); `serve_dfu` returns.

Run standalone: `python -m hil.vfc.dfu_device --flash FLASH.bin --usb-serial SN
--registry DIR` serves one device until leave or SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hil.firmware.dfuse_codec import (
    STM32_ROM_PID,
    STM32_ROM_VID,
    DfuCodecError,
    DfuRequest,
    DfuseCommand,
    DfuState,
    DfuStatus,
    FunctionalDescriptor,
    MemoryLayout,
    Sector,
    StatusReply,
    build_functional_descriptor,
    build_memory_layout,
    build_status,
    data_block_address,
    parse_command,
)
from hil.links import registry
from hil.usb.control_socket import HANDSHAKE_ACK, HANDSHAKE_STALL, SETUP, recv_frame, send_frame
from hil.vfc.flash import APP_BASE, SECTORS, Flash, FlashError

_FRAME_READ_TIMEOUT = 2.0


# ---------------------------------------------------------------------- descriptors

TRANSFER_SIZE = 2048
FUNCTIONAL = FunctionalDescriptor(
    attributes=0x0B, detach_timeout_ms=255, transfer_size=TRANSFER_SIZE, dfu_version=0x011A
)
LAYOUT = MemoryLayout(
    "Internal Flash",
    tuple(
        Sector(address, size, True, address >= APP_BASE, address >= APP_BASE)
        for address, size in SECTORS
    ),
)
LAYOUT_TEXT = build_memory_layout(LAYOUT)
"""`@Internal Flash  /0x08000000/01*016Ka,03*016Kg,01*064Kg,07*128Kg`."""
ROM_LAYOUT = MemoryLayout(
    "Internal Flash", tuple(Sector(address, size, True, True, True) for address, size in SECTORS)
)
"""An STM32F405's ROM DFU device as on a board with no bootloader of its own (Betaflight,
INAV): every sector readable, erasable and writable, `/0x08000000/04*016Kg,01*064Kg,07*128Kg`
(the F405's flash of RM0090 table 5). Use it with a `Flash(..., bootloader_sector=False)`."""

LANGID_EN_US = 0x0409
STRING_MANUFACTURER = 1
STRING_PRODUCT = 2
STRING_SERIAL = 3
STRING_INTERFACE = 4
DFUSE_COMMANDS = bytes(
    [0x00, DfuseCommand.SET_ADDRESS, DfuseCommand.ERASE, DfuseCommand.READ_UNPROTECT]
)

DESC_DEVICE = 1
DESC_CONFIG = 2
DESC_STRING = 3
DESC_INTERFACE = 4
DESC_DFU_FUNCTIONAL = 0x21


def device_descriptor() -> bytes:
    return struct.pack(
        "<BBHBBBBHHHBBBB",
        18,
        DESC_DEVICE,
        0x0200,  # bcdUSB
        0,
        0,
        0,  # class/subclass/protocol: per interface
        64,  # bMaxPacketSize0
        STM32_ROM_VID,
        STM32_ROM_PID,
        0x2200,  # bcdDevice of the F4 ROM
        STRING_MANUFACTURER,
        STRING_PRODUCT,
        STRING_SERIAL,
        1,
    )


def interface_descriptor() -> bytes:
    # bInterfaceClass 0xFE application specific, subclass 1 DFU, protocol 2 DFU mode.
    return struct.pack("<BBBBBBBBB", 9, DESC_INTERFACE, 0, 0, 0, 0xFE, 0x01, 0x02, STRING_INTERFACE)


def configuration_descriptor() -> bytes:
    """Configuration + interface + DFU functional descriptor, as GET_DESCRIPTOR returns it."""
    tail = interface_descriptor() + build_functional_descriptor(FUNCTIONAL)
    head = struct.pack("<BBHBBBBB", 9, DESC_CONFIG, 9 + len(tail), 1, 1, 0, 0xC0, 50)
    return head + tail


def string_descriptor(text: str) -> bytes:
    raw = text.encode("utf-16-le")[:252]
    return bytes([2 + len(raw), DESC_STRING]) + raw


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class DfuTiming:
    """How long the device stays dfuDNBUSY (reported as pollTimeout), in ms."""

    erase_base_ms: float = 5.0
    erase_ms_per_kib: float = 0.25
    program_ms: float = 1.0  # one DNLOAD block
    command_ms: float = 0.0  # set address
    manifest_ms: float = 5.0

    @classmethod
    def instant(cls) -> DfuTiming:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def stm32f4(cls) -> DfuTiming:
        """Close to the datasheet (sector erase ~0.3 s per 16 KiB at x32 parallelism)."""
        return cls(erase_base_ms=100.0, erase_ms_per_kib=8.0, program_ms=8.0, command_ms=1.0)

    def erase_ms(self, size: int) -> int:
        return round(self.erase_base_ms + self.erase_ms_per_kib * size / 1024)


# ---------------------------------------------------------------------- the device

_IDLE_LIKE = (DfuState.DFU_IDLE, DfuState.DFU_DNLOAD_IDLE)
_ABORTABLE = (
    DfuState.DFU_IDLE,
    DfuState.DFU_DNLOAD_SYNC,
    DfuState.DFU_DNLOAD_IDLE,
    DfuState.DFU_MANIFEST_SYNC,
    DfuState.DFU_UPLOAD_IDLE,
)


class _Failure(Exception):
    def __init__(self, status: DfuStatus) -> None:
        super().__init__(status.name)
        self.status = status


class DfuDevice:
    """The request handler: `control(...)` answers one control transfer, None = STALL.

    `left` turns True once the leave sequence finished (the device resets and is gone);
    `reset_pending` after read-unprotect (the device re-enumerates, still in DFU).
    """

    def __init__(
        self,
        flash: Flash,
        usb_serial: str,
        *,
        timing: DfuTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        layout: MemoryLayout = LAYOUT,
    ) -> None:
        self.flash = flash
        self.layout = layout
        self._runs = _writable_runs(layout)
        self._span = (layout.sectors[0].address, layout.sectors[-1].end)
        self.usb_serial = usb_serial
        self.timing = timing or DfuTiming()
        self.clock = clock
        self.left = False
        self.reset_pending = False
        self.configuration = 1
        self.blocks_written = 0
        self._strings = {
            STRING_MANUFACTURER: "STMicroelectronics",
            STRING_PRODUCT: "STM32  BOOTLOADER",
            STRING_SERIAL: usb_serial,
            STRING_INTERFACE: build_memory_layout(layout),
        }
        self._reset()

    def _reset(self) -> None:
        self.state = DfuState.DFU_IDLE
        self.status = DfuStatus.OK
        self.pointer = self.layout.sectors[0].address
        self._pending: tuple[str, int | None, bytes] | None = None
        self._busy_until = 0.0
        self._outcome = DfuStatus.OK
        self._work: Callable[[], None] | None = None
        self._reset_after_busy = False

    # -- entry point -------------------------------------------------------------------
    def control(
        self, request_type: int, request: int, value: int, index: int, length: int, data: bytes
    ) -> bytes | None:
        """Answer one control transfer: IN data (b"" for OUT) or None to STALL."""
        self.finish_work()
        kind = (request_type >> 5) & 3
        if kind == 0:
            return self._standard(request_type, request, value, index, length)
        if kind == 1 and request_type & 0x1F == 1 and index == 0:
            return self._dfu(request_type, request, value, length, data)
        return None

    # -- standard requests -------------------------------------------------------------
    def _standard(self, request_type: int, request: int, value: int, index: int, length: int) -> bytes | None:
        device_to_host = bool(request_type & 0x80)
        if request == 6 and device_to_host:  # GET_DESCRIPTOR
            answer = self._descriptor(value >> 8, value & 0xFF, index)
            return None if answer is None else answer[:length]
        if request == 0 and device_to_host:  # GET_STATUS
            return b"\x00\x00"[:length]
        if request == 8 and device_to_host:  # GET_CONFIGURATION
            return bytes([self.configuration])[:length]
        if request == 9 and not device_to_host and value in (0, 1):  # SET_CONFIGURATION
            self.configuration = value
            return b""
        if request == 10 and device_to_host and index == 0:  # GET_INTERFACE
            return b"\x00"[:length]
        if request == 11 and not device_to_host and index == 0 and value == 0:  # SET_INTERFACE
            return b""
        return None

    def _descriptor(self, kind: int, number: int, langid: int) -> bytes | None:
        if kind == DESC_DEVICE and number == 0:
            return device_descriptor()
        if kind == DESC_CONFIG and number == 0:
            return configuration_descriptor()
        if kind == DESC_DFU_FUNCTIONAL and number == 0:
            return build_functional_descriptor(FUNCTIONAL)
        if kind == DESC_STRING:
            if number == 0:
                return struct.pack("<BBH", 4, DESC_STRING, LANGID_EN_US)
            text = self._strings.get(number)
            return None if text is None else string_descriptor(text)
        return None

    # -- DFU class requests ------------------------------------------------------------
    def _stall(self) -> None:
        """A request the state does not accept: STALL, dfuERROR, errSTALLEDPKT."""
        if self.state != DfuState.DFU_ERROR:
            self.status = DfuStatus.ERR_STALLEDPKT
        self.state = DfuState.DFU_ERROR
        self._pending = None

    def _dfu(self, request_type: int, request: int, value: int, length: int, data: bytes) -> bytes | None:
        device_to_host = bool(request_type & 0x80)
        try:
            req = DfuRequest(request)
        except ValueError:
            self._stall()
            return None
        if device_to_host != (req in (DfuRequest.UPLOAD, DfuRequest.GETSTATUS, DfuRequest.GETSTATE)):
            self._stall()
            return None
        if req is DfuRequest.GETSTATUS:
            return self._getstatus()[:length]
        busy = self.state in (DfuState.DFU_DNBUSY, DfuState.DFU_MANIFEST)
        if req is DfuRequest.GETSTATE and not busy:
            return bytes([self.state])[:length]
        if req is DfuRequest.CLRSTATUS and self.state == DfuState.DFU_ERROR:
            self.state, self.status = DfuState.DFU_IDLE, DfuStatus.OK
            return b""
        if req is DfuRequest.ABORT and self.state in _ABORTABLE:
            self.state, self._pending = DfuState.DFU_IDLE, None
            return b""
        if req is DfuRequest.DNLOAD and self.state in _IDLE_LIKE:
            return self._dnload(value, data)
        if req is DfuRequest.UPLOAD and self.state in (DfuState.DFU_IDLE, DfuState.DFU_UPLOAD_IDLE):
            return self._upload(value, length)
        self._stall()
        return None

    def _dnload(self, block: int, data: bytes) -> bytes | None:
        if not data:
            if self.state == DfuState.DFU_DNLOAD_IDLE:  # leave: manifest on the next GETSTATUS
                self.state = DfuState.DFU_MANIFEST_SYNC
                return b""
            self._stall()  # DFU 1.1: a zero-length DNLOAD in dfuIDLE is not allowed
            return None
        if len(data) > FUNCTIONAL.transfer_size or block == 1:
            self._stall()
            return None
        if block == 0:
            try:
                command = parse_command(data)
            except DfuCodecError:
                self._stall()
                return None
            self._pending = (command.command.name, command.address, b"")
        else:
            address = data_block_address(block, FUNCTIONAL.transfer_size, self.pointer)
            self._pending = ("WRITE", address, bytes(data))
        self.state = DfuState.DFU_DNLOAD_SYNC
        return b""

    def _upload(self, block: int, length: int) -> bytes | None:
        if length > FUNCTIONAL.transfer_size or block == 1:
            self._stall()
            return None
        if block == 0:
            answer = DFUSE_COMMANDS[:length]
        else:
            address = data_block_address(block, FUNCTIONAL.transfer_size, self.pointer)
            end = self.layout.sectors[-1].end
            sector = self.layout.sector_at(address)
            if sector is None or not sector.readable:
                self._stall()
                self.status = DfuStatus.ERR_ADDRESS
                return None
            answer = self.flash.read(address, max(0, min(length, end - address)))
        self.state = DfuState.DFU_UPLOAD_IDLE if len(answer) == length else DfuState.DFU_IDLE
        return answer

    def _getstatus(self) -> bytes:
        now = self.clock()
        if self.state == DfuState.DFU_DNLOAD_SYNC and self._pending is not None:
            poll_ms, self._outcome, self._work = self._start(*self._pending)
            self._pending = None
            self._busy_until = now + poll_ms / 1000.0
            self.state = DfuState.DFU_DNBUSY
            reply = build_status(StatusReply(DfuStatus.OK, poll_ms, DfuState.DFU_DNBUSY))
            if self._reset_after_busy:  # read-unprotect: the device resets by itself
                self.reset_pending = True
                self._reset()
            return reply
        if self.state == DfuState.DFU_DNBUSY:
            left_ms = (self._busy_until - now) * 1000.0
            if left_ms > 0:
                return build_status(StatusReply(DfuStatus.OK, max(1, round(left_ms)), DfuState.DFU_DNBUSY))
            if self._outcome == DfuStatus.OK:
                self.state = DfuState.DFU_DNLOAD_IDLE
            else:
                self.state, self.status = DfuState.DFU_ERROR, self._outcome
        elif self.state == DfuState.DFU_MANIFEST_SYNC:
            # Not manifestation tolerant, will detach: manifest, then reset ourselves.
            self.state = DfuState.DFU_MANIFEST
            self.flash.flush()
            self.left = True
            return build_status(StatusReply(DfuStatus.OK, round(self.timing.manifest_ms), DfuState.DFU_MANIFEST))
        return build_status(StatusReply(self.status, 0, self.state))

    # -- operations ----------------------------------------------------------------------
    def finish_work(self) -> None:
        """Run the erase or program the last GETSTATUS started (its answer has gone out).

        The server calls this right after sending each answer; `control` calls it first,
        so a caller without a server sees the same order.
        """
        work, self._work = self._work, None
        if work is None:
            return
        try:
            work()
        except _Failure as failure:
            self._outcome = failure.status

    def _start(
        self, name: str, address: int | None, data: bytes
    ) -> tuple[int, DfuStatus, Callable[[], None] | None]:
        """Check a DNLOAD's operation: (busy ms, status so far, flash work to run next)."""
        try:
            if name == "WRITE":
                assert address is not None
                self._check_program(address, len(data))
                return round(self.timing.program_ms), DfuStatus.OK, lambda: self._program(address, data)
            if name == DfuseCommand.SET_ADDRESS.name:
                assert address is not None
                if self.layout.sector_at(address) is None:
                    raise _Failure(DfuStatus.ERR_ADDRESS)
                self.pointer = address
                return round(self.timing.command_ms), DfuStatus.OK, None
            if name == DfuseCommand.ERASE.name and address is not None:
                sector = self._erasable(address)
                self.pointer = address  # the ST ROM's erase command moves the pointer too
                return self.timing.erase_ms(sector.size), DfuStatus.OK, lambda: self._erase(sector)
            # Mass erase, or read-unprotect (mass erase, then the device resets): at once.
            busy = 0
            for sector in self.layout.sectors:
                if sector.erasable:
                    busy += self.timing.erase_ms(sector.size)
            try:
                self.flash.erase_app()
            except FlashError:
                raise _Failure(DfuStatus.ERR_ERASE) from None
            if name == DfuseCommand.READ_UNPROTECT.name:
                self._reset_after_busy = True
            return busy, DfuStatus.OK, None
        except _Failure as failure:
            return 1, failure.status, None

    def _erasable(self, address: int) -> Sector:
        sector = self.layout.sector_at(address)
        if sector is None:
            raise _Failure(DfuStatus.ERR_ADDRESS)
        if not sector.erasable:
            raise _Failure(DfuStatus.ERR_TARGET)
        return sector

    def _erase(self, sector: Sector) -> None:
        try:
            self.flash.erase_sector(sector.address)
        except FlashError:
            raise _Failure(DfuStatus.ERR_ERASE) from None

    def _check_program(self, address: int, length: int) -> None:
        """errADDRESS outside the memory map, errTARGET when a touched sector is read-only."""
        end = address + length
        if address < self._span[0] or end > self._span[1]:
            raise _Failure(DfuStatus.ERR_ADDRESS)
        if not any(lo <= address and end <= hi for lo, hi in self._runs):
            raise _Failure(DfuStatus.ERR_TARGET)

    def _program(self, address: int, data: bytes) -> None:
        """Program one block: errCHECK_ERASED when a byte to program (not 0xFF) meets one
        that is not erased; errWRITE / errVERIFY when the flash refuses or reads back wrong."""
        flash = self.flash
        expected = data
        if not flash.is_erased(address, len(data)):
            old = flash.read(address, len(data))
            if _bits(old.translate(_NOT_ERASED)) & _bits(data.translate(_NOT_ERASED)):
                raise _Failure(DfuStatus.ERR_CHECK_ERASED)
            expected = (_bits(old) & _bits(data)).to_bytes(len(data), "little")
        try:
            flash.write(address, data)
        except FlashError:
            raise _Failure(DfuStatus.ERR_WRITE) from None
        if not flash.matches(address, expected):
            raise _Failure(DfuStatus.ERR_VERIFY)
        self.blocks_written += 1


def _writable_runs(layout: MemoryLayout) -> tuple[tuple[int, int], ...]:
    """(start, end) of each run of adjacent writable sectors."""
    runs: list[tuple[int, int]] = []
    for sector in layout.sectors:
        if not sector.writable:
            continue
        if runs and runs[-1][1] == sector.address:
            runs[-1] = (runs[-1][0], sector.end)
        else:
            runs.append((sector.address, sector.end))
    return tuple(runs)


_NOT_ERASED = bytes(0 if byte == 0xFF else 1 for byte in range(256))
"""bytes.translate table: 1 for a byte that is not erased (not 0xFF), 0 for one that is."""


def _bits(data: bytes) -> int:
    return int.from_bytes(data, "little")


# ---------------------------------------------------------------------------- server


def handle_frame(device: DfuDevice, frame: bytes) -> bytes:
    """Answer one request frame of the wire protocol (see the module docstring)."""
    if len(frame) < SETUP.size:
        return bytes([HANDSHAKE_STALL])
    request_type, request, value, index, length = SETUP.unpack_from(frame)
    data = frame[SETUP.size :]
    if request_type & 0x80:
        if data:
            return bytes([HANDSHAKE_STALL])
    elif len(data) != length:
        return bytes([HANDSHAKE_STALL])
    answer = device.control(request_type, request, value, index, length, data)
    if answer is None:
        return bytes([HANDSHAKE_STALL])
    return bytes([HANDSHAKE_ACK]) + answer


def socket_path_for(registry_dir: Path | str, usb_serial: str) -> Path:
    return Path(registry_dir) / f"{usb_serial}.usb"


_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, with the terminating NUL


def serve_dfu(
    flash: Flash,
    usb_serial: str,
    registry_dir: Path,
    should_stop: Callable[[], bool],
    *,
    timing: DfuTiming | None = None,
    board_id: int | None = None,
    poll_interval: float = 0.05,
    log: Callable[[str], None] | None = None,
    on_ready: Callable[[Path], None] | None = None,
    layout: MemoryLayout = LAYOUT,
) -> None:
    """Be the board's ROM DFU device until a completed leave (or `should_stop()`).

    Listens on `<registry_dir>/<usb_serial>.usb` (or a short temp path when that is too
    long for a Unix socket), announces registry state `dfu` with `usb_socket`, serves
    control transfers, and on return closes the socket and removes its registry entry.
    """
    say = log or (lambda text: None)
    device = DfuDevice(flash, usb_serial, timing=timing, layout=layout)
    path = socket_path_for(registry_dir, usb_serial)
    temp_dir: str | None = None
    if len(os.fsencode(str(path))) > _MAX_UNIX_PATH:
        temp_dir = tempfile.mkdtemp(prefix="hil-usb-")
        path = Path(temp_dir) / f"{usb_serial}.usb"
    Path(registry_dir).mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    selector = selectors.DefaultSelector()
    clients: list[socket.socket] = []
    pid = os.getpid()

    def drop(client: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(client)
        with contextlib.suppress(ValueError):
            clients.remove(client)
        client.close()

    try:
        listener.bind(str(path))
        listener.listen(16)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        entry = {
            "usb_serial": usb_serial,
            "port": str(path),
            "usb_socket": str(path),
            "process_id": pid,
            "state": "dfu",
            "usb_vid": STM32_ROM_VID,
            "usb_pid": STM32_ROM_PID,
        }
        if board_id is not None:
            entry["board_id"] = board_id
        registry.write_entry(registry_dir, entry)
        say(f"DFU device 0483:df11 serial {usb_serial} on {path}")
        if on_ready is not None:
            on_ready(path)
        while not should_stop():
            for key, _ in selector.select(poll_interval):
                if key.fileobj is listener:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        client, _addr = listener.accept()
                        client.setblocking(True)
                        client.settimeout(_FRAME_READ_TIMEOUT)
                        clients.append(client)
                        selector.register(client, selectors.EVENT_READ)
                    continue
                client = key.fileobj  # type: ignore[assignment]
                try:
                    frame = recv_frame(client)
                    if frame is None:
                        drop(client)
                        continue
                    send_frame(client, handle_frame(device, frame))
                except (OSError, ValueError):
                    drop(client)
                    continue
                finally:
                    device.finish_work()  # erase/program after the GETSTATUS answer is out
                if device.left or device.reset_pending or should_stop():
                    break
            if device.reset_pending:
                say("read-unprotect: mass erase done, device resets (still in DFU)")
                device.reset_pending = False
                for client in list(clients):
                    drop(client)
            if device.left:
                say("DFU leave: device resets")
                break
    finally:
        for client in list(clients):
            drop(client)
        selector.close()
        listener.close()
        path.unlink(missing_ok=True)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        registry.remove_entry(registry_dir, usb_serial, process_id=pid)
        with contextlib.suppress(OSError):
            flash.flush()


# ------------------------------------------------------------------------ standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hil.vfc.dfu_device",
        description="Serve one virtual STM32 ROM DFU device until DFU leave or a signal.",
    )
    parser.add_argument("--flash", required=True, type=Path, help="the board's flash.bin")
    parser.add_argument("--usb-serial", required=True)
    parser.add_argument("--registry", type=Path, default=None)
    parser.add_argument("--board-id", type=int, default=None)
    parser.add_argument("--timing", choices=("fast", "instant", "stm32f4"), default="fast")
    args = parser.parse_args(argv)
    directory = args.registry if args.registry is not None else registry.default_registry_dir()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    timing = {
        "fast": DfuTiming(),
        "instant": DfuTiming.instant(),
        "stm32f4": DfuTiming.stm32f4(),
    }[args.timing]
    with Flash(args.flash) as flash:
        serve_dfu(
            flash,
            args.usb_serial,
            directory,
            lambda: stopping,
            timing=timing,
            board_id=args.board_id,
            log=lambda text: print(f"dfu {args.usb_serial}: {text}", file=sys.stderr, flush=True),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
