"""Firmware images: one model for every file format a user brings, and one loader.

A `FirmwareImage` is a set of (address, bytes) segments plus what the file says about
the board it is for. `load_image` reads ArduPilot `.apj`, PX4 `.px4`, Intel HEX, raw
`.bin`, DfuSe / plain DFU `.dfu` and 32-bit ARM ELF; the writers produce the formats we
hand to flashers. Layouts: ArduPilot uploader.py / PX4 px_uploader.py, dfu-util dfuse.c and dfu_file.c.
Anything wrong with a file raises `ImageError`, never another exception type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from hil.errors import EXIT_USAGE, HilError

DEFAULT_FLASH_BASE = 0x08000000
"""Where `.apj` / `.px4` payloads are placed unless the caller gives `base_address`."""

APJ_MAGIC = "APJFWv1"
PX4_MAGIC = "PX4FWv1"
DFUSE_PREFIX_MAGIC = b"DfuSe"
DFU_SUFFIX_SIGNATURE = b"UFD"
DFU_SUFFIX_LENGTH = 16
DFUSE_BCD_VERSION = 0x011A
ELF_MAGIC = b"\x7fELF"

SUPPORTED_FORMATS = (
    ".apj (ArduPilot)",
    ".px4 (PX4)",
    ".hex/.ihex (Intel HEX)",
    ".bin (raw, needs a base address)",
    ".dfu (DfuSe or plain DFU)",
    ".elf (32-bit little-endian ARM ELF)",
)

# A zlib bomb must not eat the machine: no flight controller flash comes near this.
_MAX_DECOMPRESSED = 256 * 1024 * 1024
MAX_DENSE_SPAN = _MAX_DECOMPRESSED
"""The widest image `contiguous()` will build: gaps wider than any flash are not filled."""
_ADDRESS_LIMIT = 1 << 32
_HASH_CHUNK = 1 << 16


class ImageError(HilError):
    """A firmware file cannot be used; the message names the file and the reason."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Segment:
    """Bytes to be placed at `address` in the target's memory."""

    address: int
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))

    @property
    def end(self) -> int:
        """First address after this segment."""
        return self.address + len(self.data)


def normalize_segments(
    segments: Iterable[Segment], *, name: str = "<image>"
) -> tuple[Segment, ...]:
    """Sort segments, drop empty ones and merge touching ones; overlaps are an ImageError.

    Every loader returns this canonical form, so images compare equal whatever the
    file's record or element boundaries were.
    """
    ordered = sorted((s for s in segments if s.data), key=lambda s: s.address)
    merged: list[Segment] = []
    pending: list[bytes] = []
    start = end = 0
    for seg in ordered:
        if pending and seg.address < end:
            raise ImageError(
                f"{name}: data at 0x{seg.address:08X} overlaps data already placed up to "
                f"0x{end:08X}; the file writes the same flash twice"
            )
        if pending and seg.address == end:
            pending.append(seg.data)
        else:
            if pending:
                merged.append(Segment(start, b"".join(pending)))
            pending, start = [seg.data], seg.address
        end = seg.end
    if pending:
        merged.append(Segment(start, b"".join(pending)))
    return tuple(merged)


@dataclass(frozen=True)
class FirmwareImage:
    """A firmware image: where each byte goes, and which board and version it is for."""

    path: str
    format: str
    segments: tuple[Segment, ...]
    board_id: int | None = None
    board_revision: int | None = None
    version: str | None = None
    usb_vid: int | None = None
    usb_pid: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", normalize_segments(self.segments, name=self.path))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def size(self) -> int:
        """Payload bytes (gaps between segments not counted)."""
        return sum(len(s.data) for s in self.segments)

    @property
    def base_address(self) -> int:
        """Lowest address written (0 for an image without segments)."""
        return self.segments[0].address if self.segments else 0

    @property
    def end_address(self) -> int:
        """First address after the highest byte written."""
        return self.segments[-1].end if self.segments else 0

    @property
    def span(self) -> int:
        """Bytes from the lowest to the highest address written, gaps included."""
        return self.end_address - self.base_address

    def read(self, address: int, length: int, fill: int = 0xFF) -> bytes:
        """`length` bytes from `address`, taken from the segments (gaps read as `fill`).

        Costs only the bytes asked for, however far apart the segments lie.
        """
        out = bytearray([fill]) * max(0, length)
        end = address + len(out)
        for seg in self.segments:
            if seg.end <= address:
                continue
            if seg.address >= end:
                break
            lo, hi = max(seg.address, address), min(seg.end, end)
            out[lo - address : hi - address] = seg.data[lo - seg.address : hi - seg.address]
        return bytes(out)

    def covers(self, address: int) -> bool:
        """True when some segment writes the byte at `address`."""
        return any(seg.address <= address < seg.end for seg in self.segments)

    @property
    def extf_image(self) -> bytes | None:
        """An `.apj`'s external-flash image, inflated at load (None when it carries none)."""
        data = self.metadata.get("extf_image")
        return bytes(data) if data else None

    def moved(self, base_address: int) -> FirmwareImage:
        """The same image with its lowest byte at `base_address` (segments keep their gaps)."""
        shift = base_address - self.base_address
        if shift == 0:
            return self
        if base_address < 0 or self.end_address + shift > _ADDRESS_LIMIT:
            raise ImageError(
                f"{self.path}: cannot place the image at 0x{base_address:X}: it would leave "
                "the 32-bit address space"
            )
        return replace(
            self, segments=tuple(Segment(s.address + shift, s.data) for s in self.segments)
        )

    def _contiguous_chunks(self, fill: int) -> Iterator[bytes]:
        gap_chunk = bytes([fill]) * _HASH_CHUNK
        cursor = self.base_address
        for seg in self.segments:
            gap = seg.address - cursor
            while gap > 0:
                step = min(gap, _HASH_CHUNK)
                yield gap_chunk[:step]
                gap -= step
            yield seg.data
            cursor = seg.end

    def contiguous(self, fill: int = 0xFF, *, limit: int = MAX_DENSE_SPAN) -> bytes:
        """The payload from `base_address` to the last byte, gaps filled with `fill`.

        Refused (ImageError) when that would take more than `limit` bytes: segments
        gigabytes apart are a wrong address, not a reason to fill memory.
        """
        if self.span > limit:
            raise ImageError(
                f"{self.path}: data spans 0x{self.base_address:08X}..0x{self.end_address:08X} "
                f"({self.span} bytes), more than the {limit} bytes any flash holds; "
                "an address in the file is wrong"
            )
        return b"".join(self._contiguous_chunks(fill))

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of `contiguous(0xFF)`, computed without building it."""
        digest = hashlib.sha256()
        for chunk in self._contiguous_chunks(0xFF):
            digest.update(chunk)
        return digest.hexdigest()


# --------------------------------------------------------------------------- loading


def load_image(path: str | os.PathLike[str], *, base_address: int | None = None) -> FirmwareImage:
    """Read a firmware file and return its image; the format comes from content and name.

    `base_address` places formats that carry no address (`.bin`, plain DFU, `.apj`,
    `.px4`); formats with their own addresses (HEX, DfuSe, ELF) ignore it.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ImageError(f"{name}: cannot read the file ({exc})") from exc
    return parse_image(data, name, base_address=base_address)


def parse_image(
    data: bytes, name: str = "<memory>", *, base_address: int | None = None
) -> FirmwareImage:
    """Decode a firmware file already in memory; `name` is used in error messages."""
    if base_address is not None and not 0 <= base_address < _ADDRESS_LIMIT:
        raise ImageError(
            f"{name}: base address 0x{base_address:X} is outside the 32-bit address space"
        )
    data = bytes(data)
    suffix = Path(name).suffix.lower()
    if not data:
        raise ImageError(f"{name}: the file is empty")
    try:
        if suffix == ".bin":
            return _parse_bin(data, name, base_address)
        if data.startswith(DFUSE_PREFIX_MAGIC):
            return _parse_dfuse(data, name)
        if data.startswith(ELF_MAGIC):
            return _parse_elf(data, name)
        if suffix in (".apj", ".px4", ".json") or data.lstrip()[:1] == b"{":
            return _parse_json_image(data, name, base_address)
        if suffix in (".hex", ".ihex", ".ihx") or data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b":":
            return _parse_hex(data, name)
        if suffix == ".dfu":
            return _parse_plain_dfu(data, name, base_address)
        if suffix == ".elf":
            raise ImageError(f"{name}: not an ELF file (the first bytes are not 7F 'ELF')")
    except RecursionError as exc:  # json nesting deeper than the interpreter allows
        raise ImageError(f"{name}: the file is nested too deeply to be a firmware image") from exc
    raise ImageError(f"{name}: unknown firmware format; supported: {', '.join(SUPPORTED_FORMATS)}")


def _nonempty(name: str, segments: Iterable[Segment]) -> tuple[Segment, ...]:
    normalized = normalize_segments(segments, name=name)
    if not normalized:
        raise ImageError(f"{name}: the image is empty (no bytes to flash)")
    return normalized


def _place(name: str, payload: bytes, address: int) -> tuple[Segment, ...]:
    if address + len(payload) > _ADDRESS_LIMIT:
        raise ImageError(
            f"{name}: {len(payload)} bytes at 0x{address:08X} run past the 32-bit address space"
        )
    return _nonempty(name, [Segment(address, payload)])


def _parse_bin(data: bytes, name: str, base_address: int | None) -> FirmwareImage:
    if base_address is None:
        raise ImageError(
            f"{name}: a raw .bin has no load address; give base_address "
            f"(e.g. 0x{DEFAULT_FLASH_BASE:08X} for STM32 internal flash)"
        )
    return FirmwareImage(name, "bin", _place(name, data, base_address))


# .apj / .px4 ------------------------------------------------------------------------


def _inflate(name: str, key: str, text: Any) -> bytes:
    """base64 then zlib, as ArduPilot and PX4 pack `image` (and `extf_image`)."""
    if not isinstance(text, str):
        raise ImageError(f"{name}: '{key}' must be a base64 string, found {type(text).__name__}")
    try:
        packed = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{name}: '{key}' is not valid base64 ({exc})") from exc
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(packed, _MAX_DECOMPRESSED)
    except zlib.error as exc:
        raise ImageError(
            f"{name}: '{key}' is not valid zlib data ({exc}); the file is corrupt"
        ) from exc
    if inflater.unconsumed_tail:
        raise ImageError(f"{name}: '{key}' inflates to more than {_MAX_DECOMPRESSED} bytes")
    if not inflater.eof:
        raise ImageError(f"{name}: '{key}' zlib stream is truncated; the file is incomplete")
    return out


def _json_int(
    name: str, desc: Mapping[str, Any], key: str, *, required: bool = False
) -> int | None:
    value = desc.get(key)
    if value is None:
        if required:
            raise ImageError(f"{name}: the '{key}' field is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImageError(f"{name}: '{key}' must be an integer, found {value!r:.40}")
    return value


_USBID_RE = re.compile(r"^\s*0x([0-9A-Fa-f]{1,4})\s*/\s*0x([0-9A-Fa-f]{1,4})\s*$")


def _parse_usbid(name: str, value: Any) -> tuple[int | None, int | None]:
    if value is None or value == "":
        return None, None
    match = _USBID_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ImageError(f"{name}: USBID {value!r:.40} is not of the form '0xVID/0xPID'")
    return int(match.group(1), 16), int(match.group(2), 16)


def _parse_json_image(data: bytes, name: str, base_address: int | None) -> FirmwareImage:
    try:
        desc = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ImageError(
            f"{name}: not valid JSON ({exc}); the file is corrupt or truncated"
        ) from exc
    if not isinstance(desc, dict):
        raise ImageError(
            f"{name}: expected a JSON object with 'magic' and 'image', found {type(desc).__name__}"
        )
    magic = desc.get("magic")
    formats = {APJ_MAGIC: "apj", PX4_MAGIC: "px4"}
    if not isinstance(magic, str) or magic not in formats:
        raise ImageError(
            f"{name}: wrong magic {magic!r:.40}; expected '{APJ_MAGIC}' (ArduPilot .apj) "
            f"or '{PX4_MAGIC}' (PX4 .px4)"
        )
    if "image" not in desc:
        raise ImageError(f"{name}: the 'image' field is missing")
    payload = _inflate(name, "image", desc["image"])
    image_size = _json_int(name, desc, "image_size")
    if image_size is not None and image_size != len(payload):
        raise ImageError(
            f"{name}: image_size says {image_size} bytes but the image holds {len(payload)}; "
            "the file is corrupt"
        )
    image_maxsize = _json_int(name, desc, "image_maxsize")
    if image_maxsize is not None and len(payload) > image_maxsize:
        raise ImageError(
            f"{name}: the image holds {len(payload)} bytes but image_maxsize is {image_maxsize}; "
            "the build overflowed its board's flash"
        )
    board_id = _json_int(name, desc, "board_id", required=True)
    if not 0 <= board_id <= 0xFFFFFFFF:
        raise ImageError(f"{name}: board_id {board_id} does not fit a u32")
    board_revision = _json_int(name, desc, "board_revision")
    version = desc.get("version") or desc.get("git_identity") or None
    if version is not None and not isinstance(version, str):
        raise ImageError(f"{name}: 'version' must be a string, found {version!r:.40}")
    vid, pid = _parse_usbid(name, desc.get("USBID"))
    metadata = {k: v for k, v in desc.items() if k not in ("image", "extf_image")}
    extf = desc.get("extf_image")
    if extf:
        metadata["extf_image"] = _inflate(name, "extf_image", extf)
        extf_size = _json_int(name, desc, "extf_image_size")
        if extf_size is not None and extf_size != len(metadata["extf_image"]):
            raise ImageError(
                f"{name}: extf_image_size says {extf_size} bytes but extf_image holds "
                f"{len(metadata['extf_image'])}; the file is corrupt"
            )
    address = DEFAULT_FLASH_BASE if base_address is None else base_address
    return FirmwareImage(
        name,
        formats[magic],
        _place(name, payload, address),
        board_id=board_id,
        board_revision=board_revision,
        version=version,
        usb_vid=vid,
        usb_pid=pid,
        metadata=metadata,
    )


# Intel HEX ---------------------------------------------------------------------------

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _parse_hex(data: bytes, name: str) -> FirmwareImage:
    chunks: list[Segment] = []
    metadata: dict[str, Any] = {}
    upper = 0  # base from record 02 (segment * 16) or 04 (linear << 16)
    ended = False
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        if not line:
            continue
        where = f"{name}: line {number}"
        if ended:
            raise ImageError(f"{where}: data after the end-of-file record; two files joined?")
        if line[:1] != b":":
            raise ImageError(f"{where}: a record must start with ':'")
        body = line[1:]
        if len(body) % 2 or len(body) < 10 or not _HEX_DIGITS.issuperset(body):
            raise ImageError(
                f"{where}: not a well-formed hex record (odd length or non-hex characters)"
            )
        record = bytes.fromhex(body.decode("ascii"))
        count, offset, rtype = record[0], int.from_bytes(record[1:3], "big"), record[3]
        if len(record) != count + 5:
            raise ImageError(
                f"{where}: byte count says {count} data bytes, record holds {len(record) - 5}"
            )
        if sum(record) & 0xFF:
            expected = (-sum(record[:-1])) & 0xFF
            raise ImageError(
                f"{where}: HEX checksum error (expected 0x{expected:02X}, found 0x{record[-1]:02X}); "
                "the file is corrupt"
            )
        payload = record[4:-1]
        if rtype == 0x00:
            address = upper + offset
            if address + count > _ADDRESS_LIMIT:
                raise ImageError(f"{where}: data runs past the 32-bit address space")
            chunks.append(Segment(address, payload))
        elif rtype == 0x01:
            ended = True
        elif rtype in (0x02, 0x04):
            if count != 2:
                raise ImageError(
                    f"{where}: record type {rtype:02X} must carry 2 bytes, not {count}"
                )
            value = int.from_bytes(payload, "big")
            upper = value << 4 if rtype == 0x02 else value << 16
        elif rtype in (0x03, 0x05):
            if count != 4:
                raise ImageError(
                    f"{where}: record type {rtype:02X} must carry 4 bytes, not {count}"
                )
            key = "start_segment_address" if rtype == 0x03 else "start_address"
            metadata[key] = int.from_bytes(payload, "big")
        else:
            raise ImageError(f"{where}: unknown record type {rtype:02X} (expected 00-05)")
    if not ended:
        raise ImageError(f"{name}: no end-of-file record (:00000001FF); the file is truncated")
    return FirmwareImage(name, "hex", _nonempty(name, chunks), metadata=metadata)


# DFU / DfuSe -------------------------------------------------------------------------


@dataclass(frozen=True)
class _DfuSuffix:
    bcd_device: int
    pid: int
    vid: int
    bcd_dfu: int
    length: int


def _parse_dfu_suffix(data: bytes, name: str) -> _DfuSuffix:
    if len(data) < DFU_SUFFIX_LENGTH:
        raise ImageError(
            f"{name}: {len(data)} bytes is too short for a DFU suffix; the file is truncated"
        )
    if data[-8:-5] != DFU_SUFFIX_SIGNATURE:
        raise ImageError(
            f"{name}: no DFU suffix (signature 'UFD' missing); the file is truncated or not a .dfu"
        )
    length = data[-5]
    if not DFU_SUFFIX_LENGTH <= length <= len(data):
        raise ImageError(f"{name}: DFU suffix length {length} is impossible (16..{len(data)})")
    expected = zlib.crc32(data[:-4]) ^ 0xFFFFFFFF
    (actual,) = struct.unpack_from("<I", data, len(data) - 4)
    if expected != actual:
        raise ImageError(
            f"{name}: DfuSe CRC mismatch (expected 0x{expected:08X} from the contents, "
            f"file says 0x{actual:08X}); the file is corrupt"
        )
    bcd_device, pid, vid, bcd_dfu = struct.unpack_from("<4H", data, len(data) - DFU_SUFFIX_LENGTH)
    return _DfuSuffix(bcd_device, pid, vid, bcd_dfu, length)


def _usb_id(value: int) -> int | None:
    """0xFFFF in a DFU suffix means "any device"."""
    return None if value == 0xFFFF else value


def _parse_plain_dfu(data: bytes, name: str, base_address: int | None) -> FirmwareImage:
    suffix = _parse_dfu_suffix(data, name)
    if base_address is None:
        raise ImageError(
            f"{name}: a plain DFU file has no load address; give base_address "
            f"(e.g. 0x{DEFAULT_FLASH_BASE:08X})"
        )
    payload = data[: -suffix.length]
    return FirmwareImage(
        name,
        "dfu",
        _place(name, payload, base_address),
        usb_vid=_usb_id(suffix.vid),
        usb_pid=_usb_id(suffix.pid),
        metadata={"bcd_device": suffix.bcd_device, "bcd_dfu": suffix.bcd_dfu},
    )


_DFUSE_PREFIX = struct.Struct("<5sBIB")
_DFUSE_TARGET = struct.Struct("<6sBI255sII")
_DFUSE_ELEMENT = struct.Struct("<II")


def _parse_dfuse(data: bytes, name: str) -> FirmwareImage:
    suffix = _parse_dfu_suffix(data, name)
    body_end = len(data) - suffix.length
    if body_end < _DFUSE_PREFIX.size:
        raise ImageError(f"{name}: DfuSe prefix is truncated")
    _, version, image_size, n_targets = _DFUSE_PREFIX.unpack_from(data)
    if version != 1:
        raise ImageError(f"{name}: DfuSe format version {version} is not supported (expected 1)")
    if suffix.bcd_dfu != DFUSE_BCD_VERSION:
        raise ImageError(
            f"{name}: a DfuSe file's suffix must say bcdDFU 0x{DFUSE_BCD_VERSION:04X}, this one "
            f"says 0x{suffix.bcd_dfu:04X}; the file is corrupt or mislabelled"
        )
    if image_size != body_end:
        raise ImageError(
            f"{name}: DfuSe size fields inconsistent: the prefix says {image_size} bytes before "
            f"the suffix, the file has {body_end}"
        )
    pos = _DFUSE_PREFIX.size
    segments: list[Segment] = []
    targets: list[dict[str, Any]] = []
    for t in range(n_targets):
        if pos + _DFUSE_TARGET.size > body_end:
            raise ImageError(
                f"{name}: DfuSe target {t} header is truncated (prefix announced {n_targets} targets)"
            )
        magic, alt, named, raw_name, size, n_elements = _DFUSE_TARGET.unpack_from(data, pos)
        if magic != b"Target":
            raise ImageError(f"{name}: DfuSe target {t} at byte {pos} does not start with 'Target'")
        pos += _DFUSE_TARGET.size
        if pos + size > body_end:
            raise ImageError(
                f"{name}: DfuSe size fields inconsistent: target {t} says {size} bytes, "
                f"only {body_end - pos} remain"
            )
        target_end = pos + size
        elements: list[tuple[int, int]] = []
        for e in range(n_elements):
            if pos + _DFUSE_ELEMENT.size > target_end:
                raise ImageError(
                    f"{name}: DfuSe size fields inconsistent: element {e} of target {t} "
                    f"lies beyond the target's {size} bytes"
                )
            address, length = _DFUSE_ELEMENT.unpack_from(data, pos)
            pos += _DFUSE_ELEMENT.size
            if pos + length > target_end:
                raise ImageError(
                    f"{name}: DfuSe size fields inconsistent: element {e} of target {t} says "
                    f"{length} bytes, only {target_end - pos} remain in the target"
                )
            if address + length > _ADDRESS_LIMIT:
                raise ImageError(
                    f"{name}: element {e} of target {t} runs past the 32-bit address space"
                )
            segments.append(Segment(address, data[pos : pos + length]))
            elements.append((address, length))
            pos += length
        if pos != target_end:
            raise ImageError(
                f"{name}: DfuSe size fields inconsistent: target {t} says {size} bytes, "
                f"its elements use {size - (target_end - pos)}"
            )
        label = raw_name.split(b"\0", 1)[0].decode("latin-1") if named else ""
        targets.append({"alt": alt, "name": label, "elements": tuple(elements)})
    if pos != body_end:
        raise ImageError(
            f"{name}: DfuSe size fields inconsistent: {body_end - pos} bytes after the last target"
        )
    return FirmwareImage(
        name,
        "dfuse",
        _nonempty(name, segments),
        usb_vid=_usb_id(suffix.vid),
        usb_pid=_usb_id(suffix.pid),
        metadata={
            "bcd_device": suffix.bcd_device,
            "bcd_dfu": suffix.bcd_dfu,
            "targets": tuple(targets),
        },
    )


# ELF ---------------------------------------------------------------------------------

_ELF_HEADER = struct.Struct("<16sHHIIIIIHHHHHH")
_ELF_PHDR = struct.Struct("<IIIIIIII")
_PT_LOAD = 1
_EM_ARM = 40


def _parse_elf(data: bytes, name: str) -> FirmwareImage:
    if len(data) < _ELF_HEADER.size:
        raise ImageError(f"{name}: ELF header is truncated")
    ident, _type, machine, _ver, entry, phoff, _sh, _flags, _eh, phentsize, phnum, *_ = (
        _ELF_HEADER.unpack_from(data)
    )
    if ident[4] != 1:
        raise ImageError(
            f"{name}: only 32-bit ELF is supported (EI_CLASS is {ident[4]}, expected 1)"
        )
    if ident[5] != 1:
        raise ImageError(f"{name}: only little-endian ELF is supported (EI_DATA is {ident[5]})")
    if machine != _EM_ARM:
        raise ImageError(
            f"{name}: ELF machine {machine} is not ARM ({_EM_ARM}); wrong build target?"
        )
    if phnum == 0:
        raise ImageError(f"{name}: the ELF has no program headers; link it as an executable")
    if phentsize < _ELF_PHDR.size or phoff + phentsize * phnum > len(data):
        raise ImageError(f"{name}: ELF program header table is truncated or malformed")
    segments: list[Segment] = []
    for i in range(phnum):
        p_type, offset, _vaddr, paddr, filesz, memsz, _f, _a = _ELF_PHDR.unpack_from(
            data, phoff + i * phentsize
        )
        if p_type != _PT_LOAD or filesz == 0:
            continue
        if filesz > memsz:
            raise ImageError(
                f"{name}: ELF segment {i} has {filesz} bytes in the file but {memsz} in memory "
                "(p_filesz > p_memsz); the file is malformed"
            )
        if offset + filesz > len(data):
            raise ImageError(
                f"{name}: ELF segment {i} lies beyond the end of the file; the file is truncated"
            )
        if paddr + filesz > _ADDRESS_LIMIT:
            raise ImageError(f"{name}: ELF segment {i} runs past the 32-bit address space")
        # Flash takes the load address (p_paddr): initialised .data lives there until copied.
        segments.append(Segment(paddr, data[offset : offset + filesz]))
    return FirmwareImage(name, "elf", _nonempty(name, segments), metadata={"entry": entry})


# --------------------------------------------------------------------------- writing


def _emit(path_or_file: str | os.PathLike[str] | IO[bytes], data: bytes) -> None:
    if hasattr(path_or_file, "write"):
        path_or_file.write(data)  # type: ignore[union-attr]
        return
    try:
        Path(path_or_file).write_bytes(data)  # type: ignore[arg-type]
    except OSError as exc:
        raise ImageError(f"{os.fspath(path_or_file)}: cannot write the file ({exc})") from exc


def _require_payload(image: FirmwareImage, what: str) -> None:
    if not image.segments:
        raise ImageError(f"{image.path}: cannot write {what}: the image is empty")
    if image.end_address > _ADDRESS_LIMIT:
        raise ImageError(
            f"{image.path}: cannot write {what}: data runs past the 32-bit address space"
        )


def write_bin(
    image: FirmwareImage, path_or_file: str | os.PathLike[str] | IO[bytes], *, fill: int = 0xFF
) -> None:
    """Write the contiguous payload; the base address is not stored, keep it yourself."""
    _require_payload(image, "a .bin")
    _emit(path_or_file, image.contiguous(fill))


def _json_image_bytes(
    image: FirmwareImage,
    magic: str,
    fields: Mapping[str, Any],
) -> bytes:
    payload = image.contiguous()
    desc: dict[str, Any] = {
        "magic": magic,
        "image": base64.b64encode(zlib.compress(payload, 9)).decode("ascii"),
        "image_size": len(payload),
    }
    desc.update(fields)
    return json.dumps(desc, indent=4).encode("utf-8")


def write_apj(
    image: FirmwareImage,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    board_id: int,
    board_revision: int = 0,
    version: str,
    git_identity: str = "",
    usb_id: tuple[int, int] | None = None,
    summary: str = "",
    image_maxsize: int | None = None,
) -> None:
    """Write an ArduPilot `.apj`; `usb_id` (vid, pid) defaults to the image's own USB ids."""
    _require_payload(image, "an .apj")
    if usb_id is None and image.usb_vid is not None and image.usb_pid is not None:
        usb_id = (image.usb_vid, image.usb_pid)
    fields: dict[str, Any] = {
        "board_id": board_id,
        "board_revision": board_revision,
        "summary": summary,
        "description": "",
        "version": version,
        "git_identity": git_identity,
    }
    if usb_id is not None:
        vid, pid = usb_id
        if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
            raise ImageError(f"{image.path}: USB id {vid:#x}/{pid:#x} does not fit 16 bits")
        fields["USBID"] = f"0x{vid:04x}/0x{pid:04x}"
    if image_maxsize is not None:
        fields["image_maxsize"] = image_maxsize
    _emit(path_or_file, _json_image_bytes(image, APJ_MAGIC, fields))


def write_px4(
    image: FirmwareImage,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    board_id: int,
    board_revision: int = 0,
    version: str,
    git_identity: str = "",
    summary: str = "",
) -> None:
    """Write a PX4 `.px4` (same container as `.apj`, magic PX4FWv1, no USB id)."""
    _require_payload(image, "a .px4")
    fields = {
        "board_id": board_id,
        "board_revision": board_revision,
        "summary": summary,
        "description": "",
        "version": version,
        "git_identity": git_identity,
    }
    _emit(path_or_file, _json_image_bytes(image, PX4_MAGIC, fields))


def _hex_record(rtype: int, offset: int, payload: bytes) -> str:
    record = bytes([len(payload)]) + offset.to_bytes(2, "big") + bytes([rtype]) + payload
    return ":" + (record + bytes([(-sum(record)) & 0xFF])).hex().upper() + "\n"


def write_hex(
    image: FirmwareImage,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    record_size: int = 16,
    start_address: int | None = None,
) -> None:
    """Write Intel HEX (types 00/04/05/01); `start_address` defaults to the image's own."""
    _require_payload(image, "Intel HEX")
    if not 1 <= record_size <= 255:
        raise ImageError(f"{image.path}: HEX record size {record_size} must be 1..255")
    if start_address is None:
        start_address = image.metadata.get("start_address")
    lines: list[str] = []
    upper: int | None = None
    for seg in image.segments:
        pos = 0
        while pos < len(seg.data):
            address = seg.address + pos
            if address >> 16 != upper:
                upper = address >> 16
                lines.append(_hex_record(0x04, 0, upper.to_bytes(2, "big")))
            # A record never crosses a 64 KiB boundary: its offset is only 16 bits.
            step = min(record_size, len(seg.data) - pos, 0x10000 - (address & 0xFFFF))
            lines.append(_hex_record(0x00, address & 0xFFFF, seg.data[pos : pos + step]))
            pos += step
    if start_address is not None:
        lines.append(_hex_record(0x05, 0, (start_address & 0xFFFFFFFF).to_bytes(4, "big")))
    lines.append(_hex_record(0x01, 0, b""))
    _emit(path_or_file, "".join(lines).encode("ascii"))


def dfu_suffix(
    body: bytes, *, vid: int, pid: int, bcd_device: int = 0xFFFF, bcd_dfu: int = DFUSE_BCD_VERSION
) -> bytes:
    """`body` with the 16-byte DFU suffix appended (CRC rule of PROTOCOLS.md section 2)."""
    head = body + struct.pack(
        "<4H3sB", bcd_device, pid, vid, bcd_dfu, DFU_SUFFIX_SIGNATURE, DFU_SUFFIX_LENGTH
    )
    return head + struct.pack("<I", zlib.crc32(head) ^ 0xFFFFFFFF)


def write_dfu(
    image: FirmwareImage,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    vid: int,
    pid: int,
    bcd_device: int = 0xFFFF,
    alt: int = 0,
    target_name: str = "Internal Flash",
) -> None:
    """Write a DfuSe `.dfu`: one target (alt setting `alt`), one element per segment."""
    _require_payload(image, "a DfuSe file")
    for label, value in (("vid", vid), ("pid", pid), ("bcd_device", bcd_device)):
        if not 0 <= value <= 0xFFFF:
            raise ImageError(f"{image.path}: {label} {value:#x} does not fit 16 bits")
    if not 0 <= alt <= 0xFF:
        raise ImageError(f"{image.path}: alt setting {alt} does not fit a byte")
    raw_name = target_name.encode("latin-1", errors="replace")[:254]
    elements = b"".join(
        _DFUSE_ELEMENT.pack(s.address, len(s.data)) + s.data for s in image.segments
    )
    target = (
        _DFUSE_TARGET.pack(
            b"Target", alt, 1 if raw_name else 0, raw_name, len(elements), len(image.segments)
        )
        + elements
    )
    body = _DFUSE_PREFIX.pack(DFUSE_PREFIX_MAGIC, 1, _DFUSE_PREFIX.size + len(target), 1) + target
    _emit(path_or_file, dfu_suffix(body, vid=vid, pid=pid, bcd_device=bcd_device))
