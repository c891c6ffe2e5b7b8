"""Betaflight SITL as a rig board (type ``betaflight-sitl``, board class ``msp``, firmware
profile ``betaflight``), registered in the ``hil.boards`` entry-point group.

Rig file keys (all optional but ``name`` and ``type``):

    [[board]]
    name = "bf1"
    type = "betaflight-sitl"
    executable = "path/to/betaflight_4.6.0_SITL"   # default: the `betaflight` package's build
    eeprom = "fixtures/bf-eeprom.bin"             # a saved configuration to start from
    isolation = "auto"                            # auto | netns | loopback
    scheduler = "auto"                            # auto | fifo | other
    state_rate_hz = 1000                          # state packets per second

The board's directory under the rig's state directory holds its ``eeprom.bin``. On the
first start the harness applies its bench configuration (RC over MSP on UART4, the arm
switch on AUX1, ANGLE mode, a fast MSP task) and keeps the result as
``harness-eeprom.bin``; every test session starts from that file, so a setting one
test changes (and saves) never leaks into the next.

Without a network namespace the firmware's fixed ports allow one instance per host:
the board then holds a host-wide lock for as long as it runs, and says so.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError
from hil.locks import BoardLock
from hil.rig import Board, Rig, RigKey
from hil.sitl.betaflight import HOST_PORTS_LOCK, BetaflightSitl, find_executable

log = logging.getLogger(__name__)

TEMPLATE = "harness-eeprom.bin"


class BetaflightSitlBoard(Board):
    type_name = "betaflight-sitl"
    board_class = "msp"
    profile_name = "betaflight"
    session_type = "hil.session:MspBoardSession"
    #: The harness flies it, and arms it by the AUX1 switch on the RC it sends over MSP.
    capabilities = frozenset({"physics", "arm_switch"})
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "executable": RigKey("path"),
        "eeprom": RigKey("path"),
        "isolation": RigKey("choice", choices=("auto", "netns", "loopback")),
        "scheduler": RigKey("choice", choices=("auto", "fifo", "other")),
        "state_rate_hz": RigKey("number", 100, 4000, unit="state packets per second"),
        "lock_wait": RigKey("number", 0, 86400, unit="seconds"),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        where = f"{rig.path}: board {name!r}"
        for key, allowed in (("isolation", ("auto", "netns", "loopback")), ("scheduler", ("auto", "fifo", "other"))):
            value = spec.get(key, "auto")
            if value not in allowed:
                raise ConfigError(f"{where}: {key} = {value!r} is not one of: {', '.join(allowed)}")
        rate = spec.get("state_rate_hz", 1000)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 100 <= rate <= 4000:
            raise ConfigError(f"{where}: state_rate_hz = {rate!r} must be a number from 100 to 4000")
        self.state_rate_hz = float(rate)
        self._executable = self._path(spec.get("executable"))
        self._eeprom = self._path(spec.get("eeprom"))
        if self._eeprom is not None and not self._eeprom.is_file():
            raise ConfigError(f"{where}: eeprom = {spec.get('eeprom')!r}: {self._eeprom} does not exist")
        self.sitl: BetaflightSitl | None = None
        self._host_lock: BoardLock | None = None
        #: Set by a session that changed the configuration: the next one starts clean.
        self.dirty = False

    def _path(self, value: Any) -> Path | None:
        if not value:
            return None
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else self.rig.path.parent / path

    @property
    def usb_serial(self) -> str:
        return str(self.spec.get("usb_serial", f"SITL-{self.name}"))

    @property
    def work_dir(self) -> Path:
        return self.rig.work_dir / self.name

    @property
    def lockstep(self) -> bool:
        return False

    @property
    def state(self) -> str:
        if self.sitl is None:
            try:
                find_executable(self._executable)
            except ConfigError:
                return "not installed"
            return "off"
        return "running" if self.sitl.alive else "stopped"

    def start(self) -> None:
        if self.sitl is not None and self.sitl.alive:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sitl = BetaflightSitl(
            self.work_dir,
            executable=self._executable,
            eeprom=self._eeprom,
            isolation=str(self.spec.get("isolation", "auto")),
            scheduler=str(self.spec.get("scheduler", "auto")),
        )
        from hil.sitl.netns import namespaces_available

        if sitl.isolation == "loopback" or not namespaces_available():
            wait = float(self.spec.get("lock_wait", 600.0))
            log.warning(
                "board %s: no network namespace here; Betaflight SITL instances on this host "
                "are serialised by a lock (waiting up to %.0f s)", self.name, wait,
            )
            self._host_lock = BoardLock(HOST_PORTS_LOCK, self.lock_dir, wait=wait)
            self._host_lock.acquire()
        try:
            sitl.start()
        except BaseException:
            self._release()
            raise
        self.sitl = sitl
        if not (self.work_dir / TEMPLATE).exists():
            self._configure()

    def _configure(self) -> None:
        """Apply the bench configuration once and keep it as the template."""
        from hil.autopilot.msp import MspAutopilot

        assert self.sitl is not None
        with MspAutopilot(self.sitl.msp_url, sitl=self.sitl) as ap:
            changed = ap.configure_for_harness()
        log.info("board %s: bench configuration applied (%s)", self.name, ", ".join(changed) or "nothing to change")
        shutil.copyfile(self.work_dir / "eeprom.bin", self.work_dir / TEMPLATE)

    def use_executable(self, path: str | Path) -> None:
        """Run another build (a field patch) from now on; the bench configuration stays."""
        exe = find_executable(Path(path))
        if self.sitl is not None:
            self.stop()
        self._executable = exe
        self.start()

    def reset_configuration(self) -> bool:
        """Start again from the bench configuration if it was changed; True if it restarted."""
        assert self.sitl is not None
        eeprom = self.work_dir / "eeprom.bin"
        template = self.work_dir / TEMPLATE
        if not self.dirty and eeprom.exists() and filecmp.cmp(eeprom, template, shallow=False):
            return False
        gen = self.sitl.generation
        shutil.copyfile(template, eeprom)
        self.sitl.restart()
        self.sitl.wait_restarted(gen)
        self.dirty = False
        return True

    def stop(self) -> None:
        if self.sitl is not None:
            self.sitl.stop()
            self.sitl = None
        self._release()

    def _release(self) -> None:
        if self._host_lock is not None:
            self._host_lock.release()
            self._host_lock = None

    def url(self, timeout: float = 10.0) -> str:
        if self.sitl is None or not self.sitl.alive:
            raise HilError(f"Betaflight SITL board {self.name} is not running")
        return self.sitl.msp_url

    def open_autopilot(self, connect_timeout: float = 10.0):
        """An MSP adapter on UART1 that restarts a hung boot and reopens after reboots."""
        from hil.autopilot.msp import MspAutopilot

        return MspAutopilot(self.url(timeout=connect_timeout), sitl=self.sitl, connect_timeout=connect_timeout)

    def simulator_link(self, config=None):
        """The physics loop over the firmware's UDP ports, RC as MSP on UART4."""
        from hil.sim.betaflight_loop import BetaflightLoopConfig, betaflight_loop

        sitl = self.sitl
        if sitl is None:
            raise HilError(f"Betaflight SITL board {self.name} is not running")
        config = replace(config, rate_hz=self.state_rate_hz) if config is not None else BetaflightLoopConfig(rate_hz=self.state_rate_hz)
        return betaflight_loop(sitl.fc_ip, sitl.host_ip, self.rc_url, config, clock_offset_s=sitl.uptime)

    def power_cycle(self) -> None:
        if self.sitl is None:
            raise HilError(f"Betaflight SITL board {self.name} is not running")
        self.sitl.restart()

    def runtime(self) -> dict[str, str]:
        """How the firmware process runs, for a scenario's measurements."""
        return {"sitl_scheduler": self.sitl.scheduler if self.sitl is not None else "not running"}

    @property
    def rc_url(self) -> str:
        """The MSP UART the harness sends RC on (UART4, set up by the bench configuration)."""
        assert self.sitl is not None
        return self.sitl.uart_url(4)

    def log_path(self) -> Path | None:
        return self.sitl.log_path if self.sitl is not None else None

