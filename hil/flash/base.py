"""What every flasher promises, whatever path it takes to the board.

A flasher finds the board by USB serial number, brings it into its bootloader, checks the
image fits the board (board id, size) before erasing anything, erases, writes with
progress, verifies, reboots, and confirms the new version. A board that already holds
the image is left alone unless forced.
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

    @abstractmethod
    def flash(self, image: FirmwareImage, *, force: bool = False) -> FlashResult:
        """Flash `image`; raise FlashError (the board keeps a bootable state) on failure."""
