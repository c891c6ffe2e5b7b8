"""Children that die with the harness, however the harness dies.

A board process or a SITL the harness started must not outlive it: an orphan keeps
its USB serial in the registry (every later command is told "already served by pid
N") and may burn a core for as long as nobody notices. Three independent layers,
because no single one covers every death:

* the lifeline: a pipe whose write end only the harness holds. The kernel closes it
  when the harness ends, SIGKILL included, from whichever thread it was started; a
  child of ours (the virtual board) watches the read end and stops on end of file;
* a parent-death signal (``prctl(PR_SET_PDEATHSIG)``) set between fork and exec, which
  also reaches executables we cannot change (Betaflight SITL). Linux sends it when the
  *thread* that forked the child ends, so it is set only for children forked from the
  main thread or from a thread that lives exactly as long as the child (the SITL
  supervisor);
* the guard: one small process per harness process (``python -m hil.children guard PID``,
  in its own session so a signal to the harness's process group spares it) that is
  told which process groups and network namespaces the harness owns, and ends or
  removes them when its stdin, the harness's end of a pipe, reaches end of file.

The process helpers at the end (start time, parent, ending a group) let a later
harness recognise a board left by an older crash as an orphan and replace it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


# -- the lifeline --------------------------------------------------------------------------
_lifeline: tuple[int, int, int] | None = None  # (owner pid, read fd, write fd)
_lifeline_lock = threading.Lock()


def lifeline_fd() -> int:
    """The read end of this process's lifeline, for a child to inherit (``pass_fds``).

    The write end stays open, never written, in this process alone (both ends are
    close-on-exec here), so the child reads end of file exactly when this process
    has ended. A forked copy of the harness gets a lifeline of its own.
    """
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None or _lifeline[0] != os.getpid():
            read_fd, write_fd = os.pipe()
            _lifeline = (os.getpid(), read_fd, write_fd)
        return _lifeline[1]


def watch_lifeline(fd: int, on_cut: Callable[[], None]) -> threading.Thread:
    """Call `on_cut()` (from a daemon thread) once every write end of `fd` is closed."""

    def wait() -> None:
        try:
            while os.read(fd, 64):
                pass  # the harness never writes; a stray byte is not an end
        except OSError:
            pass
        on_cut()

    thread = threading.Thread(target=wait, name="hil-lifeline", daemon=True)
    thread.start()
    return thread


# -- the parent-death signal ---------------------------------------------------------------
def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Loaded here, in the parent: the function run between fork and exec only calls it.
_prctl = _load_prctl()


def parent_death_preexec(
    signum: int = signal.SIGTERM, *, long_lived_thread: bool = False
) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to send `signum` to the child when we die.

    None where it cannot be relied on: off Linux, or when called from a thread that
    may end before the child (pass ``long_lived_thread=True`` from a thread that lives
    as long as the child). Survives ``exec`` of ordinary (not set-user-ID) programs,
    so it reaches a SITL behind ``ip netns exec`` and ``stdbuf``.
    """
    prctl = _prctl
    if prctl is None:
        return None
    if not long_lived_thread and threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


# -- the guard -----------------------------------------------------------------------------
class _Guard:
    """The harness's end of its guard process: registrations as lines on its stdin."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._failed = False

    def _send(self, line: str, *, start: bool = True) -> None:
        with self._lock:
            if self._owner != os.getpid():  # never write to a guard a parent started
                self._proc, self._owner, self._failed = None, os.getpid(), False
            if self._failed:
                return
            if self._proc is None or self._proc.poll() is not None:
                if not start:
                    return
                self._proc = self._start()
                if self._proc is None:
                    return
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                log.warning(
                    "the child guard stopped listening (%s); children rely on their lifeline", exc
                )
                self._proc = None

    def _start(self) -> subprocess.Popen[bytes] | None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "hil.children", "guard", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._failed = True
            log.warning("cannot start the child guard (%s); children rely on their lifeline", exc)
            return None

    def watch(self, pid: int) -> None:
        self._send(f"group {pid} {process_start_time(pid) or 0}")

    def forget(self, pid: int) -> None:
        self._send(f"ungroup {pid}", start=False)

    def watch_netns(self, name: str) -> None:
        self._send(f"netns {name}")

    def forget_netns(self, name: str) -> None:
        self._send(f"unnetns {name}", start=False)

    @property
    def pid(self) -> int | None:
        """The guard's pid once it runs (for tests)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None


#: This process's guard, started on the first registration.
guard = _Guard()


def _guard_main(stdin: object = None, grace: float = 3.0) -> int:
    """The guard process: remember what the harness registers; at end of file, end it all."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # a terminal's hang-up or Ctrl-C is the harness's
    groups: dict[int, int] = {}
    namespaces: set[str] = set()
    stream = stdin if stdin is not None else sys.stdin.buffer
    for raw in stream:  # type: ignore[attr-defined]
        words = raw.decode("ascii", "replace").split()
        with contextlib.suppress(ValueError, IndexError):
            if words[0] == "group":
                groups[int(words[1])] = int(words[2])
            elif words[0] == "ungroup":
                groups.pop(int(words[1]), None)
            elif words[0] == "netns":
                namespaces.add(words[1])
            elif words[0] == "unnetns":
                namespaces.discard(words[1])
    end_process_groups(groups, grace)
    for name in sorted(namespaces):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=10, check=False
            )
    return 0


# -- processes -----------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3, the state, comes first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot: with the pid, it names one process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def parent_of(pid: int) -> int | None:
    """The current parent of `pid` (1 or a subreaper once its parent has died), or None."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None


def running(pid: int, start_time: int | None = None) -> bool:
    """True while `pid` runs (not a zombie) and, when given, started at `start_time`."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return not start_time or (len(fields) > 19 and int(fields[19]) == start_time)


def command_line(pid: int) -> list[str]:
    """The arguments `pid` was started with ([] when it is gone or hidden)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def orphaned(pid: int, started_by: int | None) -> bool:
    """True when `pid` no longer has the parent that started it.

    With `started_by` (recorded when it started) the test is exact: a dead parent's
    children are handed to pid 1 or a subreaper. Without it (a process from an older
    harness, or one whose parent was already gone when it recorded it), a parent of 1
    or one that is not a Python process (every harness is) counts as orphaned.
    """
    parent = parent_of(pid)
    if parent is None:
        return False
    if started_by and started_by > 1:
        return parent != started_by
    if parent <= 1:
        return True
    argv = command_line(parent)
    return not argv or "python" not in Path(argv[0]).name


def end_process_groups(groups: dict[int, int], grace: float = 3.0) -> list[int]:
    """SIGTERM each group whose leader (pid -> start time) still runs, SIGKILL it after
    `grace` s; returns the leaders that had to be ended. A leader that has already gone
    is skipped, so a recycled pid is never signalled."""
    ended = [pid for pid, start in groups.items() if running(pid, start)]
    for pid in ended:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(running(pid, groups[pid]) for pid in ended):
        time.sleep(0.05)
    for pid in ended:
        if running(pid, groups[pid]):
            _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(running(pid, groups[pid]) for pid in ended):
        time.sleep(0.05)
    return ended


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def main(argv: list[str] | None = None) -> int:
    """``python -m hil.children guard HARNESS_PID``: run as that harness's guard (the pid
    is there for `ps` readers: the guard learns everything else on its stdin)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "guard" or not args[1].isdigit():
        print(
            "usage: python -m hil.children guard HARNESS_PID  (started by the harness)",
            file=sys.stderr,
        )
        return 2
    return _guard_main()


if __name__ == "__main__":
    sys.exit(main())
