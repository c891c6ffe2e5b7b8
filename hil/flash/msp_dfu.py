"""Flash a Betaflight (or INAV) board the whole way: MSP into the ROM DFU device, DfuSe,
and back to its VCP to confirm the new firmware over MSP.

1. Over MSP on the board's VCP: API version, variant, FC_VERSION, BOARD_INFO (MCU
   target name, board name), BUILD_INFO (build date and time) and UID (the chip's
   96-bit unique id).
2. Before anything happens to the board, the image is checked: its own checksums at load,
   a Cortex-M vector table at its start (`hil.flash.preflight`), Betaflight's or INAV's
   names in it, and the board's MCU target name (and board name, where the board has
   one) as whole strings in it (`hil.firmware.betaflight_info`). A refusal is one line.
   A board that already runs this build (same version, build date and time) is left
   alone unless forced.
3. The profile's ways into the ROM DFU bootloader (`FirmwareProfile.rom_dfu`): for
   Betaflight MSP_REBOOT with mode 1, MSP_REBOOT_BOOTLOADER_ROM (src/main/msp/msp.c; the
   configurator's firmware flasher sends the same, `webstm32.js`), or, when the board
   refuses it, the CLI's `bl rom` (src/main/cli/cli.c `cliBootloader`); for INAV, whose
   MSP_REBOOT has no bootloader mode, the CLI's `dfu` (src/main/fc/cli.c).
4. The DFU device is found by the chip's serial: ST's ROM names itself from the unique id
   (`hil.usb.stm32_uid`), which MSP_UID gave; the rig's `dfu_serial` overrides it for a
   part whose ROM counts otherwise. The DfuSe flash (erase, write, read-back verify,
   leave) is `hil.flash.dfu_flasher.DfuFlasher`, which checks the image against the
   device's memory layout again before its first erase.
5. After leave the VCP is looked for again (`locate`), and MSP must report the image's
   version and build stamp, and the same target: otherwise the board did not boot it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hil.codecs import msp
from hil.codecs.msp import BoardDetails, BoardInfo, BuildInfo, MspCommand, MspError, Uid
from hil.errors import BoardNotAnswering, CommandRefused, HilError, LinkError, PortNotFound
from hil.firmware.betaflight_info import FirmwareStrings, read_strings
from hil.firmware.image import FirmwareImage
from hil.flash import preflight
from hil.flash.base import Flasher, FlashError, FlashResult, Progress
from hil.flash.dfu_flasher import DfuFlasher
from hil.usb.stm32_uid import stm32_usb_serial

log = logging.getLogger(__name__)

_FAMILY_NAMES = {"betaflight": "Betaflight", "inav": "INAV"}


@dataclass(frozen=True)
class MspBoardFacts:
    """What the board said about itself over MSP."""

    variant: str
    version: str
    target: str
    board_name: str
    manufacturer_id: str
    build_date: str
    build_time: str
    uid: tuple[int, int, int] | None

    def describe(self) -> str:
        board = f", board {self.board_name}" if self.board_name else ""
        return f"target {self.target}{board}"


def read_facts(ap: Any) -> MspBoardFacts:
    """Identity, build stamp and unique id in one pipelined MSP round trip."""
    variant_p, version_p, board_p, build_p = ap.request_many(
        [MspCommand.FC_VARIANT, MspCommand.FC_VERSION, MspCommand.BOARD_INFO, MspCommand.BUILD_INFO]
    )
    try:
        uid: tuple[int, int, int] | None = Uid.decode(ap.request(MspCommand.UID)).words
    except CommandRefused:
        uid = None
    version = msp.FcVersion.decode(version_p)
    board = BoardInfo.decode(board_p)
    details = BoardDetails.decode(board.rest) if board.rest else BoardDetails("", "")
    build = BuildInfo.decode(build_p)
    return MspBoardFacts(
        variant=msp.FcVariant.decode(variant_p).identifier,
        version=f"{version.major}.{version.minor}.{version.patch}",
        target=board.target_name or "",
        board_name=details.board_name,
        manufacturer_id=details.manufacturer_id,
        build_date=build.date,
        build_time=build.time,
        uid=uid,
    )


def check_against_board(
    image: FirmwareImage,
    found: FirmwareStrings,
    board: MspBoardFacts,
    where: str,
    *,
    require_board_name: bool = True,
) -> None:
    """Refuse (ImageRefused, one line) an image that is not this board's firmware."""
    preflight.check_payload(image, image.base_address, expect_header=False)
    if found.family is None:
        raise preflight.refuse(
            image,
            "not a Betaflight or INAV image (it holds neither firmware's name and identifier, "
            "'Betaflight'/'BTFL' or 'INAV')",
        )
    what = f"the image ({found.describe()})"
    if not board.target:
        raise preflight.refuse(
            image, f"{where} did not say its target over MSP_BOARD_INFO; cannot check {what}"
        )
    if not found.names(board.target):
        raise preflight.refuse(image, f"{what} is not for {where}, which is {board.describe()}")
    if require_board_name and board.board_name and not found.names(board.board_name):
        raise preflight.refuse(
            image,
            f"{what} does not name board {board.board_name} that {where} is ({board.describe()}): "
            "it was built for another board of the same MCU, or for none (its pin map would not fit)",
        )


class MspDfuFlasher(Flasher):
    """Flash a board that talks MSP on its VCP and has the STM32 ROM DFU bootloader.

    `locate(timeout)` returns the VCP's pyserial URL now (waiting up to `timeout`, else
    PortNotFound); it is called before the flash and again after DFU leave. `memory` is a
    file where what the board said over MSP is kept, so a board a cut-off flash left in
    DFU (no VCP) is flashed again, checked against it. `open_msp(url)` opens an MSP
    adapter (`hil.autopilot.msp.MspAutopilot` by default). `registry_dir` and `backend`
    reach the virtual rig's DFU devices; real boards use libusb.
    """

    method = "dfu"

    def __init__(
        self,
        usb_serial: str,
        locate: Callable[[float], str],
        *,
        open_msp: Callable[[str, float], Any] | None = None,
        registry_dir: Path | str | None = None,
        progress: Progress | None = None,
        backend: Any = None,
        dfu_serial: str | None = None,
        require_board_name: bool = True,
        find_timeout: float = 10.0,
        boot_timeout: float = 15.0,
        msp_timeout: float = 5.0,
        memory: Path | None = None,
    ) -> None:
        super().__init__(usb_serial, registry_dir=registry_dir, progress=progress)
        self.locate = locate
        self.open_msp = open_msp or _open_msp
        self.backend = backend
        self.dfu_serial = dfu_serial
        self.require_board_name = require_board_name
        self.find_timeout = find_timeout
        self.boot_timeout = boot_timeout
        self.msp_timeout = msp_timeout
        self.memory = Path(memory) if memory is not None else None
        self.before: MspBoardFacts | None = None
        self.after: MspBoardFacts | None = None
        self._dfu: DfuFlasher | None = None

    @property
    def where(self) -> str:
        return f"board {self.usb_serial}"

    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        found = read_strings(image)
        preflight.check_payload(image, image.base_address, expect_header=False)  # before MSP
        try:
            url = self.locate(self.msp_timeout)
            ap = self.open_msp(url, self.msp_timeout)
        except (PortNotFound, BoardNotAnswering, LinkError) as exc:
            return self._flash_in_dfu(image, found, exc)
        try:
            board = self.before = self._facts(ap, url)
            self._remember(board)
            where = f"{self.where} on {url}"
            check_against_board(
                image, found, board, where, require_board_name=self.require_board_name
            )
            if not force and self._same_build(found, board):
                return FlashResult(
                    self.usb_serial, self.method, image.sha256, True, 0, 0.0, 0.0, None, "",
                    board.version, board.version,
                )  # fmt: skip
            result = self._write(image, board, lambda: self._reboot_to_dfu(ap, url))
        finally:
            with contextlib.suppress(Exception):
                ap.close()
        confirmed = self._confirm(image, found, board)
        return replace(
            result,
            usb_serial=self.usb_serial,
            old_version=board.version,
            new_version=confirmed.version,
        )

    def _flash_in_dfu(
        self, image: FirmwareImage, found: FirmwareStrings, missing: HilError
    ) -> FlashResult:
        """No VCP: a board left in DFU (a flash cut off after its erase) is flashed there,
        checked against what it last said over MSP (`memory`)."""
        board = self._recall()
        if board is None:
            raise FlashError(
                f"{self.where}: no MSP on its VCP before flashing ({missing}); a board left in DFU "
                "(a flash cut off) is flashed only once the harness has seen it over MSP"
            )
        where = f"{self.where} (no MSP on its VCP; as it said over MSP before)"
        check_against_board(image, found, board, where, require_board_name=self.require_board_name)
        log.info("%s: no VCP, looking for its DFU device", self.where)
        result = self._write(image, board, lambda: None)  # a device already there is taken at once
        confirmed = self._confirm(image, found, board)
        return replace(
            result, usb_serial=self.usb_serial, old_version=None, new_version=confirmed.version
        )

    def _write(
        self, image: FirmwareImage, board: MspBoardFacts, enter: Callable[[], None]
    ) -> FlashResult:
        self._dfu = DfuFlasher(
            self.dfu_serial or self._dfu_serial(board),
            registry_dir=self.registry_dir,
            progress=self.progress,
            backend=self.backend,
            enter_dfu=enter,
            app_header=False,
            find_timeout=self.find_timeout,
            wait_for_app=False,
        )
        try:
            return self._dfu.flash(image, force=True)
        finally:
            self.erase_started = self._dfu.erase_started

    def _remember(self, board: MspBoardFacts) -> None:
        if self.memory is None:
            return
        with contextlib.suppress(OSError):
            self.memory.parent.mkdir(parents=True, exist_ok=True)
            self.memory.write_text(json.dumps(asdict(board), indent=1) + "\n")

    def _recall(self) -> MspBoardFacts | None:
        if self.memory is None:
            return None
        try:
            data = json.loads(self.memory.read_text())
            uid = data.get("uid")
            data["uid"] = tuple(int(w) for w in uid) if uid is not None else None
            return MspBoardFacts(**data)
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    # -- steps -----------------------------------------------------------------------------
    def _locate(self, timeout: float, when: str) -> str:
        try:
            return self.locate(timeout)
        except PortNotFound as exc:
            raise FlashError(f"{self.where}: its VCP was not found {when} ({exc})") from None

    def _connect(self, url: str, timeout: float, when: str) -> Any:
        try:
            return self.open_msp(url, timeout)
        except (BoardNotAnswering, LinkError) as exc:
            raise FlashError(f"{self.where}: no MSP answer on {url} {when} ({exc})") from None

    def _facts(self, ap: Any, url: str) -> MspBoardFacts:
        try:
            return read_facts(ap)
        except (MspError, CommandRefused, BoardNotAnswering, ValueError) as exc:
            raise FlashError(
                f"{self.where}: could not read its identity over MSP on {url} ({exc})"
            ) from None

    def _dfu_serial(self, board: MspBoardFacts) -> str:
        if board.uid is None:
            raise FlashError(
                f"{self.where} did not answer MSP_UID, so its DFU device cannot be told apart; "
                "give the rig's dfu_serial (`dfu-util -l` lists it while the board is in DFU)"
            )
        return stm32_usb_serial(board.uid)

    @staticmethod
    def _same_build(found: FirmwareStrings, board: MspBoardFacts) -> bool:
        return (
            found.version == board.version
            and found.build_dates == (board.build_date,)
            and found.build_times == (board.build_time,)
        )

    def _reboot_to_dfu(self, ap: Any, url: str) -> None:
        reboot_to_rom_dfu(ap, self.where, url)

    def _confirm(
        self, image: FirmwareImage, found: FirmwareStrings, before: MspBoardFacts
    ) -> MspBoardFacts:
        url = self._locate(
            self.boot_timeout, "after DFU leave (the image was written and verified)"
        )
        ap = self._connect(
            url, self.boot_timeout, "after DFU leave (the image was written and verified)"
        )
        try:
            after = self.after = self._facts(ap, url)
        finally:
            with contextlib.suppress(Exception):
                ap.close()
        problems = []
        if found.version is not None and after.version != found.version:
            problems.append(f"version {after.version}, the image is {found.version}")
        if found.build_dates and after.build_date not in found.build_dates:
            problems.append(
                f"build date {after.build_date!r}, the image's is {'/'.join(found.build_dates)}"
            )
        if found.build_times and after.build_time not in found.build_times:
            problems.append(
                f"build time {after.build_time}, the image's is {'/'.join(found.build_times)}"
            )
        if after.target != before.target:
            problems.append(f"target {after.target}, it was {before.target}")
        if problems:
            raise FlashError(
                f"{self.where} came back on {url} reporting {', '.join(problems)}: it did not boot {image.path}"
            )
        return after


def reboot_to_rom_dfu(ap: Any, where: str, url: str) -> None:
    """The firmware profile's ways into the ROM DFU bootloader (`rom_dfu`), in order:
    Betaflight's MSP_REBOOT 1, then its CLI `bl rom`; INAV's CLI `dfu`. A way the
    board refuses is passed over; one it takes ends the link (the board is gone)."""
    ways = ap.profile.rom_dfu
    if not ways:
        raise FlashError(
            f"{where}: its firmware profile {ap.profile.name!r} names no way into DFU"
        )
    refused = []
    for way in ways:
        try:
            if way.kind == "msp":
                ap.request(int(way.code), way.payload)
            elif way.kind == "cli":
                # It reboots into DFU, not back onto MSP: wait for its link to drop only.
                ap.reboot_timeout = min(ap.reboot_timeout, 1.0)
                ap.cli(str(way.code), timeout=2.0, check=True)
            else:
                continue
            return
        except CommandRefused as exc:
            refused.append(f"{way.kind} {way.code!r}: {exc}")
            log.info("%s refused %s %r (%s)", where, way.kind, way.code, exc)
        except (HilError, OSError):
            return  # the board went while answering: that is the reboot
    raise FlashError(f"{where} on {url} refused every way into DFU: {'; '.join(refused)}")


def _open_msp(url: str, timeout: float) -> Any:
    from hil.autopilot.msp import MspAutopilot

    return MspAutopilot(url, connect_timeout=timeout)
