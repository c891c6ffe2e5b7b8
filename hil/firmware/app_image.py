"""The application payload the virtual board's bootloaders check and boot (docs/flashing.md).

Header (little-endian): magic b"HILAPP\\x00\\x01", board_id u32, flight_sw_version u32,
config_length u32, config_crc32 u32, then the config: UTF-8 JSON with the build's name,
version, git identity, loop rate, parameter defaults and flight-software knobs
(`behaviour`). `build_app` writes it byte-for-byte deterministically; `parse_app` checks
every field and raises `AppImageError` with the reason a board would refuse to boot.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hil.errors import HilError
from hil.firmware.paramdefs import PARAM_DEFS

APP_MAGIC = b"HILAPP\x00\x01"
HEADER = struct.Struct("<8sIIII")
HEADER_SIZE = HEADER.size  # 24
CONFIG_MAX = 64 * 1024
"""Sanity bound on config_length, so an erased or corrupt header cannot ask for megabytes."""

LOOP_RATE_RANGE = (50, 2000)
NAME_MAX = 32

#: Flight-software knobs a build may set: name -> (minimum, maximum, meaning).
BEHAVIOUR_KEYS: Mapping[str, tuple[float, float, str]] = MappingProxyType(
    {
        "rc_failsafe_extra_delay_s": (
            0.0,
            60.0,
            "seconds the radio failsafe waits, on top of RC_FS_TIMEOUT, before it engages",
        ),
    }
)

_VERSION_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})(-[A-Za-z0-9.]+)?$")
_CONFIG_KEYS = ("name", "version", "git_identity", "loop_rate", "params", "behaviour")


class AppImageError(HilError):
    """An application payload a board will not boot; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def flight_sw_version(version: str) -> int:
    """ArduPilot's encoding: major<<24 | minor<<16 | patch<<8 | release type (255 official)."""
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$", version)
    if not match:
        return 0
    major, minor, patch = (int(g or 0) & 0xFF for g in match.groups()[:3])
    suffix = match.group(4).lower()
    kind = 255
    for word, code in (("dev", 0), ("alpha", 64), ("beta", 128), ("rc", 192)):
        if word in suffix:
            kind = code
            break
    return major << 24 | minor << 16 | patch << 8 | kind


@dataclass(frozen=True)
class AppConfig:
    """What one application build is: identity, loop rate, parameter defaults, knobs."""

    board_id: int
    version: str
    flight_sw_version: int
    name: str
    git_identity: str
    loop_rate: int
    params: Mapping[str, float] = field(default_factory=dict)
    behaviour: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "behaviour", MappingProxyType(dict(self.behaviour)))

    def config_json(self) -> dict[str, Any]:
        """The config object the payload carries."""
        return {
            "name": self.name,
            "version": self.version,
            "git_identity": self.git_identity,
            "loop_rate": self.loop_rate,
            "params": dict(self.params),
            "behaviour": dict(self.behaviour),
        }


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def validate_config(board_id: int, config: Any) -> AppConfig:
    """Check a config object field by field; return the AppConfig or raise AppImageError."""
    if not isinstance(config, dict):
        raise AppImageError(f"config must be a JSON object, found {type(config).__name__}")
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise AppImageError(f"unknown config keys {unknown}; allowed: {list(_CONFIG_KEYS)}")
    missing = [k for k in ("name", "version", "loop_rate") if k not in config]
    if missing:
        raise AppImageError(f"config lacks {missing}")
    name = config["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise AppImageError(f"name must be 1-{NAME_MAX} printable characters, found {name!r:.40}")
    version = config["version"]
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise AppImageError(
            f"version must look like 1.2.3 or 1.2.3-tag, found {version!r:.40}"
        )
    git_identity = config.get("git_identity", "")
    if not isinstance(git_identity, str) or len(git_identity) > 64:
        raise AppImageError(f"git_identity must be a string of <= 64 characters, found {git_identity!r:.40}")
    loop_rate = config["loop_rate"]
    lo, hi = LOOP_RATE_RANGE
    if isinstance(loop_rate, bool) or not isinstance(loop_rate, int) or not lo <= loop_rate <= hi:
        raise AppImageError(f"loop_rate must be an integer {lo}..{hi} Hz, found {loop_rate!r:.40}")
    params = _validate_params(config.get("params", {}))
    behaviour = _validate_behaviour(config.get("behaviour", {}))
    return AppConfig(
        board_id=board_id,
        version=version,
        flight_sw_version=flight_sw_version(version),
        name=name,
        git_identity=git_identity,
        loop_rate=loop_rate,
        params=params,
        behaviour=behaviour,
    )


def _validate_params(params: Any) -> dict[str, float]:
    if not isinstance(params, dict):
        raise AppImageError(f"params must be an object, found {type(params).__name__}")
    defs = {d.name: d for d in PARAM_DEFS}
    out: dict[str, float] = {}
    for key, value in params.items():
        d = defs.get(key)
        if d is None:
            raise AppImageError(f"params: {key!r} is not a parameter of this flight software")
        if not _number(value):
            raise AppImageError(f"params: {key} must be a finite number, found {value!r:.40}")
        if not d.minimum <= float(value) <= d.maximum:
            raise AppImageError(
                f"params: {key} = {value:g} is out of range {d.minimum:g}..{d.maximum:g}"
            )
        if d.kind == "int" and float(value) != round(float(value)):
            raise AppImageError(f"params: {key} is an integer parameter, found {value:g}")
        out[key] = float(value)
    return out


def _validate_behaviour(behaviour: Any) -> dict[str, Any]:
    if not isinstance(behaviour, dict):
        raise AppImageError(f"behaviour must be an object, found {type(behaviour).__name__}")
    out: dict[str, Any] = {}
    for key, value in behaviour.items():
        spec = BEHAVIOUR_KEYS.get(key)
        if spec is None:
            raise AppImageError(
                f"behaviour: unknown key {key!r}; allowed: {sorted(BEHAVIOUR_KEYS)}"
            )
        lo, hi, _meaning = spec
        if not _number(value) or not lo <= float(value) <= hi:
            raise AppImageError(f"behaviour: {key} must be a number {lo:g}..{hi:g}, found {value!r:.40}")
        out[key] = float(value)
    return out


def build_app(
    *,
    board_id: int,
    name: str,
    version: str,
    loop_rate: int,
    git_identity: str = "",
    params: Mapping[str, float] | None = None,
    behaviour: Mapping[str, Any] | None = None,
) -> bytes:
    """The payload for one build; the config is validated first, the JSON is canonical."""
    if not 0 <= board_id <= 0xFFFFFFFF:
        raise AppImageError(f"board_id {board_id} does not fit a u32")
    config = {
        "name": name,
        "version": version,
        "git_identity": git_identity,
        "loop_rate": loop_rate,
        "params": dict(params or {}),
        "behaviour": dict(behaviour or {}),
    }
    app = validate_config(board_id, config)
    body = json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header = HEADER.pack(APP_MAGIC, board_id, app.flight_sw_version, len(body), zlib.crc32(body))
    return header + body


def parse_app(blob: bytes, *, board_id: int | None = None) -> AppConfig:
    """The config of the application at the start of `blob` (e.g. the app area of flash).

    Raises AppImageError when the board would refuse it: magic, board id (when
    `board_id` is given), length, CRC, JSON, or a config field out of bounds.
    """
    blob = bytes(blob[: HEADER_SIZE + CONFIG_MAX])
    if len(blob) < HEADER_SIZE:
        raise AppImageError(f"payload of {len(blob)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, image_board, sw_version, length, crc = HEADER.unpack_from(blob)
    if magic != APP_MAGIC:
        raise AppImageError(f"no application: magic is {magic.hex(' ')}, expected {APP_MAGIC.hex(' ')}")
    if board_id is not None and image_board != board_id:
        raise AppImageError(f"image is for board id {image_board}, this board is {board_id}")
    if length == 0 or length > CONFIG_MAX or HEADER_SIZE + length > len(blob):
        raise AppImageError(f"config_length {length} does not fit the payload")
    body = blob[HEADER_SIZE : HEADER_SIZE + length]
    if zlib.crc32(body) != crc:
        raise AppImageError(
            f"config CRC mismatch: header says 0x{crc:08X}, config has 0x{zlib.crc32(body):08X}"
        )
    try:
        config = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AppImageError(f"config is not valid UTF-8 JSON ({exc})") from None
    app = validate_config(image_board, config)
    if app.flight_sw_version != sw_version:
        raise AppImageError(
            f"header flight_sw_version 0x{sw_version:08X} does not match version {app.version}"
        )
    return app
