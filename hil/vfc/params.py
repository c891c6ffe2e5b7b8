"""The virtual board's parameters and the "flash" file that keeps them across reboots.

The storage file holds a magic line, a format version and the JSON of the values that
differ from their defaults (so a firmware with new defaults picks them up, as
ArduPilot's eeprom does). It is replaced atomically; a corrupt or foreign file is
reported on stderr and ignored, because a board must boot whatever is in its flash.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from hil.errors import ParamError

MAGIC = b"HILVFC-PARAMS"
VERSION = 1
#: MAVLink's param_id is 16 characters.
MAX_NAME_LEN = 16
#: Relative slack on range limits: PARAM_SET carries a float32, so a value set to its
#: maximum (0.8) may arrive as 0.800000011920929.
_FLOAT32_SLACK = 1e-6


class ParamDefLike(Protocol):
    """What ParamStore needs from a definition (hil.firmware.paramdefs.ParamDef)."""

    name: str
    default: float
    kind: str
    minimum: float
    maximum: float


def _warn(message: str) -> None:
    print(f"vfc params: {message}", file=sys.stderr, flush=True)


class ParamStore:
    """Named numeric parameters with limits, persisted to an optional storage file."""

    def __init__(self, defs: Sequence[ParamDefLike] | None = None, path: Path | str | None = None):
        if defs is None:
            from hil.firmware.paramdefs import PARAM_DEFS

            defs = PARAM_DEFS
        self.path = Path(path) if path is not None else None
        self._defs: dict[str, ParamDefLike] = {}
        for d in defs:
            if d.name in self._defs:
                raise ParamError(f"parameter {d.name!r} is defined twice")
            if not d.name or len(d.name) > MAX_NAME_LEN:
                raise ParamError(f"parameter name {d.name!r} must be 1-{MAX_NAME_LEN} characters")
            if d.kind not in ("int", "float"):
                raise ParamError(f"parameter {d.name}: kind {d.kind!r} is not 'int' or 'float'")
            self._defs[d.name] = d
        self._names = tuple(self._defs)
        self._index = {name: i for i, name in enumerate(self._names)}
        self._values: dict[str, float] = {d.name: float(d.default) for d in self._defs.values()}
        #: Values readers derived from this store (hil.vfc.copter keeps `read_param`'s
        #: result per name here); emptied whenever a value changes.
        self.read_cache: dict[str, float] = {}

    # -- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def get(self, name: str) -> float:
        """Current value of `name`; raises ParamError for an unknown name."""
        try:
            return self._values[name]
        except KeyError:
            raise ParamError(f"unknown parameter {name!r}") from None

    def definition(self, name: str) -> ParamDefLike:
        """The definition of `name` (kind, limits, default)."""
        try:
            return self._defs[name]
        except KeyError:
            raise ParamError(f"unknown parameter {name!r}") from None

    def names(self) -> tuple[str, ...]:
        """All names, in definition order (the order of PARAM_VALUE indices)."""
        return self._names

    def index(self, name: str) -> int:
        """Position of `name` in `names()`."""
        try:
            return self._index[name]
        except KeyError:
            raise ParamError(f"unknown parameter {name!r}") from None

    def items(self) -> Iterator[tuple[str, float]]:
        """(name, value) pairs in `names()` order."""
        return ((name, self._values[name]) for name in self._names)

    # -- writing ------------------------------------------------------------------------
    def check(self, name: str, value: float) -> float:
        """The value `name` would hold after `set(name, value)`; raises ParamError if refused."""
        d = self.definition(name)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{name}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ParamError(f"{name}: {v} is not a finite number")
        if d.kind == "int":
            v = float(round(v))
        slack = _FLOAT32_SLACK * max(1.0, abs(d.minimum), abs(d.maximum))
        if d.kind == "float" and d.minimum - slack <= v < d.minimum:
            v = float(d.minimum)
        if d.kind == "float" and d.maximum < v <= d.maximum + slack:
            v = float(d.maximum)
        if not d.minimum <= v <= d.maximum:
            raise ParamError(f"{name}: {v:g} out of range {d.minimum:g}..{d.maximum:g}")
        return v

    def set(self, name: str, value: float) -> float:
        """Set `name` (ints rounded) and return the value now held; ParamError if refused."""
        v = self.check(name, value)
        self._values[name] = v
        self.read_cache.clear()
        return v

    def reset(self) -> None:
        """Every parameter back to its default (not saved until `save()`)."""
        self._values = {d.name: float(d.default) for d in self._defs.values()}
        self.read_cache.clear()

    # -- storage ------------------------------------------------------------------------
    def non_defaults(self) -> dict[str, float]:
        """The values that differ from their defaults: what the storage file keeps."""
        return {
            name: value for name, value in self.items() if value != float(self._defs[name].default)
        }

    def save(self) -> None:
        """Write the non-default values to the storage file atomically (no-op without a path)."""
        if self.path is None:
            return
        body = json.dumps(self.non_defaults(), sort_keys=True, indent=1)
        data = MAGIC + f" {VERSION}\n".encode() + body.encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> int:
        """Reset to defaults, then apply the storage file; return how many values it set.

        A missing file means factory defaults. A corrupt or foreign file, and any entry
        that is unknown or out of range, is reported on stderr and skipped.
        """
        self.reset()
        if self.path is None or not self.path.exists():
            return 0
        stored = self._read_file(self.path)
        applied = 0
        for name, value in stored.items():
            try:
                self.set(name, value)
                applied += 1
            except ParamError as exc:
                _warn(f"{self.path}: ignoring stored value: {exc}")
        return applied

    @staticmethod
    def _read_file(path: Path) -> dict[str, Any]:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            _warn(f"cannot read {path}: {exc}; using defaults")
            return {}
        head, _, body = raw.partition(b"\n")
        parts = head.split(b" ")
        if len(parts) != 2 or parts[0] != MAGIC:
            _warn(f"{path} is not a parameter file (no {MAGIC.decode()} header); using defaults")
            return {}
        if parts[1] != str(VERSION).encode():
            _warn(f"{path}: format version {parts[1]!r} is not {VERSION}; using defaults")
            return {}
        try:
            stored = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            _warn(f"{path} is corrupt ({exc}); using defaults")
            return {}
        if not isinstance(stored, dict):
            _warn(f"{path} is corrupt (body is not an object); using defaults")
            return {}
        return stored
