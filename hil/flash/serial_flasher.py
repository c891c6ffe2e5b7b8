"""Flash a board through its PX4/ArduPilot serial bootloader (PROTOCOLS.md section 1).

The steps, each bounded in time and named in any error: check the image alone and
against what the registry says of the board (`hil.flash.preflight`); find the board by
USB serial; if it runs its application, check over MAVLink that it is disarmed and send
MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN 3; find the bootloader's port again by USB serial;
GET_SYNC; GET_DEVICE (BL_REV, BOARD_ID, FLASH_SIZE) and check the image against them
BEFORE erasing; skip when GET_CRC already equals the image's CRC; CHIP_ERASE; PROG_MULTI in
252-byte chunks; GET_CRC verify; REBOOT; find the application's port again and confirm
the new version from AUTOPILOT_VERSION. A refused image leaves the old firmware booting;
a failure after CHIP_ERASE is a `FlashInterrupted` and leaves the board in its bootloader.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hil.errors import HilError, LinkError, PortNotFound
from hil.firmware import bootloader_codec as bl
from hil.firmware.app_image import flight_sw_version
from hil.firmware.image import DEFAULT_FLASH_BASE, FirmwareImage
from hil.flash import preflight
from hil.flash.base import Flasher, FlashError, FlashInterrupted, FlashResult, Progress
from hil.flash.preflight import FlashArea, FlashTarget
from hil.links import registry
from hil.links.ports import find_port
from hil.links.serial_link import SerialLink
from hil.timeout import Deadline

APP_BASE = 0x08004000
"""Where the virtual board's (and most F4 ArduPilot boards') application starts."""


def in_app_area(image: FirmwareImage, app_base: int = APP_BASE) -> FirmwareImage:
    """The image placed where the bootloader programs it.

    `.apj`/`.px4`/`.bin` payloads carry no address: whatever base they were loaded at
    (the flash base or the application's), they start at the application. Other formats
    keep their addresses and must start at `app_base` or above.
    """
    if not image.segments:
        raise FlashError(f"{image.path}: the image is empty")
    if image.format in ("apj", "px4", "bin") and image.base_address in (
        DEFAULT_FLASH_BASE,
        app_base,
    ):
        return image.moved(app_base)
    if image.base_address < app_base:
        raise preflight.refuse(
            image,
            f"data starts at 0x{image.base_address:08X}, below the application area at "
            f"0x{app_base:08X} (the bootloader sector): this image cannot go through the "
            "serial bootloader; use the DFU path or an application-only build",
        )
    return image


def app_payload(image: FirmwareImage, app_base: int = APP_BASE) -> bytes:
    """The bytes the bootloader programs from the start of the application area
    (a gap before the first segment is written as erased flash)."""
    placed = in_app_area(image, app_base)
    return b"\xff" * (placed.base_address - app_base) + placed.contiguous()


@dataclass(frozen=True)
class DeviceFacts:
    """What GET_DEVICE said."""

    bl_rev: int
    board_id: int
    board_rev: int
    flash_size: int


def _name(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


class BootloaderLink:
    """Requests and replies over an open port, every read bounded."""

    def __init__(self, url: str, *, reply_timeout: float = 2.0) -> None:
        self.url = url
        self.reply_timeout = reply_timeout
        self.link = SerialLink(url, 115200)
        self._rx = bytearray()

    def open(self) -> BootloaderLink:
        self.link.open()
        return self

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> BootloaderLink:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drain(self, quiet: float = 0.05) -> None:
        """Drop whatever the port holds (stale bytes before a sync)."""
        self._rx.clear()
        while self.link.read(quiet) is not None:
            pass

    def send(self, data: bytes) -> None:
        """Write one request; `receive` reads its reply."""
        self.link.write(data)

    def receive(
        self, what: str | Callable[[], str], data_len: int = 0, timeout: float | None = None
    ) -> bl.Reply:
        """Read one reply of `data_len` bytes; FlashError on silence or garbage.

        `what` names the request in errors; a callable is only called to build one.
        """
        limit = self.reply_timeout if timeout is None else timeout
        deadline = Deadline(limit)
        while True:
            at_end = deadline.expired
            try:
                reply = bl.parse_reply(self._rx, data_len, at_end=at_end)
            except bl.BootloaderCodecError as exc:
                got = str(exc) if self._rx else f"no answer within {limit:.1f} s"
                self._rx.clear()
                raise FlashError(
                    f"bootloader on {self.url}: {_name(what)}: {got}; is it a PX4/ArduPilot "
                    "bootloader, still powered?"
                ) from None
            if reply is not None:
                del self._rx[: reply.consumed]
                return reply
            if at_end:  # pragma: no cover - parse_reply raises or answers at the end
                raise FlashError(
                    f"bootloader on {self.url}: {_name(what)}: no answer within {limit:.1f} s"
                )
            chunk = self.link.read(max(0.0, deadline.remaining))
            if chunk is not None:
                self._rx += chunk.data

    def request(
        self, what: str, data: bytes, data_len: int = 0, timeout: float | None = None
    ) -> bl.Reply:
        """Send `data`, read one reply of `data_len` bytes; FlashError on silence or garbage."""
        self.send(data)
        return self.receive(what, data_len, timeout)

    def require_ok(self, what: str | Callable[[], str], reply: bl.Reply) -> bytes:
        """The reply's data when its status is OK, else FlashError."""
        if not reply.ok:
            raise FlashError(
                f"bootloader on {self.url}: {_name(what)} refused ({reply.status.name}); "
                "power-cycle the board and try again"
            )
        return reply.data

    def ok(self, what: str, data: bytes, data_len: int = 0, timeout: float | None = None) -> bytes:
        """`request`, requiring status OK; returns the reply data."""
        return self.require_ok(what, self.request(what, data, data_len, timeout))

    def word(self, what: str, data: bytes) -> int:
        return int.from_bytes(self.ok(what, data, 4), "little")

    def sync(self, attempts: int = 3) -> None:
        """GET_SYNC, a few times: the first may meet stale bytes."""
        last: FlashError | None = None
        for _ in range(attempts):
            self.drain()
            try:
                self.ok("GET_SYNC", bl.encode_get_sync(), timeout=min(self.reply_timeout, 1.0))
                return
            except FlashError as exc:
                last = exc
        assert last is not None
        raise last

    def device(self) -> DeviceFacts:
        info = bl.DeviceInfo
        return DeviceFacts(
            bl_rev=self.word("GET_DEVICE BL_REV", bl.encode_get_device(info.BL_REV)),
            board_id=self.word("GET_DEVICE BOARD_ID", bl.encode_get_device(info.BOARD_ID)),
            board_rev=self.word("GET_DEVICE BOARD_REV", bl.encode_get_device(info.BOARD_REV)),
            flash_size=self.word("GET_DEVICE FLASH_SIZE", bl.encode_get_device(info.FLASH_SIZE)),
        )


class SerialFlasher(Flasher):
    """Flash over the serial bootloader, finding the board by USB serial at every step."""

    method = "serial"

    def __init__(
        self,
        usb_serial: str,
        *,
        registry_dir: Path | str | None = None,
        progress: Progress | None = None,
        port_timeout: float = 10.0,
        reply_timeout: float = 2.0,
        erase_timeout: float = 30.0,
        mavlink_timeout: float = 10.0,
    ) -> None:
        super().__init__(usb_serial, registry_dir=registry_dir, progress=progress)
        self.port_timeout = port_timeout
        self.reply_timeout = reply_timeout
        self.erase_timeout = erase_timeout
        self.mavlink_timeout = mavlink_timeout

    # -- the whole job ----------------------------------------------------------------
    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        image = in_app_area(image)
        # Everything the image and the registry can tell is checked before the board is
        # rebooted; what only the bootloader knows (board id, FLASH_SIZE) before CHIP_ERASE.
        checked = preflight.check_image(image, self._target_before_reboot())
        expected = self._expected_version(image, checked)
        port = self._find(None, "its port")
        old_version = None
        if port.state == "app":
            old_version = self._enter_bootloader(port.device)
        elif port.state != "bootloader":
            raise FlashError(
                f"board {self.usb_serial} is in state {port.state!r} on {port.device}: the serial "
                "bootloader path needs it in its application or bootloader"
            )
        loader_port = self._find("bootloader", "its bootloader port after the reboot")
        with BootloaderLink(loader_port.device, reply_timeout=self.reply_timeout) as link:
            outcome = self._program(link, image, None, force)
        new_version = self._confirm(expected)
        skipped, written, seconds, write_seconds = outcome
        return FlashResult(
            usb_serial=self.usb_serial,
            method=self.method,
            image_sha256=image.sha256,
            skipped=skipped,
            bytes_written=written,
            seconds=seconds,
            write_seconds=write_seconds,
            link_limit_bps=None,  # a pty has no baud rate; see measure_pty_round_trip()
            verified_by="" if skipped else "crc",
            old_version=old_version,
            new_version=new_version,
        )

    def _target_before_reboot(self) -> FlashTarget:
        """The board as the registry and KNOWN_BOARDS describe it, before asking its bootloader.

        Without a known board type, the application area is bounded by the largest flash
        a bootloader could offer, so an absurd address is refused before the reboot.
        """
        board_id = None
        with contextlib.suppress(ValueError, OSError):
            directory = self.registry_dir or registry.default_registry_dir()
            entry = registry.find_entry(directory, self.usb_serial)
            if entry is not None and isinstance(entry.get("board_id"), int):
                board_id = int(entry["board_id"])
        facts = preflight.KNOWN_BOARDS.get(board_id) if board_id is not None else None
        size = facts.app_size if facts is not None else preflight.DESCRIPTOR_SCAN
        return _target(f"board {self.usb_serial}", board_id, size)

    @staticmethod
    def _expected_version(
        image: FirmwareImage, checked: preflight.Checked
    ) -> tuple[str | None, int | None]:
        if checked.kind == "hil-app":
            return checked.version, checked.flight_sw_version
        return image.version, flight_sw_version(image.version) if image.version else None

    def _find(self, state: str | None, what: str):
        try:
            return find_port(
                self.usb_serial, self.registry_dir, timeout=self.port_timeout, state=state
            )
        except PortNotFound as exc:
            raise FlashError(
                f"board {self.usb_serial}: waited {self.port_timeout:.1f} s for {what}: {exc}"
            ) from None

    # -- application side -------------------------------------------------------------
    def _mavlink(self, url: str):
        from hil.autopilot.mavlink import MavlinkAutopilot
        from hil.mavlink.connection import MavConnection

        link = SerialLink(url, 115200).open()
        conn = MavConnection(link)
        autopilot = MavlinkAutopilot(conn)
        conn.start_reader()
        try:
            autopilot.ping(self.mavlink_timeout)
            autopilot.identify(self.mavlink_timeout)
        except HilError:
            conn.close()
            autopilot.close()
            raise
        return autopilot

    @staticmethod
    def _close(autopilot) -> None:
        autopilot.conn.close()
        autopilot.close()

    def _enter_bootloader(self, url: str) -> str | None:
        from hil.mavlink.dialect import mavlink

        try:
            autopilot = self._mavlink(url)
        except HilError as exc:
            raise FlashError(
                f"board {self.usb_serial}: its application on {url} did not answer MAVLink "
                f"within {self.mavlink_timeout:.1f} s ({exc}); power-cycle it into its bootloader"
            ) from None
        try:
            version = self._version_text(autopilot)
            if autopilot.armed:
                raise FlashError(
                    f"board {self.usb_serial} on {url} is armed: disarm it before flashing"
                )
            try:
                autopilot.command(
                    mavlink.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, 3, timeout=self.mavlink_timeout
                )
            except HilError as exc:
                raise FlashError(
                    f"board {self.usb_serial} on {url} refused to reboot into its bootloader: {exc}"
                ) from None
        finally:
            self._close(autopilot)
        return version

    @staticmethod
    def _version_text(autopilot) -> str | None:
        ident = autopilot.identity
        return ident.firmware_version if ident is not None else None

    def _confirm(self, expected: tuple[str | None, int | None]) -> str | None:
        """Find the application again and check AUTOPILOT_VERSION says the new version."""
        port = self._find("app", "its application port after REBOOT")
        try:
            autopilot = self._mavlink(port.device)
        except HilError as exc:
            raise FlashError(
                f"board {self.usb_serial}: the new firmware on {port.device} did not answer "
                f"MAVLink within {self.mavlink_timeout:.1f} s: {exc}"
            ) from None
        try:
            reported = autopilot.last.get("AUTOPILOT_VERSION")
            sw = getattr(reported, "flight_sw_version", None)
        finally:
            self._close(autopilot)
        text, code = expected
        if code is not None and sw is not None and sw != code:
            raise FlashError(
                f"board {self.usb_serial} on {port.device} reports flight_sw_version 0x{sw:08X} "
                f"after flashing, expected 0x{code:08X} ({text}): the new image did not boot"
            )
        if text is not None:
            return text
        return None if sw is None else f"{sw >> 24 & 0xFF}.{sw >> 16 & 0xFF}.{sw >> 8 & 0xFF}"

    # -- bootloader side ----------------------------------------------------------------
    def _program(
        self, link: BootloaderLink, image: FirmwareImage, payload: bytes | None, force: bool
    ) -> tuple[bool, int, float, float]:
        """Check, erase, write, verify, reboot; `payload` defaults to `app_payload(image)`."""
        image = in_app_area(image)
        url = link.url
        link.sync()
        facts = link.device()
        try:
            self._check_fits(url, image, facts)
        except FlashError:
            self._reboot(link)  # the old firmware keeps running
            raise
        if payload is None:
            payload = app_payload(image)  # bounded: the image fits FLASH_SIZE
        image_crc = bl.flash_crc(payload, facts.flash_size)
        if not force and link.word("GET_CRC", bl.encode_get_crc()) == image_crc:
            self._reboot(link)
            return True, 0, 0.0, 0.0
        started = time.monotonic()
        total = len(payload) + (-len(payload) % 4)
        self.erase_started = True
        try:
            self.progress(0, 1, "erase")
            link.ok("CHIP_ERASE", bl.encode_chip_erase(), timeout=self.erase_timeout)
            self.progress(1, 1, "erase")
            write_started = time.monotonic()
            self.progress(0, total, "write")
            self._write(link, payload, total)
            write_seconds = time.monotonic() - write_started
            self.progress(0, 1, "verify")
            board_crc = link.word("GET_CRC", bl.encode_get_crc())
            if board_crc != image_crc:
                raise FlashError(
                    f"bootloader on {url}: CRC after programming is 0x{board_crc:08X}, expected "
                    f"0x{image_crc:08X}"
                )
            self.progress(1, 1, "verify")
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, the board waits in its bootloader
            raise FlashInterrupted(self.usb_serial, self.method, _reason(exc)) from exc
        seconds = time.monotonic() - started
        self._reboot(link)
        return False, total, seconds, write_seconds

    def _write(self, link: BootloaderLink, payload: bytes, total: int) -> None:
        """PROG_MULTI the payload, one request in flight at a time (a real bootloader's
        receive buffer holds one).

        While the bootloader works on one request, the host builds the next, and it
        reports progress for the acknowledged bytes only after sending the next request:
        the host's own work overlaps the board's instead of adding to each round trip.
        """
        requests = bl.prog_multi_requests(payload)
        request = next(requests, None)
        if request is None:
            return
        link.send(request)
        upcoming = next(requests, None)
        done = 0
        while True:
            what = lambda at=done: f"PROG_MULTI at +0x{at:X}"  # noqa: E731 - built on error only
            link.require_ok(what, link.receive(what))
            done += len(request) - 3
            request = upcoming
            if request is not None:
                link.send(request)
            self.progress(done, total, "write")
            if request is None:
                return
            upcoming = next(requests, None)

    def _check_fits(self, url: str, image: FirmwareImage, facts: DeviceFacts) -> None:
        """The bootloader's own facts against the image: revision, board id, FLASH_SIZE."""
        if not bl.BL_REV_MIN <= facts.bl_rev <= bl.BL_REV_MAX:
            raise FlashError(
                f"bootloader on {url} reports revision {facts.bl_rev}; this uploader speaks "
                f"{bl.BL_REV_MIN}..{bl.BL_REV_MAX}"
            )
        target = _target(
            f"board {self.usb_serial} (bootloader on {url})", facts.board_id, facts.flash_size
        )
        checked = preflight.check_image(image, target)
        if checked.board_id is None and image.board_id is None:
            raise preflight.refuse(
                image,
                f"the image names no board id, so it cannot be checked against board "
                f"{facts.board_id} on {url}; use an .apj or a HIL application image",
            )

    @staticmethod
    def _reboot(link: BootloaderLink) -> None:
        link.ok("REBOOT", bl.encode_reboot())


def _target(where: str, board_id: int | None, app_size: int) -> FlashTarget:
    """The serial bootloader's view: the bootloader below APP_BASE, the application above."""
    return FlashTarget(
        where=where,
        app_start=APP_BASE,
        areas=(
            FlashArea(DEFAULT_FLASH_BASE, APP_BASE, writable=False, what="the bootloader sector"),
            FlashArea(APP_BASE, APP_BASE + app_size),
        ),
        board_id=board_id,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).rstrip(". ")
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, HilError) else text


def measure_pty_round_trip(size: int = 255, rounds: int = 200) -> float:
    """Bytes per second a raw pty carries for `size`-byte request/2-byte reply round trips.

    A pty has no baud rate; this is the ceiling a PROG_MULTI loop could reach on it.
    """
    import pty as _pty
    import select

    master, slave = _pty.openpty()
    try:
        import tty

        tty.setraw(slave)
        payload = b"\x00" * size
        started = time.perf_counter()
        for _ in range(rounds):
            os.write(slave, payload)
            got = 0
            while got < size:
                select.select([master], [], [], 1.0)
                got += len(os.read(master, 4096))
            os.write(master, b"\x12\x10")
            got = 0
            while got < 2:
                select.select([slave], [], [], 1.0)
                got += len(os.read(slave, 16))
        elapsed = time.perf_counter() - started
    except OSError as exc:
        raise LinkError(f"pty round trip measurement failed: {exc}") from None
    finally:
        os.close(master)
        os.close(slave)
    return size * rounds / elapsed if elapsed > 0 else 0.0
