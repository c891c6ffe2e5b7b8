"""A stand-in for a Betaflight board's hardware when the rig has none, for flashing:
``[board.stand_in] kind = "virtual-msp"`` on a ``betaflight`` board.

It runs `hil.vfc.msp_board` as a child process (it dies with the harness: lifeline,
parent-death signal, the child guard): MSP on a pty, the STM32 ROM DFU device after
MSP_REBOOT 1, and what it boots read from its flash file in the board's work directory.
Its VCP and DFU device are announced in a registry of its own (``registry`` under the
work directory), which the board's flasher reaches through the virtual USB backend. The
harness reaches the device only by its wires (pty, registry, USB socket), as with
hil.boards.virtual; the board's ``usb_serial`` is the serial its VCP shows.

    [board.stand_in]
    kind = "virtual-msp"
    target = "STM32F405"          # the MCU target the hardware is (default)
    board_name = "MATEKF405SE"    # its board name (default)

A fresh flash gets a placeholder from the device (``--placeholder``): a vector table and
the names a Betaflight 4.5.1 build for this board carries, no code, so the board starts in
"its firmware" and answers MSP, as a board out of the box does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hil import children
from hil.errors import BoardNotAnswering, ConfigError
from hil.links import ports, registry
from hil.timeout import Deadline

KIND = "virtual-msp"
_KEYS = ("kind", "target", "board_name")


class VirtualMspStandIn:
    """Starts and stops one `hil.vfc.msp_board` process."""

    def __init__(self, work_dir: Path, usb_serial: str, target: str, board_name: str) -> None:
        self.work_dir = Path(work_dir)
        self.usb_serial = usb_serial
        self.target = target
        self.board_name = board_name
        self.registry_dir = self.work_dir / "registry"
        self.flash_path = self.work_dir / "flash.bin"
        self.log_path = self.work_dir / "msp-board.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @classmethod
    def from_spec(cls, where: str, spec: Any, work_dir: Path, usb_serial: str) -> VirtualMspStandIn:
        if not isinstance(spec, Mapping):
            raise ConfigError(f'{where} must be a table such as {{ kind = "{KIND}" }}')
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(_KEYS)}"
            )
        if not usb_serial:
            raise ConfigError(
                f"{where}: a virtual-msp stand-in needs the board's usb_serial (its VCP serial)"
            )
        fields = {"target": "STM32F405", "board_name": "MATEKF405SE"}
        for key in fields:
            value = spec.get(key, fields[key])
            if (
                not isinstance(value, str)
                or not value.replace("_", "").isalnum()
                or len(value) > 32
            ):
                raise ConfigError(
                    f"{where}.{key} = {value!r}: must be letters, digits and _ (at most 32)"
                )
            fields[key] = value
        return cls(work_dir, usb_serial, fields["target"], fields["board_name"])

    # -- what a rig board sees -------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe(self) -> str:
        return f"virtual Betaflight board ({self.target}, {self.board_name}) for flashing"

    def url(self, timeout: float) -> str:
        return ports.find_port(
            self.usb_serial, self.registry_dir, timeout=timeout, state="app"
        ).device

    # -- life cycle ------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self.alive:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # closed in stop()
        lifeline = children.lifeline_fd()
        argv = [
            sys.executable, "-m", "hil.vfc.msp_board", "--flash", str(self.flash_path),
            "--registry", str(self.registry_dir), "--target", self.target, "--board-name", self.board_name,
            "--vcp-serial", self.usb_serial, "--placeholder", "--lifeline", str(lifeline),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            pass_fds=(lifeline,),
            preexec_fn=children.parent_death_preexec(signal.SIGTERM),
        )
        children.guard.watch(self._proc.pid)
        deadline = Deadline(timeout)
        while not deadline.expired:
            if any(
                e.get("process_id") == self._proc.pid
                for e in registry.read_entries(self.registry_dir)
            ):
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        code = self._proc.poll()
        self.stop()
        what = (
            f"exited with code {code}"
            if code is not None
            else f"did not announce itself within {timeout:.0f} s"
        )
        raise BoardNotAnswering(f"the virtual Betaflight board {what}; see {self.log_path}")

    def restart(self, timeout: float = 10.0) -> None:
        """A power cycle: the process ends and starts again on the same flash."""
        self.stop()
        self.start(timeout)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5.0)
            children.guard.forget(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
