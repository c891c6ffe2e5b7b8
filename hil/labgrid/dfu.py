"""Flashing a board behind a labgrid place through labgrid's DFU driver.

The board's STM32 ROM bootloader is a USB DFU device on the exporter host; the exporter
configuration names it as a `DFUDevice` (matched by udev, e.g. the ROM's serial number),
and the place shows it as a `NetworkDFUDevice` that is available only while the device is
plugged in, i.e. while the board sits in its bootloader. The steps:

1. The place must have such a resource: else one line naming what the place has. Then
   `check` (a Betaflight board: the image must name the MCU target the board reports
   over MSP, hil.flash.msp_dfu.check_against_board) refuses a wrong image.
2. Into the bootloader: `enter` (a Betaflight board: MSP_REBOOT into ROM DFU over its
   control port), then wait, bounded, for the coordinator to show the device available. A
   MAVLink board has no way into the ROM bootloader over its link: it must already be
   there (BOOT0 held at power-up, or a blank chip); else one line saying so.
3. The image becomes a DfuSe `.dfu` file (`hil.firmware.image.write_dfu`, ST's vendor and
   product ids, the rig's alt setting): labgrid's DFUDriver runs `dfu-util -p PATH --alt N
   --download FILE` and cannot pass `-s ADDRESS`, which a raw binary on a DfuSe device
   needs; a .dfu file carries its addresses.
4. The place agent runs labgrid's `DFUDriver.download`: labgrid copies the file to the
   exporter host and runs dfu-util there, both over SSH (labgrid's NetworkResource
   command prefix; there is no local shortcut even when the exporter is this host). The
   user of the harness needs SSH access to the exporter host without a password.
5. Out of the bootloader: labgrid's driver cannot ask dfu-util to leave DFU mode (that is
   `-s :leave`), so a board whose place can switch its power (`power = true`) is
   power-cycled; otherwise `DFUDriver.detach` is tried. Then the control port must be
   there again, and `confirm` (if given) asks the firmware what it runs.

dfu-util writes without reading back; `verified_by` says so.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.errors import ConfigError
from hil.firmware.dfuse_codec import STM32_ROM_PID, STM32_ROM_VID
from hil.firmware.image import FirmwareImage, ImageError, write_dfu
from hil.flash import preflight
from hil.flash.base import Flasher, FlashError, FlashInterrupted, FlashResult
from hil.labgrid.place import PlaceError

DFU_RESOURCE = "NetworkDFUDevice"
#: How dfu-util's write is described in the result: it reads nothing back.
VERIFIED_BY = "dfu-util status (no read-back)"


def dfu_file(image: FirmwareImage, directory: Path, alt: int = 0) -> Path:
    """`image` as a DfuSe file in `directory` (one element per segment, at its address)."""
    path = directory / f"{Path(image.path).stem or 'firmware'}.dfu"
    try:
        write_dfu(image, path, vid=STM32_ROM_VID, pid=STM32_ROM_PID, alt=alt)
    except ImageError as exc:
        raise ConfigError(str(exc)) from None
    return path


class PlaceDfuFlasher(Flasher):
    """Flash the board of a labgrid place (`hil.labgrid.board.LabgridBoard`) over DFU."""

    method = "dfu"

    def __init__(
        self,
        board: Any,
        *,
        progress=None,
        check: Callable[[FirmwareImage], None] | None = None,
        enter: Callable[[], None] | None = None,
        confirm: Callable[[float], str | None] | None = None,
        alt: int = 0,
        resource: str | None = None,
        find_timeout: float = 15.0,
        write_timeout: float = 600.0,
        boot_timeout: float = 30.0,
    ) -> None:
        super().__init__(board.name, progress=progress)
        self.board = board
        self.check = check
        self.enter = enter
        self.confirm = confirm
        self.alt = alt
        self.resource = resource
        self.find_timeout = find_timeout
        self.write_timeout = write_timeout
        self.boot_timeout = boot_timeout

    @property
    def agent(self):
        return self.board.agent

    def dfu_resource(self) -> str:
        """The name of the place's DFU device; ConfigError in one line when it has none."""
        agent = self.agent
        found = agent.resources_of(DFU_RESOURCE)
        if self.resource is not None:
            if not any(r.name == self.resource for r in found):
                raise ConfigError(
                    f"board {self.board.name}: place {agent.acquired} has no DFU device named {self.resource!r} "
                    f"(rig key dfu); it has: {agent.describe_resources()}"
                )
            return self.resource
        if len(found) == 1:
            return found[0].name
        if not found:
            raise ConfigError(
                f"board {self.board.name}: place {agent.acquired} has no DFU device to flash through (a DFUDevice "
                f"in its exporter's configuration, matched to the board's ROM bootloader); it has: "
                f"{agent.describe_resources()}"
            )
        names = ", ".join(r.name for r in found)
        raise ConfigError(f"board {self.board.name}: place {agent.acquired} has several DFU devices ({names}); name one with dfu = \"NAME\"")

    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        preflight.check_payload(image, image.base_address, expect_header=False)
        name = self.dfu_resource()
        if self.check is not None:
            self.check(image)  # the firmware's own word on what the board is, before anything
        if self.enter is not None and not self._available(name, 0.0):
            self.enter()
        if not self._available(name, self.find_timeout):
            how = (
                "it did not appear after the board was told to reboot into it"
                if self.enter is not None
                else "a MAVLink board cannot be sent there over its link: hold BOOT0 and power-cycle it"
                + (" (power = true can cycle it)" if self.board.power_switch else "")
            )
            raise FlashError(
                f"board {self.board.name}: place {self.agent.acquired}'s DFU device {name} is not present "
                f"(the exporter sees no USB device matching it, waited {self.find_timeout:.0f} s): the board is "
                f"not in its ROM bootloader; {how}"
            )
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="hil-place-dfu-") as scratch:
            path = dfu_file(image, Path(scratch), self.alt)
            self.progress(0, image.size, "write")
            self.erase_started = True  # dfu-util erases each sector as it writes
            try:
                self.agent.dfu_download(self.alt, path, timeout=self.write_timeout)
            except PlaceError as exc:
                raise FlashInterrupted(self.board.name, self.method, str(exc)) from None
            self.progress(image.size, image.size, "write")
        written = time.monotonic() - started
        self._leave(name)
        version = self.confirm(self.boot_timeout) if self.confirm is not None else None
        return FlashResult(
            self.board.name, self.method, image.sha256, False, image.size, written, written, None,
            VERIFIED_BY, None, version,
        )  # fmt: skip

    def _available(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            resource = self.agent.refresh(10.0).get(name)
            if resource is not None and resource.avail:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def _leave(self, name: str) -> None:
        """Out of the ROM bootloader: a power cycle where the place can switch power (the
        board boots its flash with BOOT0 released), else labgrid's detach."""
        if self.board.power_switch:
            self.agent.power("cycle")
        else:
            try:
                self.agent.dfu_detach(self.alt)
            except PlaceError as exc:
                raise FlashError(
                    f"board {self.board.name}: the image was written, but the board did not leave its ROM "
                    f"bootloader ({exc}); power-cycle it (power = true lets the harness do it)"
                ) from None
        deadline = time.monotonic() + self.boot_timeout
        while True:
            resources = self.agent.refresh(10.0)
            gone = not (resources.get(name) and resources[name].avail)
            if gone:
                return
            if time.monotonic() >= deadline:
                raise FlashError(
                    f"board {self.board.name}: still in its ROM bootloader {self.boot_timeout:.0f} s after the image "
                    "was written (its DFU device is still there); power-cycle it with BOOT0 released"
                )
            time.sleep(0.5)


__all__ = ["PlaceDfuFlasher", "dfu_file"]
