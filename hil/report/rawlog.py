"""Timestamped raw byte logs of a link: every chunk read or written, as it crossed the port.

A link (`hil.links.serial_link.SerialLink`, `hil.links.udp_link.UdpLink`) calls
``raw_log.record(t_ns, direction, data)`` for each chunk when its ``raw_log`` attribute
is set; a `RawLog` is such an object. Recording packs the chunk behind a 13-byte header
and appends it to one bytearray: a single C-level extend, atomic under the GIL, so the
reading and the writing thread need no lock, and no Python object is kept per chunk, so
the garbage collector has nothing more to scan. The text is formatted when the log is
written out (at `close()`, or when `spill_at` bytes have piled up).

File format (text, UTF-8, one chunk per line)::

    # hil raw link log 1
    # link: mavlink
    # url: /dev/pts/7
    # clock: monotonic_ns 1234567890123 = unix_ns 1718000000123456789
    1234567890456 rx fd1c000012...
    1234567890789 tx fd3400002a...

Lines starting with ``#`` are header lines (``key: value``). Every other line is
``<t_ns> <dir> <hex>``: ``t_ns`` the host's ``time.monotonic_ns()`` when the chunk
arrived (``rx``) or was handed to the OS (``tx``); ``hex`` the bytes, lower-case, no
separators (empty for an empty chunk). The ``clock`` line pairs one monotonic reading
with the UNIX time taken at the same moment, so ``unix_ns = t_ns + (unix - monotonic)``.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FORMAT_LINE = "# hil raw link log 1"
DIRECTIONS = ("rx", "tx")
_HEAD = struct.Struct("<qBI")  # t_ns, direction (0 rx, 1 tx), length; in memory only
_CODE = {"rx": 0, "tx": 1}


@dataclass(frozen=True)
class RawChunk:
    """One chunk of a raw log."""

    t_ns: int
    direction: str
    data: bytes


@dataclass
class RawLogFile:
    """A raw log read back: its header fields and its chunks in file order."""

    header: dict[str, str] = field(default_factory=dict)
    chunks: list[RawChunk] = field(default_factory=list)

    @property
    def unix_minus_monotonic_ns(self) -> int | None:
        """The offset from the file's monotonic stamps to UNIX time, when the header has it."""
        clock = self.header.get("clock", "").split()
        try:
            return int(clock[4]) - int(clock[1])
        except (IndexError, ValueError):
            return None

    def bytes(self, direction: str) -> bytes:
        """Everything that went one way, concatenated."""
        return b"".join(c.data for c in self.chunks if c.direction == direction)


class RawLog:
    """Collects the chunks of one link and writes them to `path` in the format above."""

    def __init__(self, path: str | Path, name: str, url: str = "", *, spill_at: int = 8 << 20) -> None:
        self.path = Path(path)
        self.name = name
        self.url = url
        self.spill_at = max(1, int(spill_at))
        self.chunks = 0
        self.bytes_rx = 0
        self.bytes_tx = 0
        self._pending = bytearray()
        self._write_lock = threading.Lock()
        self._file = None
        self._closed = False

    def record(self, t_ns: int, direction: str, data: bytes) -> None:
        """The link's tap: remember one chunk (called from the link's reading or writing thread)."""
        if self._closed:
            return
        pending = self._pending
        pending += _HEAD.pack(t_ns, _CODE[direction], len(data)) + data
        if len(pending) >= self.spill_at:
            with self._write_lock:
                self._spill()

    def _spill(self) -> None:
        """Write out the chunks pending now, oldest first (the write lock is held)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            mono, unix = time.monotonic_ns(), time.time_ns()
            self._file.write(
                f"{FORMAT_LINE}\n# link: {self.name}\n# url: {self.url}\n"
                f"# clock: monotonic_ns {mono} = unix_ns {unix}\n"
            )
        # Records are appended whole, so the first n bytes hold whole records; what is
        # appended meanwhile stays for the next spill.
        n = len(self._pending)
        raw = bytes(self._pending[:n])
        del self._pending[:n]
        lines = []
        i, head, size = 0, _HEAD.unpack_from, _HEAD.size
        while i < n:
            t_ns, code, length = head(raw, i)
            i += size
            data = raw[i : i + length]
            i += length
            lines.append(f"{t_ns} {DIRECTIONS[code]} {data.hex()}\n")
            if code == 0:
                self.bytes_rx += length
            else:
                self.bytes_tx += length
        self.chunks += len(lines)
        self._file.write("".join(lines))

    def close(self) -> Path:
        """Write what is left and close the file (it is written even when no chunk came).
        Chunks recorded after this are ignored."""
        with self._write_lock:
            if self._file is None or not self._file.closed:
                self._closed = True
                self._spill()
                self._file.close()
        return self.path

    def __repr__(self) -> str:
        return f"RawLog({self.name!r}, {str(self.path)!r})"


def read_rawlog(path: str | Path) -> RawLogFile:
    """Parse a raw log; a malformed line raises ValueError naming the line."""
    out = RawLogFile()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("#"):
                key, sep, value = line[1:].strip().partition(":")
                if sep:
                    out.header[key.strip()] = value.strip()
                continue
            parts = line.split(" ")
            if len(parts) == 2:
                parts.append("")
            if len(parts) != 3 or parts[1] not in DIRECTIONS:
                raise ValueError(f"{path}:{number}: expected '<t_ns> rx|tx <hex>', got {line[:60]!r}")
            try:
                out.chunks.append(RawChunk(int(parts[0]), parts[1], bytes.fromhex(parts[2])))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return out
