"""Flash a board through its PX4/ArduPilot serial bootloader (PROTOCOLS.md section 1).

The steps, each bounded in time and named in any error: check the image alone and
against what the registry says of the board (`hil.flash.preflight`); find the board by
USB serial (a USB-UART adapter is refused); if it runs its application, check over
MAVLink that it is disarmed and ask it into its bootloader, trying uploader.py's
variants in turn (`REBOOT_VARIANTS`); find the bootloader's port again (`find_port_again`:
by serial, or by USB location where the serial says nothing); GET_SYNC; GET_DEVICE
(BL_REV, BOARD_ID, FLASH_SIZE, and EXTF_SIZE for an image with external flash) and check
the image against them BEFORE erasing; skip when GET_CRC (and EXTF_GET_CRC) already
match; CHIP_ERASE; PROG_MULTI in 252-byte chunks; GET_CRC verify; the external flash
(EXTF_ERASE, EXTF_PROG_MULTI, EXTF_GET_CRC verify); REBOOT; find the application's port
again and confirm the new version from AUTOPILOT_VERSION. A refused image leaves the old
firmware booting; a failure after CHIP_ERASE is a `FlashInterrupted` and leaves the
board in its bootloader (the first word is held back until REBOOT).

Where one VID:PID serves both the application and the bootloader and the product string
does not say which (ArduPilot's 1209:5741), a GET_SYNC probe bounded by `probe_timeout`
tells them apart.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hil.errors import CommandRefused, HilError, LinkError, PortNotFound
from hil.firmware import bootloader_codec as bl
from hil.firmware.app_image import flight_sw_version
from hil.firmware.image import DEFAULT_FLASH_BASE, FirmwareImage
from hil.flash import preflight
from hil.flash.base import Flasher, FlashError, FlashInterrupted, FlashResult, Progress
from hil.flash.preflight import FlashArea, FlashTarget
from hil.links import registry
from hil.links.ports import PortInfo, find_port, find_port_again
from hil.links.serial_link import SerialLink
from hil.timeout import Deadline
from hil.usb import discovery

APP_BASE = 0x08004000
"""Where the virtual board's (and most F4 ArduPilot boards') application starts."""

SHARED_APP_BOOTLOADER_IDS = frozenset({(0x1209, 0x5741)})
"""VID:PIDs an application and its bootloader both use (ArduPilot ChibiOS single CDC,
PROTOCOLS.md section 13): only the product string or a GET_SYNC probe tells them apart."""

EXTF_CRC_TIMEOUT = 10.0
"""uploader.py gives EXTF_GET_CRC 10 s ("crc can be slow")."""

NSH_INIT = b"\r\r\r"
NSH_REBOOT_BL = b"reboot -b\n"
NSH_REBOOT = b"reboot\n"
"""What uploader.py types into a PX4 NSH console after its MAVLink reboot messages."""

REBOOT_VARIANTS = (
    "COMMAND_LONG MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN param1=3 to the board's system id",
    "the same COMMAND_LONG to system 0 (broadcast)",
    "NSH `reboot -b`",
    "NSH `reboot` (the bootloader's boot delay catches it)",
)
"""uploader.py `send_reboot`'s order: MAVLink to system 1, then to system 0, then the NSH
`reboot -b` and `reboot` lines. Only the first is acknowledged; after each the flasher
waits a bounded time for the bootloader's port before trying the next."""


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
    extf_size: int | None = None  # None: not asked, or the bootloader has no EXTF (INVALID)


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

    def device(self, *, extf: bool = False) -> DeviceFacts:
        """GET_DEVICE; with `extf`, EXTF_SIZE too (None when the bootloader says INVALID)."""
        info = bl.DeviceInfo
        # uploader.py's identify() order: BL_REV, EXTF_SIZE, BOARD_ID, BOARD_REV, FLASH_SIZE.
        bl_rev = self.word("GET_DEVICE BL_REV", bl.encode_get_device(info.BL_REV))
        extf_size = None
        if extf:
            what = "GET_DEVICE EXTF_SIZE"
            reply = self.request(what, bl.encode_get_device(info.EXTF_SIZE), 4)
            if reply.status is not bl.Status.INVALID:
                extf_size = int.from_bytes(self.require_ok(what, reply), "little")
        return DeviceFacts(
            bl_rev=bl_rev,
            board_id=self.word("GET_DEVICE BOARD_ID", bl.encode_get_device(info.BOARD_ID)),
            board_rev=self.word("GET_DEVICE BOARD_REV", bl.encode_get_device(info.BOARD_REV)),
            flash_size=self.word("GET_DEVICE FLASH_SIZE", bl.encode_get_device(info.FLASH_SIZE)),
            extf_size=extf_size,
        )

    def extf_erase(self, size: int, timeout: float, progress: Progress) -> None:
        """EXTF_ERASE: INSYNC OK at once, percent bytes, then INSYNC OK, within `timeout`."""
        what = f"EXTF_ERASE of {size} bytes"
        self.ok(what, bl.encode_extf_erase(size))
        deadline = Deadline(timeout)
        percent = 0
        while True:
            try:
                state = bl.parse_extf_erase(self._rx, percent)
            except bl.BootloaderCodecError as exc:
                self._rx.clear()
                raise FlashError(f"bootloader on {self.url}: {what}: {exc}") from None
            del self._rx[: state.consumed]
            if state.percent != percent:
                percent = state.percent
                progress(percent, 100, "erase")
            if state.done is not None:
                if state.done is not bl.Status.OK:
                    raise FlashError(
                        f"bootloader on {self.url}: {what} refused ({state.done.name}) after "
                        f"{percent} %"
                    )
                return
            if deadline.expired:
                raise FlashError(
                    f"bootloader on {self.url}: {what}: not done within {timeout:.1f} s "
                    f"(at {percent} %)"
                )
            chunk = self.link.read(max(0.0, deadline.remaining))
            if chunk is not None:
                self._rx += chunk.data


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
        reboot_wait: float = 3.0,
        probe_timeout: float = 0.5,
    ) -> None:
        super().__init__(usb_serial, registry_dir=registry_dir, progress=progress)
        self.port_timeout = port_timeout
        self.reply_timeout = reply_timeout
        self.erase_timeout = erase_timeout
        self.mavlink_timeout = mavlink_timeout
        self.reboot_wait = reboot_wait
        """Seconds to wait for the bootloader after each unacknowledged reboot variant."""
        self.probe_timeout = probe_timeout
        self.reboot_attempts: list[str] = []
        """Each reboot variant tried on the last flash, and what came of it."""

    # -- the whole job ----------------------------------------------------------------
    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        image = in_app_area(image)
        # Everything the image and the registry can tell is checked before the board is
        # rebooted; what only the bootloader knows (board id, FLASH_SIZE) before CHIP_ERASE.
        checked = preflight.check_image(image, self._target_before_reboot())
        expected = self._expected_version(image, checked)
        port = self._find(None, "its port")
        state = self._state(port)
        old_version = None
        if state in (discovery.APP, discovery.UNKNOWN):  # an unknown VID:PID counts as an app
            old_version, loader_port = self._enter_bootloader(port)
        elif state == "bootloader":
            loader_port = port
        elif state == discovery.USB_UART:
            raise FlashError(
                f"USB serial {self.usb_serial} on {port.device} is a USB-UART adapter "
                f"({port.description or port.usb}), not a flight controller's USB port: check "
                "the board's usb_serial in the rig file"
            )
        else:
            raise FlashError(
                f"board {self.usb_serial} is in state {port.state!r} on {port.device}: the serial "
                "bootloader path needs it in its application or bootloader"
            )
        with BootloaderLink(loader_port.device, reply_timeout=self.reply_timeout) as link:
            outcome = self._program(link, image, None, force)
        new_version = self._confirm(expected, loader_port)
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

    def _ambiguous(self, port: PortInfo) -> bool:
        """A real port whose VID:PID both the application and the bootloader use, and whose
        product string did not say which (it would have classified as bootloader)."""
        return (
            port.source == "usb"
            and (port.vid, port.pid) in SHARED_APP_BOOTLOADER_IDS
            and port.state in (discovery.APP, discovery.UNKNOWN)
        )

    def _state(self, port: PortInfo) -> str:
        """The port's state, a GET_SYNC probe settling an ambiguous one."""
        if not self._ambiguous(port):
            return port.state
        return "bootloader" if self._answers_get_sync(port.device) else "app"

    def _answers_get_sync(self, url: str) -> bool:
        """True when a bootloader answers GET_SYNC on `url` within `probe_timeout`
        (uploader.py tells its bootloader from the application the same way)."""
        try:
            with BootloaderLink(url, reply_timeout=self.probe_timeout) as link:
                link.drain(0.02)
                return link.request("GET_SYNC probe", bl.encode_get_sync()).ok
        except (HilError, OSError):
            return False

    def _find_again(
        self, previous: PortInfo, state: str, what: str, timeout: float | None = None
    ) -> PortInfo:
        """The board's port in `state` after a reboot: by serial where it identifies the
        board, else by USB location; an ambiguous port is probed until `timeout`."""
        limit = self.port_timeout if timeout is None else timeout
        deadline = Deadline(limit)
        while True:
            try:
                port = find_port_again(
                    previous,
                    self.registry_dir,
                    timeout=max(0.0, deadline.remaining),
                    state=None if previous.usb is not None else state,
                )
            except PortNotFound as exc:
                raise FlashError(
                    f"board {self.usb_serial}: waited {limit:.1f} s for {what}: {exc}"
                ) from None
            if self._state(port) == state or (
                state == discovery.APP and port.state == discovery.UNKNOWN
            ):
                return port
            if deadline.expired:
                raise FlashError(
                    f"board {self.usb_serial}: waited {limit:.1f} s for {what}: its port "
                    f"{port.device} stayed in state {self._state(port)!r}"
                )
            time.sleep(0.05)

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

    def _enter_bootloader(self, port: PortInfo) -> tuple[str | None, PortInfo]:
        """Check the application is disarmed, then ask it into its bootloader with each of
        `REBOOT_VARIANTS` in turn until the bootloader's port appears; each attempt is
        bounded and named in the final error."""
        url = port.device
        try:
            autopilot = self._mavlink(url)
        except HilError as exc:
            raise FlashError(
                f"board {self.usb_serial}: its application on {url} did not answer MAVLink "
                f"within {self.mavlink_timeout:.1f} s ({exc}); power-cycle it into its bootloader"
            ) from None
        self.reboot_attempts = []
        try:
            version = self._version_text(autopilot)
            if autopilot.armed:
                raise FlashError(
                    f"board {self.usb_serial} on {url} is armed: disarm it before flashing"
                )
            for name, send in zip(REBOOT_VARIANTS, self._reboot_senders(autopilot), strict=True):
                try:
                    wait = send()
                except CommandRefused as exc:
                    raise FlashError(
                        f"board {self.usb_serial} on {url} refused to reboot into its "
                        f"bootloader: {exc}"
                    ) from None
                except HilError as exc:
                    self.reboot_attempts.append(f"{name}: {exc}")
                    continue
                try:
                    loader = self._find_again(port, "bootloader", "its bootloader port", wait)
                except FlashError:
                    self.reboot_attempts.append(f"{name}: no bootloader port within {wait:.1f} s")
                    continue
                self.reboot_attempts.append(f"{name}: bootloader on {loader.device}")
                return version, loader
        finally:
            self._close(autopilot)
        tried = "; ".join(f"{n}) {a}" for n, a in enumerate(self.reboot_attempts, 1))
        raise FlashError(
            f"board {self.usb_serial} on {url} did not reboot into its bootloader: {tried}; "
            "power-cycle it into its bootloader"
        )

    def _reboot_senders(self, autopilot) -> list[Callable[[], float]]:
        """One sender per `REBOOT_VARIANTS` entry; each returns how long to wait for the
        bootloader's port afterwards."""
        from hil.mavlink.dialect import mavlink

        reboot = mavlink.MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN
        ack_timeout = min(self.mavlink_timeout, 2.0)

        def to_board() -> float:
            autopilot.command(reboot, 3, timeout=ack_timeout, retries=0)
            return self.port_timeout

        def broadcast() -> float:
            autopilot.conn.send(
                mavlink.MAVLink_command_long_message(0, 0, reboot, 0, 3, 0, 0, 0, 0, 0, 0)
            )
            return self.reboot_wait

        def nsh(line: bytes) -> Callable[[], float]:
            def send() -> float:
                autopilot.conn.send_bytes(NSH_INIT + line)
                return self.reboot_wait

            return send

        return [to_board, broadcast, nsh(NSH_REBOOT_BL), nsh(NSH_REBOOT)]

    @staticmethod
    def _version_text(autopilot) -> str | None:
        ident = autopilot.identity
        return ident.firmware_version if ident is not None else None

    def _confirm(self, expected: tuple[str | None, int | None], loader: PortInfo) -> str | None:
        """Find the application again and check AUTOPILOT_VERSION says the new version."""
        port = self._find_again(loader, "app", "its application port after REBOOT")
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
        extf = image.extf_image
        link.sync()
        facts = link.device(extf=extf is not None)
        try:
            self._check_fits(url, image, facts)
            if extf is not None:
                self._check_extf(url, image, extf, facts)
        except FlashError:
            self._reboot(link)  # the old firmware keeps running
            raise
        if payload is None:
            payload = app_payload(image)  # bounded: the image fits FLASH_SIZE
        image_crc = bl.flash_crc(payload, facts.flash_size)
        extf_crc = bl.extf_crc(extf, len(extf)) if extf is not None else None
        if (
            not force
            and link.word("GET_CRC", bl.encode_get_crc()) == image_crc
            and (extf is None or self._extf_crc_on_board(link, len(extf)) == extf_crc)
        ):
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
            self._write(link, bl.prog_multi_requests(payload), total)
            write_seconds = time.monotonic() - write_started
            self.progress(0, 1, "verify")
            board_crc = link.word("GET_CRC", bl.encode_get_crc())
            if board_crc != image_crc:
                raise FlashError(
                    f"bootloader on {url}: CRC after programming is 0x{board_crc:08X}, expected "
                    f"0x{image_crc:08X}"
                )
            self.progress(1, 1, "verify")
            if extf is not None and extf_crc is not None:
                extf_total, extf_seconds = self._program_extf(link, extf, extf_crc)
                total += extf_total
                write_seconds += extf_seconds
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, the board waits in its bootloader
            raise FlashInterrupted(self.usb_serial, self.method, _reason(exc)) from exc
        seconds = time.monotonic() - started
        self._reboot(link)
        return False, total, seconds, write_seconds

    def _check_extf(self, url: str, image: FirmwareImage, extf: bytes, facts: DeviceFacts) -> None:
        """An image for external flash needs a bootloader with EXTF and room for it."""
        if facts.extf_size is None:
            raise preflight.refuse(
                image,
                f"it carries {len(extf)} bytes for external flash, but the bootloader on {url} "
                "has no external flash support (GET_DEVICE EXTF_SIZE answered INVALID); update "
                "the bootloader or use a build without extf_image",
            )
        if len(extf) > facts.extf_size:
            raise preflight.refuse(
                image,
                f"its {len(extf)} bytes for external flash do not fit the {facts.extf_size} "
                f"bytes the bootloader on {url} offers",
            )

    def _extf_crc_on_board(self, link: BootloaderLink, size: int) -> int:
        what = f"EXTF_GET_CRC of {size} bytes"
        data = link.ok(what, bl.encode_extf_get_crc(size), 4, timeout=EXTF_CRC_TIMEOUT)
        return int.from_bytes(data, "little")

    def _program_extf(self, link: BootloaderLink, extf: bytes, expected: int) -> tuple[int, float]:
        """EXTF_ERASE, EXTF_PROG_MULTI, EXTF_GET_CRC as uploader.py; (bytes, write seconds)."""
        size = len(extf)
        link.extf_erase(size, self.erase_timeout, self.progress)
        total = size + (-size % 4)
        started = time.monotonic()
        self.progress(0, total, "write")
        self._write(link, bl.extf_prog_multi_requests(extf), total, "EXTF_PROG_MULTI")
        seconds = time.monotonic() - started
        self.progress(0, 1, "verify")
        board = self._extf_crc_on_board(link, size)
        if board != expected:
            raise FlashError(
                f"bootloader on {link.url}: external flash CRC after programming is "
                f"0x{board:08X}, expected 0x{expected:08X}"
            )
        self.progress(1, 1, "verify")
        return total, seconds

    def _write(
        self,
        link: BootloaderLink,
        requests: Iterator[bytes],
        total: int,
        label: str = "PROG_MULTI",
    ) -> None:
        """Send PROG_MULTI (or EXTF_PROG_MULTI) `requests`, one in flight at a time (a real
        bootloader's receive buffer holds one).

        While the bootloader works on one request, the host builds the next, and it
        reports progress for the acknowledged bytes only after sending the next request:
        the host's own work overlaps the board's instead of adding to each round trip.
        """
        request = next(requests, None)
        if request is None:
            return
        link.send(request)
        upcoming = next(requests, None)
        done = 0
        while True:
            what = lambda at=done: f"{label} at +0x{at:X}"  # noqa: E731 - built on error only
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
