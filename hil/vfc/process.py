"""The harness's handle on one virtual board process: start it, find its port, stop it.

The board runs as `python -m hil.vfc` in its own process group (a Ctrl-C at the
terminal does not kill it under the harness's feet; `stop()` ends it) and announces
its pty in the registry; the port is read from there each time because it changes at
every reboot.

It never outlives the harness (`hil.children`): it watches the harness's lifeline, is
sent SIGTERM by the kernel when the harness dies, and is known to the harness's guard.
A board left running by an older crash is recognised at the next start (its harness is
gone and nobody holds its lock) and replaced instead of being reported as the holder.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import hil
from hil import children
from hil.errors import BoardNotAnswering, PortNotFound
from hil.links import registry
from hil.locks import lock_holder
from hil.mavlink.dialect import VFC_BOARD_ID
from hil.timeout import Deadline

_PROJECT_ROOT = Path(hil.__file__).resolve().parent.parent
log = logging.getLogger(__name__)


class VirtualBoardProcess:
    """One `python -m hil.vfc` process, found again by its USB serial number."""

    def __init__(
        self,
        usb_serial: str,
        storage_path: Path | str,
        registry_dir: Path | str,
        board_id: int = VFC_BOARD_ID,
        firmware_version: str = "1.0.0",
        log_path: Path | str | None = None,
        name: str | None = None,
        flash_path: Path | str | None = None,
        boot0: bool = False,
        sector_erase_s: float | None = None,
        boot_delay_s: float | None = None,
        uarts: dict[str, str] | None = None,
        lock_dir: Path | str | None = None,
        personality: str | None = None,
        sim_tcp: str | None = None,
    ) -> None:
        #: Whose firmware the board presents ("px4"; None: ArduCopter's) and, for PX4's,
        #: the simulator port it connects to ("127.0.0.1:4560").
        self.personality = personality
        self.sim_tcp = sim_tcp
        self.usb_serial = usb_serial
        #: Receiver UARTs wired to the harness, name -> protocol (gps: ubx/nmea, rc: crsf/sbus).
        self.uarts = dict(uarts or {})
        #: The board's flash file; None runs the built-in firmware (no bootloader).
        self.flash_path = Path(flash_path) if flash_path is not None else None
        self.boot0 = boot0
        self.sector_erase_s = sector_erase_s
        self.boot_delay_s = boot_delay_s
        self.storage_path = Path(storage_path)
        self.registry_dir = Path(registry_dir)
        #: Where the board's ownership lock lives: a rig keeps it next to its registry.
        self.lock_dir = Path(lock_dir) if lock_dir is not None else self.registry_dir.parent / "locks"
        self.board_id = board_id
        self.firmware_version = firmware_version
        self.name = name
        self.log_path = (
            Path(log_path)
            if log_path is not None
            else self.storage_path.with_name(f"{usb_serial}.log")
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The command line that starts the board."""
        argv = [
            sys.executable,
            "-m",
            "hil.vfc",
            "--usb-serial",
            self.usb_serial,
            "--storage",
            str(self.storage_path),
            "--registry",
            str(self.registry_dir),
            "--board-id",
            str(self.board_id),
            "--firmware-version",
            self.firmware_version,
        ]
        if self.name:
            argv += ["--name", self.name]
        if self.flash_path is not None:
            argv += ["--flash", str(self.flash_path)]
        if self.boot0:
            argv.append("--boot0")
        if self.sector_erase_s is not None:
            argv += ["--sector-erase-s", repr(float(self.sector_erase_s))]
        if self.boot_delay_s is not None:
            argv += ["--boot-delay-s", repr(float(self.boot_delay_s))]
        for name, protocol in self.uarts.items():
            argv += ["--uart", f"{name}={protocol}"]
        if self.personality:
            argv += ["--personality", self.personality]
        if self.sim_tcp:
            argv += ["--sim-tcp", self.sim_tcp]
        return argv

    def start(self, timeout: float = 10.0) -> VirtualBoardProcess:
        """Spawn the board and wait (bounded) until it announces itself, in any state."""
        if self.alive:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # closed in stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        self._replace_stale()
        lifeline = children.lifeline_fd()
        self._proc = subprocess.Popen(
            [*self.command(), "--lifeline", str(lifeline)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            pass_fds=(lifeline,),
            preexec_fn=children.parent_death_preexec(signal.SIGTERM),
        )
        children.guard.watch(self._proc.pid)
        deadline = Deadline(timeout)
        while True:
            entry = self._own_entry()
            if entry is not None and entry.get("process_id") == self._proc.pid:
                return self
            code = self._proc.poll()
            if code is not None or deadline.expired:
                self.stop()
                what = (
                    f"exited with code {code}"
                    if code is not None
                    else f"did not announce its port within {timeout:.1f} s (killed)"
                )
                raise BoardNotAnswering(
                    f"virtual board {self.usb_serial} {what}; registry {self.registry_dir}; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _replace_stale(self) -> None:
        """End a board with our serial that an older, dead harness left running.

        Only a `python -m hil.vfc` process serving this serial whose harness has gone
        (`children.orphaned`) is ended, and only while its lock is free or ours: a board
        a live harness started, or one whose lock another process holds, is left alone
        (the new board then says who serves the serial).
        """
        entry = self._own_entry()
        if entry is None:
            return
        pid = entry.get("process_id")
        if not isinstance(pid, int) or pid == os.getpid():
            return
        if not registry.entry_process_alive(entry):
            registry.remove_entry(self.registry_dir, self.usb_serial, process_id=pid)
            return
        argv = children.command_line(pid)
        if "hil.vfc" not in argv or self.usb_serial not in argv:
            return
        parent = entry.get("parent_pid")
        if not children.orphaned(pid, parent if isinstance(parent, int) else None):
            return
        holder = lock_holder(self.usb_serial, self.lock_dir)
        if holder is not None and holder != os.getpid():
            return
        start = entry.get("process_start")
        children.end_process_groups({pid: start if isinstance(start, int) else 0})
        registry.remove_entry(self.registry_dir, self.usb_serial, process_id=pid)
        log.warning(
            "virtual board %s: ended pid %d, left running by a harness that has gone (pid %s)",
            self.usb_serial, pid, parent if parent else "unknown",
        )

    def _own_entry(self) -> dict | None:
        """The registry file of this serial as written, whatever its state (a DFU entry
        has a socket, not a port, so `registry.find_entry` does not return it)."""
        try:
            entry = json.loads((self.registry_dir / f"{self.usb_serial}.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) else None

    @property
    def state(self) -> str | None:
        """The state the board announces ("app", "bootloader", "dfu"), or None."""
        entry = self._own_entry()
        if entry is None or not self.alive or entry.get("process_id") != self.pid:
            return None
        return str(entry.get("state", "app"))

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log empty)"

    @property
    def pid(self) -> int | None:
        """Process id, or None before start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code once the process has ended."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def entry(self) -> dict | None:
        """The board's live registry entry, or None."""
        return registry.find_entry(self.registry_dir, self.usb_serial)

    @property
    def port(self) -> str:
        """The board's current pty path (it changes at every reboot)."""
        entry = self.entry
        if entry is None or not self.alive or entry.get("process_id") != self.pid:
            raise PortNotFound(
                f"virtual board {self.usb_serial} has no port in {self.registry_dir} "
                f"(process {'running' if self.alive else 'not running'}); log {self.log_path}"
            )
        return str(entry["port"])

    def wait_port_change(self, old_port: str, timeout: float = 5.0) -> str:
        """Wait until the board announces a port other than `old_port` (after a reboot)."""
        deadline = Deadline(timeout)
        while not deadline.expired:
            entry = self.entry
            if entry is not None and entry.get("port") != old_port:
                return str(entry["port"])
            time.sleep(0.02)
        raise PortNotFound(
            f"virtual board {self.usb_serial} still on {old_port} after {timeout:.1f} s; "
            f"log {self.log_path}"
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; idempotent. Returns the exit code."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout)
        if proc is not None:
            children.guard.forget(proc.pid)
            # A killed board cannot clean up after itself.
            registry.remove_entry(self.registry_dir, self.usb_serial, process_id=proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode if proc is not None else None

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)  # its own group: its pid is the group id
        except ProcessLookupError:
            pass

    def __enter__(self) -> VirtualBoardProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
