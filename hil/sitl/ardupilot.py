"""ArduPilot SITL as a process the harness starts, and the serial ports it wires to it.

The user builds ``arducopter`` (SITL) from ArduPilot's public source; the harness runs
that executable in a scratch directory of its own with:

- ``--model JSON:127.0.0.1`` and ``--sim-port-out``: the harness is its physics
  (`hil.sim.ardupilot_link`);
- ``--serial3=uart:<pty>`` (our u-blox emulator) and ``--serial4=uart:<pty>`` (our CRSF
  receiver): each is one side of a `PtyBridge`, whose other side the harness opens
  like any serial port, so ArduPilot's own GPS driver (with its auto-configuration) and
  its own RC parser read our bytes;
- ``--defaults`` the harness's defaults file (written in the run directory) followed by
  the user's, ``-w`` (every start from those defaults: a test's parameter changes do
  not outlive it) and ``--home`` at `hil.geo.HOME`, so the barometer and compass SITL
  computes from our pose agree with our GPS;
- MAVLink on SERIAL0, its TCP port ``5760 + 10 * instance`` (``-I``).

SITL argument names and port numbers: ArduPilot ``libraries/AP_HAL_SITL/SITL_cmdline.cpp``.
The process dies with the harness (`hil.children`: parent-death signal and the guard).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path

from hil import children
from hil.errors import BoardNotAnswering, ConfigError, HilError
from hil.geo import HOME
from hil.timeout import Deadline

log = logging.getLogger(__name__)

#: SITL's TCP port for SERIAL0 with ``-I 0`` (SITL_cmdline.cpp BASE_PORT), and its step.
MAVLINK_BASE_PORT = 5760
#: Where SITL sends its servo packets with ``-I 0`` (SIM_OUT_PORT).
JSON_BASE_PORT = 9002
PORT_STEP = 10


def _raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    try:
        tty.setraw(slave, termios.TCSANOW)
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        path = os.ttyname(slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave, path


class PtyBridge:
    """Two raw ptys joined back to back: what one side's slave writes, the other's reads.

    ``firmware_path`` goes to SITL (``--serialN=uart:<path>``), ``harness_path`` is
    what the harness opens (`hil.links.serial_link`). A thread copies between the two
    masters; both slaves stay open here too, so either side may close and reopen its
    path without the other reading end-of-file. Bytes that do not fit a pty's buffer
    wait (at most ``MAX_PENDING`` bytes per direction, then the oldest are dropped, as
    a UART overrun would).
    """

    MAX_PENDING = 1 << 16

    def __init__(self, name: str) -> None:
        self.name = name
        self._fds: list[int] = []
        a = _raw_pty()
        self._fds += [a[0], a[1]]
        try:
            b = _raw_pty()
        except BaseException:
            self.close()
            raise
        self._fds += [b[0], b[1]]
        self._a, self._b = a[0], b[0]
        self.firmware_path = a[2]
        self.harness_path = b[2]
        self.copied = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pty-bridge-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = {self._a: bytearray(), self._b: bytearray()}  # bytes waiting to go *to* that master
        other = {self._a: self._b, self._b: self._a}
        while not self._stop.is_set():
            writers = [fd for fd, buf in pending.items() if buf]
            try:
                readable, writable, _ = select.select([self._a, self._b], writers, [], 0.2)
            except (OSError, ValueError):
                return
            for fd in readable:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        continue
                    return
                buf = pending[other[fd]]
                buf += data
                if len(buf) > self.MAX_PENDING:
                    cut = len(buf) - self.MAX_PENDING
                    del buf[:cut]
                    self.dropped += cut
            for fd in writable + [fd for fd in pending if pending[fd] and fd not in writable]:
                buf = pending[fd]
                if not buf:
                    continue
                try:
                    n = os.write(fd, buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EAGAIN):
                        continue
                    return
                del buf[:n]
                self.copied += n

    def close(self) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []


def find_executable(path: Path | None) -> Path:
    """The user's ``arducopter`` SITL build; ConfigError says what is wrong with it."""
    if path is None:
        raise ConfigError(
            "no ArduPilot SITL executable: give the board `executable = \"path/to/arducopter\"` or set "
            "HIL_ARDUPILOT_SITL (build it from ArduPilot's source: ./waf configure --board sitl && ./waf copter)"
        )
    if not path.is_file():
        raise ConfigError(f"ArduPilot SITL executable {path} does not exist")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"ArduPilot SITL executable {path} is not executable")
    return path


class ArduPilotSitl:
    """One ArduPilot SITL process in ``run_dir``; see the module docstring."""

    def __init__(
        self,
        run_dir: Path,
        executable: Path,
        *,
        defaults: list[Path],
        instance: int = 0,
        speedup: float = 100.0,
        serials: dict[int, str] | None = None,
        model: str = "JSON:127.0.0.1",
    ) -> None:
        self.run_dir = run_dir
        #: SITL's --model: "JSON:127.0.0.1" (the harness is its physics) or one of its
        #: built-in ones ("quad": hil bench's comparison, hil.bench_ardupilot).
        self.model = model
        self.executable = executable
        self.defaults = list(defaults)
        self.instance = int(instance)
        self.speedup = float(speedup)
        self.serials = dict(serials or {})
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def mavlink_port(self) -> int:
        return MAVLINK_BASE_PORT + PORT_STEP * self.instance

    @property
    def json_port(self) -> int:
        return JSON_BASE_PORT + PORT_STEP * self.instance

    @property
    def mavlink_url(self) -> str:
        return f"socket://127.0.0.1:{self.mavlink_port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "sitl.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        home = f"{HOME.lat_deg},{HOME.lon_deg},{HOME.alt_m},0"
        argv = [
            str(self.executable),
            "--model", self.model,
            *(("--sim-port-out", str(self.json_port)) if self.model.startswith("JSON") else ()),
            "-I", str(self.instance),
            "--home", home,
            "--speedup", f"{self.speedup:g}",
            "-w",
        ]
        if self.defaults:
            argv += ["--defaults", ",".join(str(p) for p in self.defaults)]
        for number, device in sorted(self.serials.items()):
            argv.append(f"--serial{number}={device}")
        return argv

    def start(self) -> None:
        if self.alive:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process's life)
        argv = self.argv()
        self._log.write(f"--- start {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        self._log.flush()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=children.parent_death_preexec(signal.SIGKILL),
            )
        except OSError as exc:
            self._close_log()
            raise HilError(f"cannot start ArduPilot SITL {self.executable}: {exc}") from None
        children.guard.watch(self.proc.pid)

    def wait_mavlink_port(self, timeout: float, *, stepping: threading.Event | None = None) -> None:
        """Wait until SITL accepts on its MAVLink TCP port (it opens it early in its boot)."""
        deadline = Deadline(timeout)
        last = "nothing listening"
        while not deadline.expired:
            if self.proc is not None and self.proc.poll() is not None:
                raise BoardNotAnswering(
                    f"ArduPilot SITL exited with code {self.proc.returncode} during start; see {self.log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.mavlink_port), timeout=0.5):
                    return
            except OSError as exc:
                last = exc.strerror or str(exc)
            time.sleep(0.1)
        raise BoardNotAnswering(
            f"ArduPilot SITL did not open its MAVLink port {self.mavlink_port} within {timeout:.0f} s "
            f"({last}); see {self.log_path}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except OSError:
                    proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        proc.kill()
                    proc.wait(timeout)
            children.guard.forget(proc.pid)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


__all__ = ["ArduPilotSitl", "PtyBridge", "find_executable"]
