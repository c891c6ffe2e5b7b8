"""Board type `px4-sitl`: the user's PX4 SITL build, with the harness as its simulator.

The harness listens on 127.0.0.1:4560 + instance before it starts PX4 (PX4's
``simulator_mavlink`` connects as a TCP client and retries; hil.sim.px4_link), then
launches the executable in a scratch directory with the environment PX4's POSIX start
scripts read (``ROMFS/px4fmu_common/init.d-posix/rcS`` and ``px4-rc.simulator``):

- ``PX4_SYS_AUTOSTART`` (default 10016, ``none_iris``: a quad whose simulator is
  simulator_mavlink, neither SIH, Gazebo nor jMAVSim) and ``PX4_SIM_MODEL``;
- ``PX4_SIM_HOST_ADDR`` = 127.0.0.1, so ``simulator_mavlink start -t 127.0.0.1 <port>``;
- the command line ``px4 -d -i <instance> -w <scratch> <etc>`` (daemon mode, no shell).

Its ground-station MAVLink is UDP: PX4 listens on 18570 + instance (rig key `url`,
default ``udpout:127.0.0.1:18570+instance``). It runs in lockstep by default (a build
with the lockstep scheduler sets HIL_ACTUATOR_CONTROLS flags bit 0, which the link can
require).

Not run here: PX4's repository is too large to bring onto these machines, so this board
type has been written from PX4's sources and checked against a fake PX4 client only
(tests/test_px4_link.py); see docs/architecture.md, "PX4 from its sources". One thing
known to need work when it meets a real PX4: PX4 holds its boot until the first
HIL_SENSOR, while the session connects to the ground-station port before it starts the
closed loop.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from hil import children
from hil.errors import ConfigError, HilError
from hil.rig import Board, Rig, RigKey
from hil.sim.px4_link import Px4SimListener, port_for, px4_loop

#: PX4's airframe for a quad flown by simulator_mavlink (``none_iris``).
DEFAULT_AUTOSTART = 10016
#: PX4 SITL's ground-station port for instance 0 (``udp_gcs_port_local``).
GCS_BASE_PORT = 18570
#: PX4 SITL's IMU rate: the simulator sends HIL_SENSOR every 4000 us.
LOOP_RATE_HZ = 250.0


class Px4SitlBoard(Board):
    """The user's PX4 SITL executable, flown by the harness through `px4_tcp`."""

    type_name = "px4-sitl"
    profile_name = "px4"
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "executable": RigKey("path"),
        "etc": RigKey("path"),
        "instance": RigKey("integer", 0, 255),
        "autostart": RigKey("integer", 1, 99_999_999),
        "model": RigKey("text"),
        "url": RigKey("text"),
        "lockstep": RigKey("boolean"),
        "accept_timeout": RigKey("number", 1.0, 600.0, unit="seconds"),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        if not spec.get("executable"):
            raise ConfigError(
                f"{rig.path}: board {name!r}: a px4-sitl board needs executable = the PX4 SITL "
                "binary you built (e.g. \"~/PX4-Autopilot/build/px4_sitl_default/bin/px4\")"
            )
        self.instance = int(spec.get("instance", 0))
        self._listener: Px4SimListener | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- what it is --------------------------------------------------------------------
    @property
    def executable(self) -> Path:
        return self.rig_path(str(self.spec["executable"]))

    @property
    def etc_dir(self) -> Path:
        """PX4's ROMFS for POSIX (``build/px4_sitl_default/etc``, beside ``bin``)."""
        given = self.spec.get("etc")
        return self.rig_path(str(given)) if given else self.executable.parent.parent / "etc"

    @property
    def lockstep(self) -> bool:
        return self.spec.get("lockstep", True) is True

    @property
    def work_dir(self) -> Path:
        return self.rig.work_dir / f"px4-{self.name}"

    @property
    def sim_listener(self) -> Px4SimListener | None:
        """Where PX4 connects (open while the board runs)."""
        return self._listener

    def log_path(self) -> Path:
        return self.work_dir / "px4.log"

    def environment(self) -> dict[str, str]:
        """The environment PX4's start scripts read, on top of ours."""
        env = dict(os.environ)
        env["PX4_SYS_AUTOSTART"] = str(int(self.spec.get("autostart", DEFAULT_AUTOSTART)))
        env["PX4_SIM_MODEL"] = str(self.spec.get("model", "none_iris"))
        env["PX4_SIM_HOST_ADDR"] = "127.0.0.1"
        env.pop("PX4_SIMULATOR", None)  # "sihsim" or "gz" would start another simulator
        env.pop("PX4_SIM_HOSTNAME", None)
        return env

    def command(self) -> list[str]:
        return [str(self.executable), "-d", "-i", str(self.instance), "-w", str(self.work_dir), str(self.etc_dir)]

    # -- life cycle ----------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._proc is None:
            return "off"
        return "running" if self._proc.poll() is None else "stopped"

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if not self.executable.is_file() or not os.access(self.executable, os.X_OK):
            raise ConfigError(f"board {self.name}: PX4 SITL executable {self.executable} is not an executable file")
        if not (self.etc_dir / "init.d-posix").is_dir():
            raise ConfigError(
                f"board {self.name}: {self.etc_dir} holds no init.d-posix (PX4's start scripts); "
                "set etc = the build's etc folder"
            )
        if self._listener is None:
            self._listener = Px4SimListener(port_for(self.instance))
        self._listener.open()  # before PX4 starts: it connects as soon as it boots
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path(), "ab")  # closed in stop()
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.work_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=children.parent_death_preexec(signal.SIGTERM),
        )
        children.guard.watch(self._proc.pid)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            children.end_process_groups({proc.pid: children.process_start_time(proc.pid) or 0})
            children.guard.forget(proc.pid)
            proc.wait(timeout=5)
        if self._listener is not None:
            self._listener.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def url(self, timeout: float = 10.0) -> str:
        if self._proc is None or self._proc.poll() is not None:
            raise HilError(f"PX4 SITL board {self.name} is not running (see {self.log_path()})")
        return str(self.spec.get("url", f"udpout:127.0.0.1:{GCS_BASE_PORT + self.instance}"))

    def mavlink_loop(self, autopilot: Any, config: Any, uart_links: dict[str, Any] | None = None) -> Any:
        """PX4 flies through its simulator connection at its IMU rate (250 Hz)."""
        if self._listener is None:
            raise HilError(f"PX4 SITL board {self.name} is not running")
        from dataclasses import replace

        config = replace(config, rate_hz=LOOP_RATE_HZ, pipeline=False)
        return px4_loop(autopilot, self._listener, config, accept_timeout=float(self.spec.get("accept_timeout", 60.0)))


__all__ = ["Px4SitlBoard"]
