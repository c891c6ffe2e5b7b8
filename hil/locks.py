"""One process owns a board at a time: an OS file lock keyed by the board's USB serial.

The lock is `flock` on a file, so the kernel releases it when the holder exits, even
after a crash or SIGKILL. The file names the holder's pid so a second process can say
who has the board. A second process waits up to `wait` seconds, then fails.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hil.errors import EXIT_BOARD, HilError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class BoardBusy(HilError):
    """Another process holds the board."""

    exit_code = EXIT_BOARD


def default_lock_dir() -> Path:
    """`$HIL_LOCK_DIR`, else a per-user directory under the system temp dir."""
    env = os.environ.get("HIL_LOCK_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"hil-locks-{os.getuid()}"


def lock_path(usb_serial: str, lock_dir: Path | str | None = None) -> Path:
    """The lock file of `usb_serial` in `lock_dir` (default: the machine-wide directory)."""
    root = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    return root / f"{_SAFE.sub('_', usb_serial) or 'unnamed'}.lock"


def lock_holder(usb_serial: str, lock_dir: Path | str | None = None) -> int | None:
    """The pid holding the board's lock now, or None when nobody does.

    The kernel, not the file's text, says whether it is held: a holder that died released
    it. When held, the pid comes from the file (0 if the holder did not write it yet).
    """
    path = lock_path(usb_serial, lock_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class BoardLock:
    """`with BoardLock("SN123", wait=30): ...` holds the board for the block."""

    def __init__(self, usb_serial: str, lock_dir: Path | str | None = None, *, wait: float = 0.0) -> None:
        self.usb_serial = usb_serial
        self.lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
        self.wait = wait
        self.path = lock_path(usb_serial, self.lock_dir)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> BoardLock:
        if self._fd is not None:
            return self
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, self.wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise BoardBusy(
                        f"board {self.usb_serial} is busy, held by {holder} "
                        f"(waited {self.wait:.0f} s; lock file {self.path})"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> BoardLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    if not text.isdigit():
        return "another process"
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    return f"pid {pid}" + (f" ({cmdline[:80]})" if cmdline else "")


def claim_first_free(
    boards: Sequence[tuple[str, Path | str | None]], *, wait: float = 0.0, poll: float = 0.1
) -> tuple[int, BoardLock]:
    """Lock the first free board of `boards` ((lock key, lock dir) each, in the rig's
    order): every one is tried at once, and while all are held they are tried again in
    turn until `wait` s have passed. Returns (its index, the held lock); BoardBusy names
    every holder when none came free. Several workers on one rig (`pytest -n`, two `hil
    run` at once) so each get a board of their own, free ones first."""
    if not boards:
        raise ValueError("no boards to claim")
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        busy: list[str] = []
        for index, (key, lock_dir) in enumerate(boards):
            try:
                return index, BoardLock(key, lock_dir, wait=0.0).acquire()
            except BoardBusy as exc:
                busy.append(str(exc))
        if time.monotonic() >= deadline:
            raise BoardBusy(f"every board of the rig is busy (waited {wait:.0f} s): " + "; ".join(busy))
        time.sleep(poll)
