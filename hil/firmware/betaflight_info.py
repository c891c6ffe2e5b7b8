"""What a Betaflight (or INAV) image says about itself: firmware, version, target, build.

Betaflight writes no header into its image: the facts are string constants the firmware
itself serves over MSP and the CLI, so a build must contain them as NUL-terminated
strings (Betaflight 4.6 source):

- ``FC_FIRMWARE_NAME`` "Betaflight" and ``FC_FIRMWARE_IDENTIFIER`` "BTFL"
  (src/main/build/version.h; INAV: "INAV" for both), ``FC_VERSION_STRING`` "4.6.0";
- ``targetName`` = ``__TARGET__``, the MCU target the build was made for ("STM32F405",
  "STM32F7X2", "STM32H743", ...: src/platform/*/target/<name>), which MSP_BOARD_INFO
  returns as its target name (src/main/build/version.c, src/main/msp/msp.c);
- ``buildDate`` / ``buildTime`` = ``__DATE__`` ("Dec  4 2026") and ``__TIME__``
  ("23:56:40"), which MSP_BUILD_INFO returns;
- with a board config (``make CONFIG=<board>``), ``BOARD_NAME`` and ``MANUFACTURER_ID``
  (src/config/configs/<board>/config.h), the defaults of ``board_name`` /
  ``manufacturer_id`` that MSP_BOARD_INFO returns (src/main/pg/board.c).

So an image is for a board when the board's own target name (and, where the board names
itself, its board name) occurs in the image as a whole string; an image of another MCU
target does not hold this one's name. The same holds for the version and build stamp a
board reports after a flash. Strings are looked for in the image's flash segments only,
at most `SCAN_LIMIT` bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hil.firmware.image import FirmwareImage

SCAN_LIMIT = 16 * 1024 * 1024
"""More than any flight controller's internal flash."""

_STRING = re.compile(rb"(?<=\x00)([\x20-\x7e]{2,64})(?=\x00)")
_VERSION = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")
_DATE = re.compile(r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{4}$")
_TIME = re.compile(r"^\d\d:\d\d:\d\d$")
#: Betaflight / INAV MCU target names and MCU type names: STM32F405, STM32F7X2, AT32F435G...
_TARGET = re.compile(r"^(STM32|AT32|APM32|GD32)[A-Z0-9]{3,8}$")

#: (firmware name, identifier) -> family; version.h of each.
FAMILIES = {("Betaflight", "BTFL"): "betaflight", ("INAV", "INAV"): "inav"}


@dataclass(frozen=True)
class FirmwareStrings:
    """The identifying strings found in an image."""

    family: str | None  # "betaflight", "inav", or None: neither firmware's names are there
    versions: tuple[str, ...]  # every "M.m.p" string (FC_VERSION_STRING among them)
    targets: tuple[str, ...]  # MCU target and MCU type names ("STM32F405", "STM32F40X")
    build_dates: tuple[str, ...]
    build_times: tuple[str, ...]
    strings: frozenset[str]

    def names(self, text: str) -> bool:
        """True when `text` occurs in the image as a whole NUL-terminated string."""
        return text in self.strings

    @property
    def version(self) -> str | None:
        """The firmware version when the image holds exactly one "M.m.p" string."""
        return self.versions[0] if len(self.versions) == 1 else None

    def describe(self) -> str:
        what = {"betaflight": "Betaflight", "inav": "INAV"}.get(
            self.family or "", "unknown firmware"
        )
        target = "/".join(self.targets) or "no target name"
        return f"{what} {self.version or '?'} for {target}"


def read_strings(image: FirmwareImage) -> FirmwareStrings:
    """The identifying strings of `image` (its segments, at most SCAN_LIMIT bytes)."""
    found: set[str] = set()
    budget = SCAN_LIMIT
    for seg in image.segments:
        data = b"\x00" + seg.data[:budget] + b"\x00"
        budget -= len(seg.data)
        found.update(m.group(1).decode("ascii") for m in _STRING.finditer(data))
        if budget <= 0:
            break
    family = next(
        (f for (name, ident), f in FAMILIES.items() if name in found and ident in found), None
    )
    return FirmwareStrings(
        family=family,
        versions=tuple(sorted(s for s in found if _VERSION.match(s))),
        targets=tuple(sorted(s for s in found if _TARGET.match(s))),
        build_dates=tuple(sorted(s for s in found if _DATE.match(s))),
        build_times=tuple(sorted(s for s in found if _TIME.match(s))),
        strings=frozenset(found),
    )
