"""MAVLink telemetry logs (`.tlog`), the format ground stations and pymavlink read.

A .tlog is a plain concatenation of records, each an 8-byte big-endian unsigned count
of microseconds since the UNIX epoch followed by one complete MAVLink frame, exactly as
it came over the wire (v1 or v2, signed or not). MAVProxy, Mission Planner, QGroundControl
and pymavlink's tools (`mavlogdump.py`, `mavgraph.py`, ...) open it as is.

The harness stamps received bytes with `time.monotonic_ns()`; `ClockMap` turns those
stamps into UNIX time with one offset taken when the recording starts, so the records
keep the true spacing of arrival even if the wall clock is stepped during a run.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from hil.mavlink.framing import arrival_ns

_STAMP = struct.Struct(">Q")


class ClockMap:
    """Monotonic nanoseconds to UNIX microseconds, with the offset read once."""

    def __init__(self) -> None:
        mono = time.monotonic_ns()
        self.unix_minus_monotonic_ns = time.time_ns() - mono

    def unix_us(self, t_monotonic_ns: int) -> int:
        return (t_monotonic_ns + self.unix_minus_monotonic_ns) // 1000


class TlogWriter:
    """Writes records to a .tlog file; timestamps are UNIX microseconds."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self.records = 0

    def write(self, t_unix_us: int, frame: bytes) -> None:
        self._f.write(_STAMP.pack(max(0, int(t_unix_us))) + bytes(frame))
        self.records += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TlogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_bytes(msg: Any) -> bytes | None:
    """The wire frame of a received message, or None when it has none.

    pymavlink messages keep the frame they were decoded from (`get_msgbuf()`). The
    closed loop's hot messages (`hil.mavlink.framing`) are decoded without pymavlink and
    keep only their fields; their frame is rebuilt from the fields with the same codec
    (same sequence number, sender and trailing-zero truncation, so the same bytes).
    """
    getter = getattr(msg, "get_msgbuf", None)
    if getter is not None:
        buf = getter()
        return bytes(buf) if buf else None
    codec = _hot_codecs().get(msg.get_msgId())
    if codec is None:
        return None
    values: list[Any] = []
    for name, length in zip(codec.msg_class.ordered_fieldnames, codec.msg_class.array_lengths, strict=True):
        value = getattr(msg, name)
        if length:
            values.extend(value)
        else:
            values.append(value)
    return codec.pack(msg.get_seq(), msg.get_srcSystem(), msg.get_srcComponent(), *values)


_HOT: dict[int, Any] = {}


def _hot_codecs() -> dict[int, Any]:
    if not _HOT:
        from hil.mavlink import framing

        for codec in vars(framing).values():
            if isinstance(codec, framing.HotCodec):
                _HOT[codec.msg_id] = codec
    return _HOT


def write_tlog(path: str | Path, messages: Iterable[Any], clock: ClockMap) -> int:
    """Write the received `messages` (each stamped `_t_ns` on arrival) to `path`.

    Messages without an arrival stamp or a frame are left out. Returns the record count.
    """
    with TlogWriter(path) as out:
        for msg in messages:
            t_ns = arrival_ns(msg)
            if t_ns is None:
                continue
            frame = frame_bytes(msg)
            if frame:
                out.write(clock.unix_us(t_ns), frame)
        return out.records
