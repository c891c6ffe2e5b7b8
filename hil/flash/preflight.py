"""Every check of an image that can be made before a board's flash is erased.

Both flashers describe the board as a `FlashTarget` (where its application starts,
which flash may be written, its board id, whether it boots only our application
header) and call `check_image`, which refuses with `ImageRefused`, a one-line message,
before anything is erased. What is checked:

- every segment lies in writable flash of this board (an address far outside costs
  nothing: segments are compared, never expanded into a buffer);
- our application header (docs/flashing.md), where the image carries one or the board
  expects one: magic, board id, config length, CRC, JSON, and that the file's own board
  id agrees with the payload's;
- otherwise a Cortex-M vector table at the image's start (initial SP in RAM, reset
  vector a Thumb address inside the image) and, when present, ArduPilot's app
  descriptor (board id, image size, CRCs);
- the board id the file, the payload or the descriptor names, against the board's.

The file's own checksums (HEX records, DfuSe CRC and sizes, .apj image_size, ELF
bounds) are checked when it is loaded (`hil.firmware.image`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hil.errors import EXIT_USAGE
from hil.firmware.app_image import APP_MAGIC, CONFIG_MAX, HEADER_SIZE, AppImageError, parse_app
from hil.firmware.arm_image import check_vector_table, find_app_descriptor
from hil.firmware.image import FirmwareImage, ImageError
from hil.firmware.layout import APP_BASE, APP_SIZE
from hil.flash.base import FlashError
from hil.mavlink.dialect import VFC_BOARD_ID

UNTOUCHED = "refused before erasing, the board's firmware is untouched"
_ADDRESSLESS = ("apj", "px4", "bin", "dfu")
DESCRIPTOR_SCAN = 16 * 1024 * 1024
"""Bytes searched for ArduPilot's app descriptor: more than any flight controller's flash."""


class ImageRefused(FlashError):
    """An image refused before anything on the board was erased; one line says why."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class FlashArea:
    """A stretch of the board's flash: [start, end), writable by this path or not."""

    start: int
    end: int
    writable: bool = True
    what: str = "flash"


@dataclass(frozen=True)
class BoardFacts:
    """What we know of a board type by its board id, before asking its bootloader."""

    name: str
    app_start: int
    app_size: int
    app_header: bool  # boots only an application carrying our header (docs/flashing.md)


#: Board types known by board id. The virtual board boots only our application header.
KNOWN_BOARDS: Mapping[int, BoardFacts] = MappingProxyType(
    {VFC_BOARD_ID: BoardFacts("HIL virtual FC", APP_BASE, APP_SIZE, app_header=True)}
)


@dataclass(frozen=True)
class FlashTarget:
    """One board as a flasher sees it before erasing."""

    where: str  # "board HILVFC0001 (serial bootloader on /dev/pts/4)", for messages
    app_start: int  # where the board starts its application
    areas: tuple[FlashArea, ...]  # in address order
    board_id: int | None = None  # None: the board does not say
    app_header: bool | None = None  # None: from KNOWN_BOARDS by board id

    @property
    def expects_app_header(self) -> bool:
        if self.app_header is not None:
            return self.app_header
        facts = KNOWN_BOARDS.get(self.board_id) if self.board_id is not None else None
        return facts is not None and facts.app_header

    def describe_areas(self) -> str:
        writable = [a for a in self.areas if a.writable]
        return ", ".join(f"0x{a.start:08X}..0x{a.end:08X}" for a in writable) or "none"


@dataclass(frozen=True)
class Checked:
    """What the checks learned of the image."""

    board_id: int | None  # the board id the image names (file, payload or descriptor)
    version: str | None
    flight_sw_version: int | None
    kind: str  # "hil-app", "ardupilot-descriptor" or "vector-table"


def refuse(image: FirmwareImage, reason: str) -> ImageRefused:
    """The one-line refusal for `image`."""
    return ImageRefused(f"{image.path}: {reason}; {UNTOUCHED}")


def check_areas(image: FirmwareImage, target: FlashTarget) -> None:
    """Every segment must lie inside writable areas of the target's flash."""
    if not image.segments:
        raise refuse(image, "the image is empty, nothing to flash")
    for seg in image.segments:
        address = seg.address
        while address < seg.end:
            area = next((a for a in target.areas if a.start <= address < a.end), None)
            if area is None:
                raise refuse(
                    image,
                    f"bytes 0x{address:08X}..0x{seg.end:08X} lie outside the flash of "
                    f"{target.where} (writable 0x{_lowest(target):08X}..0x{_highest(target):08X}): "
                    "they do not fit this board",
                )
            if not area.writable:
                hint = (
                    f" (place a .{image.format} there with --base-address 0x{target.app_start:08X})"
                    if image.format in _ADDRESSLESS
                    else ""
                )
                raise refuse(
                    image,
                    f"data at 0x{address:08X} falls in {area.what} at 0x{area.start:08X} of "
                    f"{target.where}, which this path never writes; application images start "
                    f"at 0x{target.app_start:08X}{hint}",
                )
            address = area.end


def _lowest(target: FlashTarget) -> int:
    return min((a.start for a in target.areas if a.writable), default=0)


def _highest(target: FlashTarget) -> int:
    return max((a.end for a in target.areas if a.writable), default=0)


def check_image(image: FirmwareImage, target: FlashTarget) -> Checked:
    """All checks of `image` against `target`; ImageRefused (one line) on the first failure."""
    check_areas(image, target)
    checked = check_payload(image, target.app_start, expect_header=target.expects_app_header)
    claims = _claims(image, checked)
    if target.board_id is not None:
        for source, board_id, mask in claims:
            if board_id != target.board_id & mask:
                raise refuse(
                    image,
                    f"{source} says board id {board_id}, {target.where} is board id {target.board_id}",
                )
    return checked


def check_payload(image: FirmwareImage, app_start: int, *, expect_header: bool) -> Checked:
    """The checks of the payload alone: our header, or a vector table and ArduPilot's descriptor."""
    head = image.read(app_start, HEADER_SIZE + CONFIG_MAX)
    if head.startswith(APP_MAGIC) or expect_header:
        if not image.covers(app_start):
            raise refuse(
                image,
                f"the image does not write the application start 0x{app_start:08X}, where "
                "this board expects its application header",
            )
        try:
            app = parse_app(head)
        except AppImageError as exc:
            what = "not an application for this board" if expect_header else "corrupt"
            raise refuse(
                image, f"application header at 0x{app_start:08X}: {exc.reason} ({what})"
            ) from None
        checked = Checked(app.board_id, app.version, app.flight_sw_version, "hil-app")
    else:
        try:
            check_vector_table(image, image.base_address, what="the image's start")
            descriptor = find_app_descriptor(_bounded(image), image.path)
        except ImageError as exc:
            raise refuse(image, _strip_name(image, str(exc))) from None
        if descriptor is not None:
            version = f"{descriptor.version_major}.{descriptor.version_minor}"
            checked = Checked(descriptor.board_id, version, None, "ardupilot-descriptor")
        else:
            checked = Checked(None, None, None, "vector-table")
    _claims(image, checked)  # the file and its payload must agree
    return checked


def _bounded(image: FirmwareImage) -> bytes:
    """The image from its start, at most DESCRIPTOR_SCAN bytes (where a descriptor can be)."""
    return image.read(image.base_address, min(image.span, DESCRIPTOR_SCAN))


def _strip_name(image: FirmwareImage, message: str) -> str:
    prefix = f"{image.path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _claims(image: FirmwareImage, checked: Checked) -> list[tuple[str, int, int]]:
    """(source, board id, mask) for each board id the image names; refused when they disagree.

    ArduPilot's app descriptor holds only the low 16 bits of APJ_BOARD_ID (mask 0xFFFF).
    """
    claims: list[tuple[str, int, int]] = []
    if image.board_id is not None:
        claims.append((f"the {image.format} file", image.board_id, 0xFFFFFFFF))
    if checked.board_id is not None:
        if checked.kind == "hil-app":
            claims.append(("its payload", checked.board_id, 0xFFFFFFFF))
        else:
            claims.append(("its ArduPilot app descriptor", checked.board_id, 0xFFFF))
    if len(claims) == 2:
        (first, a, _), (second, b, mask) = claims
        if a & mask != b:
            raise refuse(
                image,
                f"{first} says board id {a}, {second} says {b}; the image is inconsistent",
            )
    return claims


def areas_from(spans: Iterable[tuple[int, int, bool, str]]) -> tuple[FlashArea, ...]:
    """FlashAreas from (start, end, writable, what), sorted by address."""
    return tuple(sorted((FlashArea(*s) for s in spans), key=lambda a: a.start))
