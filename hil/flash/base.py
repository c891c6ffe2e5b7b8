"""What every flasher promises, whatever path it takes to the board.

A flasher finds the board by USB serial number, brings it into its bootloader, checks the
image against the board before erasing anything (`hil.flash.preflight`), erases, writes
with progress, verifies, reboots, and confirms the new version. A board that already
holds the image is left alone unless forced. A failure after the erase began is a
`FlashInterrupted`: the board waits in its bootloader for the next flash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hil.errors import HilError
from hil.firmware.image import FirmwareImage

#: progress(done_bytes, total_bytes, phase): phase is "erase", "write" or "verify".
Progress = Callable[[int, int, str], None]


class FlashError(HilError):
    """Flashing failed; the message says at which step, on which port, and what to try."""


class FlashInterrupted(FlashError):
    """Flashing stopped after the erase began: the board holds no application now.

    The board stays in its bootloader (a cut-off image never boots) and the next flash
    finishes the job; `retry` is the command that does it, when the caller knows it.
    """

    def __init__(self, usb_serial: str, method: str, reason: str, retry: str | None = None) -> None:
        self.usb_serial = usb_serial
        self.method = method
        self.reason = reason
        self.retry = retry
        how = f"run `{retry}` again" if retry else "flash the image again"
        super().__init__(
            f"board {usb_serial}: flashing over {method} was cut off after the erase began "
            f"({reason}); the board is now in its bootloader without an application: {how} "
            "to finish"
        )

    def with_retry(self, retry: str) -> FlashInterrupted:
        """The same interruption, naming the command that finishes the flash."""
        return FlashInterrupted(self.usb_serial, self.method, self.reason, retry)


@dataclass(frozen=True)
class FlashResult:
    """What a flasher did, for `hil flash` and the report."""

    usb_serial: str
    method: str  # "serial" or "dfu"
    image_sha256: str
    skipped: bool  # the board already held this image
    bytes_written: int
    seconds: float  # erase + write + verify
    write_seconds: float  # the write phase alone
    link_limit_bps: float | None  # bytes per second the link could carry at best, when known
    verified_by: str  # "crc", "readback" or "" when skipped
    old_version: str | None
    new_version: str | None

    @property
    def throughput_bps(self) -> float:
        return self.bytes_written / self.write_seconds if self.write_seconds > 0 else 0.0


class Flasher(ABC):
    """One way of flashing one board."""

    method: str = ""

    def __init__(
        self,
        usb_serial: str,
        *,
        registry_dir: Path | str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.usb_serial = usb_serial
        self.registry_dir = registry_dir
        self.progress = progress or (lambda done, total, phase: None)
        self.erase_started = False
        """Set when the erase begins; until then a failure leaves the old firmware in place."""

    @abstractmethod
    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        """Flash `image`; raise FlashError (the board keeps a bootable state) on failure."""
