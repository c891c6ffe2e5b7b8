"""The virtual rig registry: one JSON file per virtual board, naming its current port.

Virtual boards have no USB descriptors, so they announce themselves here instead (see
docs/architecture.md, "The virtual rig registry"). Files are written atomically (temp
file + rename) so a reader never sees half an entry, and entries whose process has died
are skipped, so a crashed board does not leave a port that leads nowhere.

An entry a board writes about itself also records when its process started and which
process started it (`own_identity`): a recycled pid then does not make a dead board look
alive, and a board whose harness has gone can be told from one a live harness is using
(`hil.children.orphaned`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from hil.children import process_start_time, running

_SERIAL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def default_registry_dir() -> Path:
    """`$HIL_REGISTRY` when set, else a per-user directory under the system temp dir."""
    env = os.environ.get("HIL_REGISTRY")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"hil-registry-{os.getuid()}"


def _entry_path(directory: Path | str, usb_serial: str) -> Path:
    if not _SERIAL_RE.match(usb_serial):
        raise ValueError(
            f"USB serial {usb_serial!r} cannot name a registry file: use 1-64 characters "
            "from letters, digits, '.', '_' and '-'"
        )
    return Path(directory) / f"{usb_serial}.json"


def write_entry(directory: Path | str, entry: dict[str, Any]) -> Path:
    """Write (or replace) the entry of `entry["usb_serial"]` atomically; return its path."""
    path = _entry_path(directory, str(entry["usb_serial"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entry, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def own_identity() -> dict[str, Any]:
    """The fields by which an entry names the process writing it: pid, start time, parent."""
    return {
        "process_id": os.getpid(),
        "process_start": process_start_time(os.getpid()),
        "parent_pid": os.getppid(),
    }


def remove_entry(directory: Path | str, usb_serial: str, *, process_id: int | None = None) -> bool:
    """Remove the entry of `usb_serial`; with `process_id`, only if that process owns it.

    Returns True when a file was removed. The owner check keeps a stopping board from
    deleting the entry of a newer board with the same serial.
    """
    path = _entry_path(directory, usb_serial)
    if process_id is not None:
        entry = _load(path)
        if entry is None or entry.get("process_id") != process_id:
            return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def process_alive(pid: int) -> bool:
    """True when `pid` names a running (not zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A crashed board that its parent has not reaped yet is a zombie: still "there"
    # for kill(0), but it serves nothing.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"] and state != ["X"]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("usb_serial"), str):
        return None
    return entry


def _live(entry: dict[str, Any] | None) -> bool:
    if entry is None or "port" not in entry:
        return False
    return entry_process_alive(entry)


def entry_process_alive(entry: dict[str, Any]) -> bool:
    """True while the process that wrote `entry` runs (the same process, not a recycled pid)."""
    pid = entry.get("process_id")
    if not isinstance(pid, int) or not process_alive(pid):
        return False
    start = entry.get("process_start")
    return not isinstance(start, int) or running(pid, start)


def read_entries(directory: Path | str) -> list[dict[str, Any]]:
    """Every readable entry whose process is alive, sorted by USB serial."""
    root = Path(directory)
    if not root.is_dir():
        return []
    entries = [_load(path) for path in sorted(root.glob("*.json"))]
    return [entry for entry in entries if entry is not None and _live(entry)]


def find_entry(directory: Path | str, usb_serial: str) -> dict[str, Any] | None:
    """The live entry of `usb_serial`, or None."""
    entry = _load(_entry_path(directory, usb_serial))
    if not _live(entry) or entry["usb_serial"] != usb_serial:
        return None
    return entry
