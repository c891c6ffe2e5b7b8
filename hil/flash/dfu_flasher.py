"""Flash a board through the STM32 ROM DFU bootloader (USB DFU 1.1 + DfuSe), over pyusb.

The same code drives real boards (libusb, via `libusb-package`) and virtual ones
(`hil.boards.virtual_usb.VirtualBackend`): find the DFU device by USB serial, read its
memory layout and DFU functional descriptor, refuse an image that does not fit the
writable sectors, is for another board or is not an application at all
(`hil.flash.preflight`, before anything is erased), clear any error
state, skip when the read-back already equals the image, erase the touched sectors,
write in wTransferSize blocks, verify by read-back, leave DFU, and wait for the board to
come back running the app.

Blocks of one contiguous region go out with consecutive block numbers after a single
SET_ADDRESS: DfuSe (UM0424, AN3156) puts DNLOAD block n >= 2 at address pointer +
(n - 2) * wTransferSize, and only SET_ADDRESS (or an erase) moves the pointer. So each
region (and the held-back first block) starts with SET_ADDRESS and block 2, as dfu-util
starts every chunk, and the blocks after it need no more round trips. The pollTimeout
the device asks for after each block is waited to the deadline, not slept past.

The first block of the image is written last: until the very end the application's
first bytes (its magic, for the virtual board) stay erased, so a flash cut off half way
leaves a board that does not boot a half-written app and that can be flashed again; the
error is a `FlashInterrupted` that says so.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import usb.core
import usb.util

from hil.errors import HilError, PortNotFound
from hil.firmware.app_image import APP_MAGIC, HEADER
from hil.firmware.dfuse_codec import (
    FIRST_DATA_BLOCK,
    REQUEST_TYPE_IN,
    REQUEST_TYPE_OUT,
    STM32_ROM_PID,
    STM32_ROM_VID,
    DfuCodecError,
    DfuRequest,
    DfuState,
    DfuStatus,
    FunctionalDescriptor,
    MemoryLayout,
    StatusReply,
    erase_page_command,
    parse_functional_descriptor,
    parse_memory_layout,
    parse_status,
    set_address_command,
)
from hil.firmware.image import FirmwareImage
from hil.flash import preflight
from hil.flash.base import Flasher, FlashError, FlashInterrupted, FlashResult, Progress
from hil.flash.preflight import FlashArea, FlashTarget
from hil.flash.wait import DeadlineWaiter
from hil.links import ports, registry

log = logging.getLogger(__name__)

_APP_HEADER = HEADER  # magic, board_id, flight_sw_version, config length, crc32

FULL_SPEED_CONTROL_BPS = 832_000.0
"""USB 2.0 table 5-5: the most a full-speed device moves in 64-byte control transfers."""
HIGH_SPEED_CONTROL_BPS = 15_872_000.0

ENTER_DFU_HINT = (
    "put it into DFU first: power it with BOOT0 held (the virtual board: "
    "`python -m hil.vfc ... --boot0`), or give DfuFlasher an enter_dfu callable "
    "(the rig's BOOT0 switch); a board that runs ArduPilot/PX4 can also be flashed "
    "through its serial bootloader (method 'serial')"
)


MAX_BLOCK = 0xFFFF
"""The largest wBlockNum (wValue is 16 bits): a longer region gets a new SET_ADDRESS."""

What = str | Callable[[], str]
"""A step's name for errors; a callable is only called when an error needs it."""


def _name(what: What) -> str:
    return what if isinstance(what, str) else what()


class _DeviceError(HilError):
    """The DFU device answered a GETSTATUS with an error status."""

    def __init__(self, status: DfuStatus, state: DfuState, what: str) -> None:
        super().__init__(f"{what}: device reports {status.name} in state {state.name}")
        self.status = status


def _version_text(value: int) -> str:
    return f"{value >> 24 & 0xFF}.{value >> 16 & 0xFF}.{value >> 8 & 0xFF}"


def parse_app_header(data: bytes) -> dict[str, Any] | None:
    """The virtual app header (docs/flashing.md) at the start of `data`, or None without magic."""
    if len(data) < _APP_HEADER.size or not data.startswith(APP_MAGIC):
        return None
    _, board_id, version, length, crc = _APP_HEADER.unpack_from(data)
    config = data[_APP_HEADER.size : _APP_HEADER.size + length]
    return {
        "board_id": board_id,
        "version": _version_text(version),
        "config_complete": len(config) == length,
        "crc_ok": len(config) == length and zlib.crc32(config) == crc,
    }


class DfuSession:
    """DFU/DfuSe requests on one opened pyusb device (interface `interface`)."""

    def __init__(
        self,
        dev: Any,
        *,
        interface: int = 0,
        transfer_size: int = 2048,
        timeout_ms: int = 5000,
        busy_limit: float = 60.0,
        auto_increment: bool = True,
    ) -> None:
        self.dev = dev
        self.auto_increment = auto_increment
        self.interface = interface
        self.transfer_size = transfer_size
        self.timeout_ms = timeout_ms
        self.busy_limit = busy_limit
        self.waiter = DeadlineWaiter()

    # -- raw requests --------------------------------------------------------------------
    def _out(self, request: DfuRequest, value: int = 0, data: bytes = b"") -> None:
        self.dev.ctrl_transfer(REQUEST_TYPE_OUT, request, value, self.interface, data, self.timeout_ms)

    def _in(self, request: DfuRequest, value: int, length: int) -> bytes:
        return bytes(
            self.dev.ctrl_transfer(REQUEST_TYPE_IN, request, value, self.interface, length, self.timeout_ms)
        )

    def get_status(self) -> StatusReply:
        try:
            return parse_status(self._in(DfuRequest.GETSTATUS, 0, 6))
        except DfuCodecError as exc:
            raise FlashError(f"DFU GETSTATUS answer is garbage: {exc}") from None

    def clear_status(self) -> None:
        self._out(DfuRequest.CLRSTATUS)

    def abort(self) -> None:
        self._out(DfuRequest.ABORT)

    def dnload(self, block: int, data: bytes) -> None:
        self._out(DfuRequest.DNLOAD, block, data)

    def upload(self, block: int, length: int) -> bytes:
        return self._in(DfuRequest.UPLOAD, block, length)

    # -- sequences -----------------------------------------------------------------------
    def wait_done(self, what: What) -> StatusReply:
        """After a DNLOAD: GETSTATUS, wait pollTimeout while dfuDNBUSY, until dfuDNLOAD-IDLE.

        Each wait ends at the pollTimeout after the answer arrived (the device starts
        its clock when it answers), not later; all of them within `busy_limit`.
        """
        give_up = time.monotonic() + self.busy_limit
        while True:
            reply = self.get_status()
            answered = time.monotonic()
            if reply.status != DfuStatus.OK or reply.state == DfuState.DFU_ERROR:
                raise _DeviceError(reply.status, reply.state, _name(what))
            if reply.state != DfuState.DFU_DNBUSY:
                return reply
            if answered > give_up:
                raise FlashError(
                    f"{_name(what)}: the DFU device stayed busy for over {self.busy_limit:.0f} s"
                )
            self.waiter.wait_until(min(answered + reply.poll_timeout_ms / 1000.0, give_up))

    def command(self, payload: bytes, what: str) -> None:
        self.dnload(0, payload)
        reply = self.wait_done(what)
        if reply.state != DfuState.DFU_DNLOAD_IDLE:
            raise FlashError(f"{what}: DFU device ended in {reply.state.name}, expected dfuDNLOAD-IDLE")

    def set_address(self, address: int) -> None:
        self.command(set_address_command(address), f"set address 0x{address:08X}")

    def erase(self, address: int) -> None:
        self.command(erase_page_command(address), f"erase sector 0x{address:08X}")

    def write(self, address: int, data: bytes) -> None:
        """Program one block at `address` (SET_ADDRESS, then block 2)."""
        self.write_blocks(address, [data])

    def write_blocks(
        self,
        address: int,
        blocks: Sequence[bytes],
        on_block: Callable[[int, int], None] | None = None,
    ) -> None:
        """Program `blocks` back to back from `address`: SET_ADDRESS, then DNLOAD blocks
        2, 3, ... (block n lands at address + (n - 2) * wTransferSize), with a new
        SET_ADDRESS before the block number would pass 0xFFFF (or before every block,
        block 2 each, without `auto_increment`). Every block but the last must be
        wTransferSize long. `on_block(address, length)` follows each block."""
        size = self.transfer_size
        last = len(blocks) - 1
        block = MAX_BLOCK + 1  # a SET_ADDRESS before the first block
        for i, data in enumerate(blocks):
            if len(data) > size or (len(data) < size and i != last) or not data:
                raise ValueError(
                    f"block {i} of {len(blocks)} at 0x{address:08X} is {len(data)} bytes: "
                    f"consecutive blocks must be {size} bytes (only the last may be shorter)"
                )
            at, length = address + i * size, len(data)
            if block > MAX_BLOCK or not self.auto_increment:
                self.set_address(at)
                block = FIRST_DATA_BLOCK
            self.dnload(block, data)
            reply = self.wait_done(lambda at=at, n=length: f"write {n} bytes at 0x{at:08X}")
            if reply.state != DfuState.DFU_DNLOAD_IDLE:
                raise FlashError(f"write at 0x{at:08X}: DFU device ended in {reply.state.name}")
            block += 1
            if on_block is not None:
                on_block(at, length)

    def ensure_idle(self) -> None:
        """Bring the device to dfuIDLE from whatever an earlier (cut-off) session left."""
        for _ in range(4):
            reply = self.get_status()
            if reply.state == DfuState.DFU_IDLE and reply.status == DfuStatus.OK:
                return
            if reply.state == DfuState.DFU_ERROR:
                self.clear_status()
            elif reply.state == DfuState.DFU_DNBUSY:
                time.sleep(reply.poll_timeout_ms / 1000.0)
            else:
                self.abort()
        raise FlashError(f"DFU device does not return to dfuIDLE (state {reply.state.name}, status {reply.status.name})")

    def read(self, address: int, length: int, progress: Callable[[int], None] | None = None) -> bytes:
        """UPLOAD `length` bytes from `address` (pointer set, then blocks 2, 3, ...)."""
        self.set_address(address)
        self.abort()  # UPLOAD starts from dfuIDLE; the pointer stays
        parts: list[bytes] = []
        done = 0
        block = FIRST_DATA_BLOCK
        while done < length:
            want = min(self.transfer_size, length - done)
            chunk = self.upload(block, want)
            parts.append(chunk)
            done += len(chunk)
            if progress is not None:
                progress(len(chunk))
            if len(chunk) < want:
                break
            block += 1
        self.abort()
        return b"".join(parts)

    def leave(self, address: int) -> None:
        """Set the pointer, zero-length DNLOAD, GETSTATUS; a device that drops off is fine."""
        self.set_address(address)
        self.dnload(0, b"")
        with contextlib.suppress(usb.core.USBError):
            self.get_status()


def _default_backend() -> Any:
    try:
        import libusb_package
    except ImportError:
        return None
    try:
        return libusb_package.get_libusb1_backend()
    except Exception:  # noqa: BLE001 - an unusable libusb just means "no real USB"
        return None


class DfuFlasher(Flasher):
    """Flash through the ROM DFU device (0483:df11) whose iSerialNumber is `usb_serial`."""

    method = "dfu"

    def __init__(
        self,
        usb_serial: str,
        *,
        registry_dir: Path | str | None = None,
        progress: Progress | None = None,
        backend: Any = None,
        enter_dfu: Callable[[], None] | None = None,
        board_id: int | None = None,
        app_header: bool | None = None,
        find_timeout: float = 10.0,
        boot_timeout: float = 15.0,
        wait_for_app: bool = True,
        confirm_version: bool = True,
        transfer_timeout_ms: int = 5000,
    ) -> None:
        super().__init__(usb_serial, registry_dir=registry_dir, progress=progress)
        self.backend = backend if backend is not None else _default_backend()
        self.enter_dfu = enter_dfu
        self.board_id = board_id
        self.app_header = app_header  # None: known from the board id (preflight.KNOWN_BOARDS)
        self.find_timeout = find_timeout
        self.boot_timeout = boot_timeout
        self.wait_for_app = wait_for_app
        self.confirm_version = confirm_version
        self.transfer_timeout_ms = transfer_timeout_ms
        self._step = ""
        self._transfer_size_known = True

    # -- finding the device ----------------------------------------------------------------
    def _registry(self) -> Path:
        return Path(self.registry_dir) if self.registry_dir is not None else registry.default_registry_dir()

    def find_device(self, timeout: float = 0.0) -> Any | None:
        """The DFU device with our serial, waiting up to `timeout` s; None when not seen."""
        if self.backend is None:
            return None
        deadline = time.monotonic() + timeout
        while True:
            try:
                candidates = list(
                    usb.core.find(
                        find_all=True, idVendor=STM32_ROM_VID, idProduct=STM32_ROM_PID, backend=self.backend
                    )
                )
            except (usb.core.USBError, usb.core.NoBackendError):
                candidates = []
            for dev in candidates:
                try:
                    serial = dev.serial_number
                except (usb.core.USBError, ValueError, NotImplementedError):
                    continue
                if serial == self.usb_serial:
                    return dev
                with contextlib.suppress(usb.core.USBError, NotImplementedError):
                    usb.util.dispose_resources(dev)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _where_is_board(self) -> str:
        try:
            entry = registry.find_entry(self._registry(), self.usb_serial)
        except ValueError:
            entry = None
        if entry is not None:
            return f"it is in state {entry.get('state')!r} at {entry.get('port')}"
        return "no DFU device 0483:df11 with that serial is on the bus"

    def _open(self) -> Any:
        dev = self.find_device(0.0)
        if dev is None and self.enter_dfu is not None:
            self.enter_dfu()
            dev = self.find_device(self.find_timeout)
            if dev is None:
                raise FlashError(
                    f"board {self.usb_serial}: enter_dfu ran but no DFU device 0483:df11 with that "
                    f"serial appeared within {self.find_timeout:.1f} s ({self._where_is_board()})"
                )
        if dev is None:
            backend = "no libusb available" if self.backend is None else repr(self.backend)
            raise FlashError(
                f"board {self.usb_serial} is not in DFU mode ({self._where_is_board()}; backend "
                f"{backend}): {ENTER_DFU_HINT}"
            )
        return dev

    # -- descriptors -----------------------------------------------------------------------
    def _describe(self, dev: Any) -> tuple[int, MemoryLayout, FunctionalDescriptor]:
        """(interface number, layout of the alt setting holding flash, functional descriptor)."""
        try:
            config = dev.get_active_configuration()
        except (usb.core.USBError, NotImplementedError):
            config = dev[0]
        chosen = None
        functional: FunctionalDescriptor | None = None
        for intf in config:
            if intf.bInterfaceClass != 0xFE or intf.bInterfaceSubClass != 0x01:
                continue
            extra = bytes(intf.extra_descriptors or b"")
            if functional is None and extra:
                with contextlib.suppress(DfuCodecError):
                    functional = parse_functional_descriptor(extra)
            text = usb.util.get_string(dev, intf.iInterface) if intf.iInterface else None
            if text is None:
                continue
            try:
                layout = parse_memory_layout(text)
            except DfuCodecError as exc:
                raise FlashError(f"board {self.usb_serial}: unreadable DFU memory layout: {exc}") from None
            if chosen is None and "flash" in layout.name.lower():
                chosen = (intf.bInterfaceNumber, intf.bAlternateSetting, layout)
        if chosen is None:
            raise FlashError(
                f"board {self.usb_serial}: the DFU device has no alt setting describing internal flash"
            )
        number, alt, layout = chosen
        # Block numbers locate data only with the device's own wTransferSize: when it is
        # assumed, every block gets its own SET_ADDRESS (and block 2), as dfu-util does.
        self._transfer_size_known = functional is not None
        if functional is None:
            functional = FunctionalDescriptor()
            log.info("no DFU functional descriptor; assuming %s", functional)
        if alt != 0:
            dev.set_interface_altsetting(number, alt)
        return number, layout, functional

    # -- checks ----------------------------------------------------------------------------
    def _expected_board_id(self) -> int | None:
        if self.board_id is not None:
            return self.board_id
        with contextlib.suppress(ValueError):
            entry = registry.find_entry(self._registry(), self.usb_serial)
            if entry is not None and isinstance(entry.get("board_id"), int):
                return int(entry["board_id"])
        return None

    def target(self, layout: MemoryLayout) -> FlashTarget:
        """The board as its DFU memory layout and the rig describe it."""
        writable = [sector for sector in layout.sectors if sector.writable]
        return FlashTarget(
            where=f"board {self.usb_serial} ({layout.name.strip()})",
            app_start=writable[0].address if writable else layout.sectors[0].address,
            areas=tuple(
                FlashArea(
                    sector.address,
                    sector.end,
                    writable=sector.writable,
                    what="the read-only sector (the bootloader)",
                )
                for sector in layout.sectors
            ),
            board_id=self._expected_board_id(),
            app_header=self.app_header,
        )

    def check_image(self, image: FirmwareImage, layout: MemoryLayout) -> preflight.Checked:
        """Refuse (ImageRefused, before any erase) an image this board must not get."""
        return preflight.check_image(image, self.target(layout))

    # -- flashing --------------------------------------------------------------------------
    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        dev = self._open()
        self._step = "reading descriptors"
        try:
            interface, layout, functional = self._describe(dev)
            checked = self.check_image(image, layout)
            session = DfuSession(
                dev,
                interface=interface,
                transfer_size=functional.transfer_size,
                auto_increment=self._transfer_size_known,
                timeout_ms=self.transfer_timeout_ms,
            )
            self._step = "clearing the DFU state"
            session.ensure_idle()
            return self._flash(session, image, checked, force, layout)
        except usb.core.USBError as exc:
            raise FlashError(
                f"board {self.usb_serial}: DFU transfer failed while {self._step}: {exc}. The ROM "
                "bootloader cannot be damaged: power the board with BOOT0 held and flash again"
            ) from None
        except _DeviceError as exc:
            raise FlashError(
                f"board {self.usb_serial}: {exc} (while {self._step}); the board stays in DFU: "
                "flash again"
            ) from None
        finally:
            with contextlib.suppress(usb.core.USBError, NotImplementedError):
                usb.util.dispose_resources(dev)

    def _flash(
        self,
        session: DfuSession,
        image: FirmwareImage,
        checked: preflight.Checked,
        force: bool,
        layout: MemoryLayout,
    ) -> FlashResult:
        total = image.size
        self._step = "reading back the current image"
        old_version = None
        current_head = session.read(image.base_address, min(_APP_HEADER.size + 4096, len(image.segments[0].data)))
        old_header = parse_app_header(current_head)
        if old_header is not None and old_header["crc_ok"]:
            old_version = old_header["version"]
        # What the board will report over MAVLink: the header's flight_sw_version as text.
        if checked.flight_sw_version is not None:
            new_version: str | None = _version_text(checked.flight_sw_version)
        else:
            new_version = image.version

        if not force and self._already_there(session, image):
            self._step = "leaving DFU"
            session.leave(image.base_address)
            self._after_leave(new_version)
            return FlashResult(
                self.usb_serial, self.method, image.sha256, True, 0, 0.0, 0.0,
                self._link_limit(session.dev), "", old_version, new_version,
            )

        t0 = time.monotonic()
        self.erase_started = True
        try:
            touched = [
                sector
                for sector in layout.sectors
                if any(seg.address < sector.end and sector.address < seg.end for seg in image.segments)
            ]
            erase_total = sum(sector.size for sector in touched)
            erased = 0
            self.progress(0, erase_total, "erase")
            for sector in touched:
                self._step = f"erasing sector 0x{sector.address:08X}"
                session.erase(sector.address)
                erased += sector.size
                self.progress(erased, erase_total, "erase")

            size = session.transfer_size
            regions = [
                (seg.address, [seg.data[off : off + size] for off in range(0, len(seg.data), size)])
                for seg in image.segments
            ]
            # The first block (the app's magic) goes last: a cut-off flash never looks bootable.
            start, first_blocks = regions[0]
            plan = [(start + size, first_blocks[1:]), *regions[1:], (start, first_blocks[:1])]
            t_write = time.monotonic()
            written = 0

            def on_block(address: int, length: int) -> None:
                nonlocal written
                written += length
                self._step = f"writing after 0x{address:08X} ({written} of {total} bytes written)"
                self.progress(written, total, "write")

            self.progress(0, total, "write")
            for address, blocks in plan:
                if blocks:
                    self._step = f"writing 0x{address:08X} ({written} of {total} bytes written)"
                    session.write_blocks(address, blocks, on_block)
            write_seconds = time.monotonic() - t_write

            verified = 0

            def on_read(n: int) -> None:
                nonlocal verified
                verified += n
                self.progress(verified, total, "verify")

            self.progress(0, total, "verify")
            self._step = "verifying"
            for seg in image.segments:
                back = session.read(seg.address, len(seg.data), on_read)
                if back != seg.data:
                    at = next((i for i, (a, b) in enumerate(zip(back, seg.data, strict=False)) if a != b), len(back))
                    raise FlashError(
                        f"verify failed at 0x{seg.address + at:08X}: the read-back differs from the image"
                    )
        except usb.core.USBError as exc:
            raise self._interrupted(f"DFU transfer failed while {self._step}: {exc}") from exc
        except HilError as exc:
            raise self._interrupted(f"{exc} (while {self._step})") from exc
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, the board waits in DFU
            raise self._interrupted(f"{type(exc).__name__} while {self._step}: {exc}") from exc
        seconds = time.monotonic() - t0

        self._step = "leaving DFU"
        session.leave(image.base_address)
        confirmed = self._after_leave(new_version)
        return FlashResult(
            usb_serial=self.usb_serial,
            method=self.method,
            image_sha256=image.sha256,
            skipped=False,
            bytes_written=written,
            seconds=seconds,
            write_seconds=write_seconds,
            link_limit_bps=self._link_limit(session.dev),
            verified_by="readback",
            old_version=old_version,
            new_version=confirmed or new_version,
        )

    def _interrupted(self, reason: str) -> FlashInterrupted:
        return FlashInterrupted(self.usb_serial, self.method, reason.rstrip(". "))

    def _already_there(self, session: DfuSession, image: FirmwareImage) -> bool:
        for seg in image.segments:
            if session.read(seg.address, len(seg.data)) != seg.data:
                return False
        return True

    def _link_limit(self, dev: Any) -> float | None:
        if getattr(self.backend, "has_bus", True) is False:  # the virtual rig's socket backend
            return None
        return HIGH_SPEED_CONTROL_BPS if getattr(dev, "speed", None) == 3 else FULL_SPEED_CONTROL_BPS

    # -- after leave -----------------------------------------------------------------------
    def _after_leave(self, expected_version: str | None) -> str | None:
        """Wait for the board in state `app`; return the version it reports, when it does."""
        if not self.wait_for_app:
            return None
        try:
            port = ports.find_port(self.usb_serial, self.registry_dir, timeout=self.boot_timeout, state="app")
        except PortNotFound as exc:
            raise FlashError(
                f"board {self.usb_serial}: image written and verified, DFU left, but the board did "
                f"not come back running the app within {self.boot_timeout:.0f} s ({exc}). An image "
                "the board rejects (magic, board id, CRC, JSON) leaves it in its bootloader"
            ) from None
        if not self.confirm_version:
            return None
        reported = self._query_version(port.device)
        if reported is not None and expected_version is not None and reported != expected_version:
            raise FlashError(
                f"board {self.usb_serial} came back reporting version {reported}, expected "
                f"{expected_version}: it did not boot the new image"
            )
        return reported

    def _query_version(self, device: str) -> str | None:
        try:
            from hil.autopilot.mavlink import MavlinkAutopilot
            from hil.links.serial_link import SerialLink
            from hil.mavlink.connection import MavConnection

            link = SerialLink(device).open()
            conn = MavConnection(link)
            try:
                autopilot = MavlinkAutopilot(conn)
                conn.start_reader()
                return autopilot.identify(timeout=5.0).firmware_version
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - confirming over MAVLink is best effort
            log.info("could not confirm the version of %s over MAVLink: %s", self.usb_serial, exc)
            return None
