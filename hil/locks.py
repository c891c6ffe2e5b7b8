"""One process owns a board at a time: an OS file lock keyed by the board's USB serial.

The lock is `flock` on a file, so the kernel releases it when the holder exits, even
after a crash or SIGKILL. The file names the holder's pid so a second process can say
who has the board. A second process waits up to `wait` seconds, then fails.

The lock directory is one per host, shared by every user (two people on one bench host
must exclude each other): `/run/lock/hil` where /run/lock is the usual world-writable
sticky directory, else `hil-locks` under the system temp dir; `$HIL_LOCK_DIR` overrides
both. The directory is made mode 1777 (anyone creates, only the owner removes), lock
files 0666 (anyone locks and writes the holder's pid). A world-writable sticky directory
has two traps, both avoided: a name there may be a symlink someone planted (files are
opened with O_NOFOLLOW, the directory checked with lstat), and with the kernel's
fs.protected_regular an O_CREAT open of another user's file there is refused, so an
existing lock file is opened without O_CREAT and only a missing one is created
(O_EXCL). Boards on other hosts are excluded through labgrid's coordinator
(hil.labgrid), after this host's lock is held.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
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
    """`$HIL_LOCK_DIR`, else the host-wide directory every user of this host shares:
    /run/lock/hil when /run/lock is a sticky world-writable directory, else
    <temp dir>/hil-locks."""
    env = os.environ.get("HIL_LOCK_DIR")
    if env:
        return Path(env)
    run_lock = Path("/run/lock")
    try:
        st = os.stat(run_lock)
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o1002 == 0o1002:
            return run_lock / "hil"
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "hil-locks"


def ensure_lock_dir(path: Path) -> None:
    """Make `path` a lock directory every user can use (mode 1777), or check that the
    one there is a real directory we can create files in; HilError with the fix when
    it is not."""
    try:
        os.mkdir(path, 0o1777)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o1777)
    except OSError as exc:
        raise HilError(f"cannot create the lock directory {path}: {exc.strerror}; set HIL_LOCK_DIR") from None
    else:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o1777)  # mkdir's mode went through the umask
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise HilError(f"lock directory {path}: {exc.strerror}; set HIL_LOCK_DIR") from None
    if not stat.S_ISDIR(st.st_mode):
        raise HilError(
            f"lock directory {path} is not a directory (a symlink or file someone left there); "
            "remove it, or set HIL_LOCK_DIR"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        owner = _user_name(st.st_uid)
        raise HilError(
            f"lock directory {path} belongs to {owner} with mode {stat.S_IMODE(st.st_mode):o}: other users "
            f"cannot lock boards there; {owner} (or root) runs chmod 1777 {path}, or set HIL_LOCK_DIR"
        )


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def open_lock_file(path: Path) -> int:
    """A descriptor of the lock file `path` for flock: an existing one opened without
    O_CREAT (fs.protected_regular), a missing one created 0666 with O_EXCL; never
    through a symlink. Read-write where we may write it, else read-only (the lock
    works, the holder's pid is not written)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    for _ in range(5):
        for flags in (os.O_RDWR, os.O_RDONLY):
            try:
                return os.open(path, flags | nofollow)
            except FileNotFoundError:
                break
            except PermissionError:
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise HilError(
                        f"lock file {path} is a symlink (planted in a shared directory?); it is not "
                        "followed: its owner or root removes it"
                    ) from None
                raise
        else:
            raise HilError(f"lock file {path} cannot be opened (permissions); its owner or root removes it")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o666)
        except FileExistsError:
            continue  # another process made it just now: open theirs
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # through the umask: every user must be able to lock it
        return fd
    raise HilError(f"lock file {path} keeps appearing and vanishing; is something removing it?")


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
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
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
        ensure_lock_dir(self.lock_dir)
        fd = open_lock_file(self.path)
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
        with contextlib.suppress(OSError):  # a file opened read-only holds no pid
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                with contextlib.suppress(OSError):
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
